// Input a tokenizer must survive: invalid UTF-8, NUL bytes, very long text,
// ids outside the vocabulary. Each gives a defined result or a clear error.
#include <gtest/gtest.h>

#include <chrono>

#include "fixtures.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

TEST(TokenizerBadInput, invalid_utf8_reads_as_replacement_characters_in_bpe) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    // llama.cpp decodes each bad byte to U+FFFD before byte-level BPE.
    EXPECT_EQ(tok.tokenize("a\xFF"
                           "b",
                           false, true),
              tok.tokenize("a\xEF\xBF\xBD"
                           "b",
                           false, true));
    EXPECT_EQ(tok.tokenize("\xE4\xB8", false, true), tok.tokenize("\xEF\xBF\xBD\xEF\xBF\xBD", false, true));
    EXPECT_EQ(tok.detokenize(tok.tokenize("x\x80y", false, true), false), "x\xEF\xBF\xBDy");
}

TEST(TokenizerBadInput, invalid_utf8_falls_back_to_bytes_in_sentencepiece) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-llama-spm.gguf").string());
    std::vector<TokenId> ids = tok.tokenize(
        "a\xFF"
        "b",
        false, false);
    const TokenId ff = tok.vocab().find("<0xFF>");
    EXPECT_EQ(std::count(ids.begin(), ids.end(), ff), 1);
    EXPECT_EQ(tok.detokenize(ids, false),
              "a\xFF"
              "b");
}

TEST(TokenizerBadInput, nul_bytes_are_ordinary_text) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* vocab : {"models/qwen3moe-tiny-s1-f16.gguf", "vocab/ggml-vocab-llama-spm.gguf"}) {
        Tokenizer tok = Tokenizer::from_file(test::fixture(vocab).string());
        const std::string text("a\0b\0\0c", 6);
        std::vector<TokenId> ids = tok.tokenize(text, false, false);
        EXPECT_EQ(tok.detokenize(ids, false), text) << vocab;
    }
}

TEST(TokenizerBadInput, a_50_megabyte_prompt_tokenizes) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    std::string unit = "The license grants permission to copy 12345 files; 中文 😀\n    x = y + 1;  ";
    std::string text;
    text.reserve(50u << 20);
    while (text.size() < (50u << 20)) text += unit;
    std::vector<TokenId> ids = tok.tokenize(text, false, false);
    EXPECT_GT(ids.size(), text.size() / 8);
    EXPECT_EQ(tok.detokenize(ids, false), text);
    // One 1 MB word without any split point still ends.
    std::string word(1u << 20, 'a');
    ids = tok.tokenize(word, false, false);
    EXPECT_EQ(tok.detokenize(ids, false), word);
}

TEST(TokenizerBadInput, unknown_ids_are_a_clear_error) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    const std::vector<TokenId> bad = {5, TokenId(tok.n_tokens()), 7};
    try {
        tok.detokenize(bad, false);
        FAIL() << "no error for an id past the vocabulary";
    } catch (const std::out_of_range& e) {
        EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    }
    EXPECT_THROW(tok.token_to_piece(-1, true), std::out_of_range);
    StreamingDetokenizer stream(tok, false);
    EXPECT_THROW(stream.push(1 << 30), std::out_of_range);
}

TEST(TokenizerBadInput, a_file_without_a_vocabulary_is_refused_by_name) {
    MOESERVE_REQUIRE_FIXTURES();
    try {
        Tokenizer::from_file(test::fixture("vocab/ggml-vocab-bert-bge.gguf").string());
        FAIL() << "a WordPiece vocabulary was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model = 'bert'"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace moeserve
