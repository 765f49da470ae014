// moeserve tokenize / detokenize / vocab-from-hf from the command line.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "run_command.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

const std::string kGpt2 = "vocab/ggml-vocab-gpt-2.gguf";

TEST(TokenizeCli, ids_mode_prints_one_list) {
    MOESERVE_REQUIRE_FIXTURES();
    auto r = test::run_moeserve({"tokenize", "-m", test::fixture(kGpt2).string(), "--ids", "Hello world"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "[15496, 995]\n");
}

TEST(TokenizeCli, default_mode_prints_id_and_text_per_token) {
    MOESERVE_REQUIRE_FIXTURES();
    auto r = test::run_moeserve({"tokenize", "-m", test::fixture(kGpt2).string(), "Hello world"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, " 15496 -> 'Hello'\n   995 -> ' world'\n");
}

TEST(TokenizeCli, bos_and_special_parsing_follow_llama_tokenize_defaults) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string spm = test::fixture("vocab/ggml-vocab-llama-spm.gguf").string();
    auto with_bos = test::run_moeserve({"tokenize", "-m", spm, "--ids", "Hello"});
    auto no_bos = test::run_moeserve({"tokenize", "-m", spm, "--ids", "--no-bos", "Hello"});
    ASSERT_EQ(with_bos.status, 0) << with_bos.err;
    EXPECT_EQ(with_bos.out, "[1, 15043]\n");
    EXPECT_EQ(no_bos.out, "[15043]\n");

    const std::string qwen = test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string();
    auto parsed = test::run_moeserve({"tokenize", "-m", qwen, "--ids", "<|im_end|>"});
    auto plain = test::run_moeserve({"tokenize", "-m", qwen, "--ids", "--no-parse-special", "<|im_end|>"});
    EXPECT_EQ(parsed.out, "[678]\n");
    EXPECT_NE(plain.out, "[678]\n");
}

TEST(TokenizeCli, file_is_read_byte_for_byte) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string qwen = test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string();
    auto path = test::scratch_dir() / "prompt.txt";
    static const char kText[] = "line one\r\n\tline two\n\n\xFF\0end";  // 26 bytes, a NUL inside
    const std::string text(kText, sizeof kText - 1);
    std::ofstream(path, std::ios::binary) << text;
    auto r = test::run_moeserve({"tokenize", "-m", qwen, "--ids", "--file", path.string()});
    ASSERT_EQ(r.status, 0) << r.err;
    Tokenizer tok = Tokenizer::from_file(qwen);
    std::vector<TokenId> ids = tok.tokenize(text, true, true);
    std::string expected = "[";
    for (size_t i = 0; i < ids.size(); ++i) expected += (i ? ", " : "") + std::to_string(ids[i]);
    EXPECT_EQ(r.out, expected + "]\n");
}

TEST(DetokenizeCli, ids_become_text) {
    MOESERVE_REQUIRE_FIXTURES();
    auto r = test::run_moeserve({"detokenize", "-m", test::fixture(kGpt2).string(), "[15496,", "995]"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "Hello world\n");
    r = test::run_moeserve({"detokenize", "-m", test::fixture(kGpt2).string(), "15496", "995"});
    EXPECT_EQ(r.out, "Hello world\n");
}

TEST(DetokenizeCli, unknown_id_is_an_error_naming_it) {
    MOESERVE_REQUIRE_FIXTURES();
    auto r = test::run_moeserve({"detokenize", "-m", test::fixture(kGpt2).string(), "99999999"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("token id 99999999 is out of range"), std::string::npos) << r.err;
    r = test::run_moeserve({"detokenize", "-m", test::fixture(kGpt2).string(), "12x"});
    EXPECT_EQ(r.status, 2);  // a usage error
    EXPECT_NE(r.err.find("'12x' is not a token id"), std::string::npos) << r.err;
}

TEST(TokenizeCli, usage_errors_are_reported) {
    auto r = test::run_moeserve({"tokenize", "Hello"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("no model given"), std::string::npos) << r.err;
    r = test::run_moeserve({"tokenize", "--help"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("usage: moeserve tokenize"), std::string::npos);
    r = test::run_moeserve({"tokenize", "-m", "/nonexistent.gguf", "x"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("/nonexistent.gguf"), std::string::npos) << r.err;
}

// A small byte-level BPE tokenizer.json in Hugging Face's layout.
nlohmann::json tiny_hf_tokenizer() {
    nlohmann::json vocab = nlohmann::json::object();
    int id = 0;
    for (const char* t : {"h", "e", "l", "o", "\xC4\xA0", "w", "r", "d", "he", "ll", "hell", "hello", "\xC4\xA0w"})
        vocab[t] = id++;
    // id 13 is a hole; 14 and 15 are added tokens.
    return {
        {"model",
         {{"type", "BPE"},
          {"vocab", vocab},
          {"merges",
           nlohmann::json::array({"h e", "l l", "he ll", nlohmann::json::array({"hell", "o"}), "\xC4\xA0 w"})}}},
        {"added_tokens",
         {{{"id", 14}, {"content", "<|im_end|>"}, {"special", true}, {"normalized", false}},
          {{"id", 15}, {"content", "<think>"}, {"special", false}, {"normalized", false}}}},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern",
              {{"Regex",
                R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
             {"behavior", "Isolated"}},
            {{"type", "ByteLevel"}, {"use_regex", false}}}}}},
    };
}

TEST(VocabFromHfCli, writes_llama_cpp_vocabulary_keys) {
    auto dir = test::scratch_dir();
    std::ofstream(dir / "tokenizer.json") << tiny_hf_tokenizer().dump();
    std::ofstream(dir / "tokenizer_config.json") << nlohmann::json{
        {"add_bos_token", false},
        {"eos_token", "<|im_end|>"},
        {"bos_token", nullptr},
        {"chat_template", "{{ messages }}"}}.dump();
    auto r = test::run_moeserve({"vocab-from-hf", (dir / "tokenizer.json").string(),
                                 (dir / "tokenizer_config.json").string(), "-o", (dir / "v.gguf").string()});
    ASSERT_EQ(r.status, 0) << r.err;

    GgufFile f = GgufFile::open((dir / "v.gguf").string());
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
    std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 16u);
    EXPECT_EQ(tokens[13], "[PAD13]");
    EXPECT_EQ(tokens[14], "<|im_end|>");
    std::vector<int64_t> types = f.get_int_array("tokenizer.ggml.token_type");
    EXPECT_EQ(types[0], int(TokenType::NORMAL));
    EXPECT_EQ(types[13], int(TokenType::UNUSED));
    EXPECT_EQ(types[14], int(TokenType::CONTROL));
    EXPECT_EQ(types[15], int(TokenType::USER_DEFINED));
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges"),
              (std::vector<std::string>{"h e", "l l", "he ll", "hell o", "\xC4\xA0 w"}));
    EXPECT_EQ(f.get_u32("tokenizer.ggml.eos_token_id"), 14u);
    EXPECT_FALSE(f.has("tokenizer.ggml.bos_token_id"));
    EXPECT_EQ(f.get_bool("tokenizer.ggml.add_bos_token"), false);
    EXPECT_EQ(f.get_string("tokenizer.chat_template"), "{{ messages }}");

    Tokenizer tok = Tokenizer::from_gguf(f);
    EXPECT_EQ(tok.tokenize("hello world<|im_end|>", true, true), (std::vector<TokenId>{11, 12, 3, 6, 2, 7, 14}));
    EXPECT_TRUE(tok.is_eog(14));
}

TEST(VocabFromHfCli, unknown_pre_tokenizer_asks_for_pre) {
    auto dir = test::scratch_dir();
    nlohmann::json t = tiny_hf_tokenizer();
    t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}};
    std::ofstream(dir / "tokenizer.json") << t.dump();
    auto r = test::run_moeserve({"vocab-from-hf", (dir / "tokenizer.json").string(), "-o", (dir / "v.gguf").string()});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--pre"), std::string::npos) << r.err;
    r = test::run_moeserve(
        {"vocab-from-hf", (dir / "tokenizer.json").string(), "-o", (dir / "v.gguf").string(), "--pre", "gpt-2"});
    EXPECT_EQ(r.status, 0) << r.err;
}

}  // namespace
}  // namespace moeserve
