// The vocabularies inside the test models: the prompts of llama.cpp's goldens
// must tokenize to the golden prompt ids, and the SentencePiece model's
// generated ids must decode to llama.cpp's text.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixtures.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

std::string read_all(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct Golden {
    std::vector<TokenId> tokens;
    size_t n_prompt = 0;
};

Golden load_golden(const std::filesystem::path& p) {
    auto j = nlohmann::json::parse(read_all(p));
    return {j.at("tokens").get<std::vector<TokenId>>(), j.at("n_prompt").get<size_t>()};
}

struct ModelPrompt {
    const char* stem;
    const char* prompt;
};

class ModelPromptTest : public ::testing::TestWithParam<ModelPrompt> {};

TEST_P(ModelPromptTest, prompt_tokenizes_to_the_golden_prompt_ids) {
    MOESERVE_REQUIRE_FIXTURES();
    const ModelPrompt& mp = GetParam();
    Tokenizer tok = Tokenizer::from_file(test::fixture(std::string("models/") + mp.stem + "-f16.gguf").string());
    Golden g = load_golden(test::fixture(std::string("models/golden/") + mp.stem + "-f16.kv-f16.json"));
    std::string prompt = read_all(test::fixture(std::string("prompts/") + mp.prompt));
    std::vector<TokenId> ids = tok.tokenize(prompt, false, true);
    std::vector<TokenId> expected(g.tokens.begin(), g.tokens.begin() + long(g.n_prompt));
    EXPECT_EQ(ids, expected);
    // Rendering the control tokens gives the prompt back.
    EXPECT_EQ(tok.detokenize(ids, true), prompt);
}

TEST_P(ModelPromptTest, generated_ids_stream_like_one_shot_decoding) {
    MOESERVE_REQUIRE_FIXTURES();
    const ModelPrompt& mp = GetParam();
    Tokenizer tok = Tokenizer::from_file(test::fixture(std::string("models/") + mp.stem + "-f16.gguf").string());
    Golden g = load_golden(test::fixture(std::string("models/golden/") + mp.stem + "-f16.kv-f16.json"));
    for (bool special : {false, true}) {
        StreamingDetokenizer stream(tok, special);
        std::string streamed;
        for (TokenId id : g.tokens) streamed += stream.push(id);
        streamed += stream.flush();
        EXPECT_EQ(streamed, tok.detokenize(g.tokens, special));
    }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ModelPromptTest,
                         ::testing::Values(ModelPrompt{"qwen3moe-tiny-s1", "qwen.txt"},
                                           ModelPrompt{"nemotron-h-moe-tiny-s1", "nemotron.txt"},
                                           ModelPrompt{"glm47flash-tiny-s1", "glm.txt"}),
                         [](const auto& info) {
                             std::string n = info.param.stem;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

TEST(TinyModelVocab, special_ids_and_end_of_generation_follow_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer qwen = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    EXPECT_FALSE(qwen.vocab().add_bos());
    EXPECT_EQ(qwen.vocab().pre(), "qwen2");
    EXPECT_FALSE(qwen.vocab().clean_spaces());
    TokenId im_end = qwen.vocab().find("<|im_end|>");
    ASSERT_NE(im_end, kNoToken);
    EXPECT_TRUE(qwen.is_eog(im_end));
    EXPECT_TRUE(qwen.is_eog(qwen.vocab().special().eos));
    EXPECT_FALSE(qwen.is_eog(qwen.vocab().find("<|im_start|>")));
    EXPECT_FALSE(qwen.is_eog(qwen.vocab().find("a")));

    Tokenizer glm = Tokenizer::from_file(test::fixture("models/glm47flash-tiny-s1-f16.gguf").string());
    EXPECT_EQ(glm.vocab().pre(), "glm4");
    EXPECT_TRUE(glm.vocab().clean_spaces());
    // GLM names <|user|> as its end-of-turn token: generation stops there.
    const SpecialTokenIds& sp = glm.vocab().special();
    ASSERT_NE(sp.eot, kNoToken);
    EXPECT_TRUE(glm.is_eog(sp.eot));
    EXPECT_TRUE(glm.is_eog(sp.eos));
    EXPECT_TRUE(glm.is_eog(glm.vocab().find("<|endoftext|>")));
}

TEST(StoriesVocab, prompt_and_generation_match_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    Tokenizer tok = Tokenizer::from_file(test::fixture("models/real/stories260K.gguf").string());
    EXPECT_EQ(tok.vocab().type(), VocabType::SPM);
    EXPECT_TRUE(tok.vocab().add_bos());
    Golden g = load_golden(test::fixture("models/real/golden/stories260K.kv-f16.json"));
    std::string prompt = read_all(test::fixture("prompts/stories.txt"));
    std::vector<TokenId> ids = tok.tokenize(prompt, true, true);
    EXPECT_EQ(ids, std::vector<TokenId>(g.tokens.begin(), g.tokens.begin() + long(g.n_prompt)));

    std::vector<TokenId> generated(g.tokens.begin() + long(g.n_prompt), g.tokens.end());
    std::string expected = read_all(test::fixture("models/real/golden/stories260K.greedy64.txt"));
    // llama.cpp printed the generated tokens piece by piece.
    std::string pieces;
    for (TokenId id : generated) pieces += tok.token_to_piece(id, false);
    EXPECT_EQ(pieces, expected);
    // The whole sequence decodes to prompt + generation (the first word's marker space removed).
    EXPECT_EQ(tok.detokenize(std::vector<TokenId>(g.tokens.begin() + 1, g.tokens.end()), false), prompt + expected);
}

}  // namespace
}  // namespace moeserve
