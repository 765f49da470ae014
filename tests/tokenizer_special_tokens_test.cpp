// Special tokens: cut out of the text only when parsing them, user-defined
// tokens always, lstrip/rstrip honoured; BOS/EOS added as the vocabulary says.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

TEST(TokenizerSpecial, control_tokens_are_text_unless_parsed) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    const TokenId im_start = tok.vocab().find("<|im_start|>");
    std::vector<TokenId> parsed = tok.tokenize("<|im_start|>user", false, true);
    ASSERT_FALSE(parsed.empty());
    EXPECT_EQ(parsed[0], im_start);
    std::vector<TokenId> plain = tok.tokenize("<|im_start|>user", false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
    EXPECT_GT(plain.size(), parsed.size());
    EXPECT_EQ(tok.detokenize(plain, false), "<|im_start|>user");
}

TEST(TokenizerSpecial, user_defined_tokens_match_even_without_parsing) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    const TokenId think = tok.vocab().find("<think>");
    ASSERT_NE(think, kNoToken);
    EXPECT_EQ(tok.vocab().attr(think), token_attr::USER_DEFINED);
    for (bool parse : {false, true}) {
        std::vector<TokenId> ids = tok.tokenize("a<think>b", false, parse);
        EXPECT_EQ(std::count(ids.begin(), ids.end(), think), 1) << "parse_special " << parse;
    }
}

TEST(TokenizerSpecial, rstrip_tokens_eat_the_spaces_after_them) {
    MOESERVE_REQUIRE_FIXTURES();
    // llama.cpp marks Phi-3's special tokens rstrip (by the model name).
    Tokenizer tok = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-phi-3.gguf").string());
    const TokenId assistant = tok.vocab().find("<|assistant|>");
    ASSERT_NE(assistant, kNoToken);
    EXPECT_TRUE(tok.vocab().attr(assistant) & token_attr::RSTRIP);
    std::vector<TokenId> ids = tok.tokenize("hi<|assistant|>  \n there", false, true);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), assistant), 1);
    EXPECT_EQ(ids, tok.tokenize("hi<|assistant|>there", false, true));
}

TEST(TokenizerSpecial, bos_follows_the_vocabulary) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer spm = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-llama-spm.gguf").string());
    EXPECT_EQ(spm.tokenize("hi", true, true).front(), 1);
    EXPECT_NE(spm.tokenize("hi", false, true).front(), 1);
    EXPECT_EQ(spm.tokenize("", true, true), std::vector<TokenId>{1});
    EXPECT_TRUE(spm.tokenize("", false, true).empty());

    Tokenizer qwen = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    EXPECT_EQ(qwen.tokenize("hi", true, true), qwen.tokenize("hi", false, true));  // add_bos_token = false

    Tokenizer coder = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-deepseek-coder.gguf").string());
    EXPECT_EQ(coder.tokenize("hi", true, true).front(), 32013);  // add_bos_token = true
}

TEST(TokenizerSpecial, sentencepiece_prefixes_a_space_after_special_tokens) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-llama-spm.gguf").string());
    std::vector<TokenId> ids = tok.tokenize("</s>Hello", false, true);
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(ids[0], 2);
    EXPECT_EQ(ids[1], tok.tokenize("Hello", false, true)[0]);  // "▁Hello", as at the start
}

TEST(TokenizerSpecial, end_of_generation_covers_eos_and_end_of_turn_texts) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer spm = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-llama-spm.gguf").string());
    EXPECT_EQ(spm.vocab().eog_ids(), std::vector<TokenId>{2});
    Tokenizer phi = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-phi-3.gguf").string());
    EXPECT_TRUE(phi.is_eog(phi.vocab().find("<|end|>")));
    EXPECT_TRUE(phi.is_eog(phi.vocab().find("<|endoftext|>")));
    EXPECT_FALSE(phi.is_eog(phi.vocab().find("<|assistant|>")));
}

}  // namespace
}  // namespace moeserve
