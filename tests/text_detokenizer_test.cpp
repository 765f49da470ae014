// Decoding: llama.cpp's clean-up of spaces, and the streaming detokenizer,
// which must give the one-shot text byte for byte however the ids arrive and
// never emit half a UTF-8 character.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace moeserve {
namespace {

// llama.cpp's clean-up passes as it writes them: in place, with a shrinking
// write index (llama-vocab.cpp, detokenize). The oracle for text::clean_up_spaces.
std::string clean_in_place(std::string text) {
    int total = int(text.size());
    auto pass = [&](auto&& body) {
        const int n = total;
        total = total ? 1 : 0;
        for (int i = 1; i < n; ++i) body(i, n);
    };
    pass([&](int& i, int) {
        const char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        text[total++] = x;
    });
    pass([&](int& i, int n) {
        const char x = text[i];
        if (x == '\'' && i + 1 < n && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;
            text[++i] = '\0';
        }
        text[total++] = x;
    });
    pass([&](int& i, int n) {
        const char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            const char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm') {
                total--;
            } else if (x1 != 't' && x1 != 'd' && i + 2 < n) {
                const char x2 = text[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
            }
        }
        text[total++] = x;
    });
    text.resize(size_t(total));
    return text;
}

struct Lcg {
    uint64_t s;
    uint32_t next() {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return uint32_t(s >> 33);
    }
};

TEST(TextDetokenizer, clean_up_matches_llama_cpp_in_place_passes) {
    EXPECT_EQ(text::clean_up_spaces("Hello , world ! It 's a test ."), "Hello, world! It's a test.");
    EXPECT_EQ(text::clean_up_spaces("a ' b"), "a'b");
    EXPECT_EQ(text::clean_up_spaces("we 're they 've I 'll don 't"), "we're they've I 'll don 't");
    const char alphabet[] = " '?!.,smtdlrvex";
    Lcg rng{7};
    for (int i = 0; i < 20000; ++i) {
        std::string s;
        size_t n = rng.next() % 12;
        for (size_t k = 0; k < n; ++k) s += alphabet[rng.next() % (sizeof alphabet - 1)];
        ASSERT_EQ(text::clean_up_spaces(s), clean_in_place(s)) << "'" << s << "'";
    }
}

TEST(TextDetokenizer, streaming_clean_up_equals_one_shot_for_any_chunking) {
    const char alphabet[] = " '?!.,smtdlrvex\xE4";
    Lcg rng{11};
    for (int i = 0; i < 20000; ++i) {
        std::string s;
        size_t n = rng.next() % 16;
        for (size_t k = 0; k < n; ++k) s += alphabet[rng.next() % (sizeof alphabet - 1)];
        text::SpaceCleaner cleaner;
        std::string out;
        size_t pos = 0;
        while (pos < s.size()) {
            size_t len = 1 + rng.next() % 4;
            cleaner.push(std::string_view(s).substr(pos, len), out);
            pos += len;
        }
        cleaner.finish(out);
        ASSERT_EQ(out, text::clean_up_spaces(s)) << "'" << s << "'";
    }
}

TEST(TextDetokenizer, streaming_equals_one_shot_and_holds_partial_characters) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* vocab : {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-spm.gguf",
                              "vocab/ggml-vocab-deepseek-llm.gguf", "models/qwen3moe-tiny-s1-f16.gguf"}) {
        Tokenizer tok = Tokenizer::from_file(test::fixture(vocab).string());
        const std::string texts[] = {
            "Hello , world ! It 's a test .",
            "emoji 😀🚀 and 中文字符 mixed with naïve café",
            " leading space and trailing   ",
            "don 't we ' re ' ve 'm",
            "\xE4\xB8\xAD\xE6\x96\x87\n\n\tcode { x = 1; }",
        };
        for (const std::string& t : texts) {
            std::vector<TokenId> ids = tok.tokenize(t, true, true);
            for (bool special : {false, true}) {
                StreamingDetokenizer stream(tok, special);
                std::string streamed;
                for (TokenId id : ids) {
                    std::string part = stream.push(id);
                    EXPECT_EQ(text::utf8_complete_prefix(part), part.size()) << vocab << ": emitted half a character";
                    streamed += part;
                }
                streamed += stream.flush();
                EXPECT_EQ(streamed, tok.detokenize(ids, special)) << vocab << ": '" << t << "'";
            }
        }
    }
}

TEST(TextDetokenizer, byte_tokens_of_one_character_come_out_together) {
    MOESERVE_REQUIRE_FIXTURES();
    // The tiny Qwen vocabulary has no token for 😀: it is four byte tokens.
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    std::vector<TokenId> ids = tok.tokenize("\xF0\x9F\x98\x80", false, false);
    ASSERT_EQ(ids.size(), 4u);
    StreamingDetokenizer stream(tok, false);
    EXPECT_EQ(stream.push(ids[0]), "");
    EXPECT_EQ(stream.push(ids[1]), "");
    EXPECT_EQ(stream.push(ids[2]), "");
    EXPECT_EQ(stream.push(ids[3]), "\xF0\x9F\x98\x80");
    EXPECT_EQ(stream.push(ids[0]), "");
    EXPECT_EQ(stream.flush(), "\xF0");  // an unfinished character at the end is given as it is
}

TEST(TextDetokenizer, control_tokens_render_only_on_request) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    std::vector<TokenId> ids = tok.tokenize("<|im_start|>user\nhi<|im_end|>", false, true);
    EXPECT_EQ(tok.detokenize(ids, true), "<|im_start|>user\nhi<|im_end|>");
    EXPECT_EQ(tok.detokenize(ids, false), "user\nhi");
}

TEST(TextDetokenizer, sentencepiece_drops_the_first_word_marker_only) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-llama-spm.gguf").string());
    std::vector<TokenId> ids = tok.tokenize("Hello world", false, false);
    EXPECT_EQ(tok.token_to_piece(ids[0], false), " Hello");
    EXPECT_EQ(tok.detokenize(ids, false), "Hello world");
    // With BOS first, llama.cpp strips the (empty) BOS piece instead.
    ids = tok.tokenize("Hello world", true, false);
    EXPECT_EQ(ids[0], tok.vocab().special().bos);
    EXPECT_EQ(tok.detokenize(ids, false), " Hello world");
}

}  // namespace
}  // namespace moeserve
