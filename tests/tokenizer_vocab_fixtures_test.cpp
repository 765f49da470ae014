// Every test case of llama.cpp's vocabulary fixtures (shared/fixtures/vocab):
// tokenized without BOS and without parsing special tokens, as llama.cpp's
// test-tokenizer-0 does, the ids must match exactly; and decoding gives back
// the input where llama.cpp's decoder does.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

struct Case {
    std::string text;
    std::vector<TokenId> ids;
};

// .inp: each case followed by a line "__ggml_vocab_test__"; .out: ids per line.
std::vector<Case> load_cases(const std::string& vocab) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::string inp = read_all(test::fixture("vocab/" + vocab + ".gguf.inp"));
    std::string out = read_all(test::fixture("vocab/" + vocab + ".gguf.out"));
    std::vector<Case> cases;
    size_t pos = 0;
    while (pos < inp.size()) {
        size_t end = inp.find(sep, pos);
        if (end == std::string::npos) break;
        cases.push_back({inp.substr(pos, end - pos), {}});
        pos = end + sep.size();
    }
    std::istringstream lines(out);
    std::string line;
    for (Case& c : cases) {
        if (!std::getline(lines, line)) break;
        std::istringstream ids(line);
        for (TokenId id; ids >> id;) c.ids.push_back(id);
    }
    return cases;
}

class VocabFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabFixture, tokenizes_every_case_like_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string vocab = GetParam();
    Tokenizer tok = Tokenizer::from_file(test::fixture("vocab/" + vocab + ".gguf").string());
    std::vector<Case> cases = load_cases(vocab);
    ASSERT_GE(cases.size(), 30u) << "too few cases read from " << vocab << ".gguf.inp";
    int failures = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        std::vector<TokenId> got = tok.tokenize(cases[i].text, false, false);
        EXPECT_EQ(got, cases[i].ids) << vocab << " case " << i << ": '" << cases[i].text << "'";
        failures += got != cases[i].ids;
    }
    EXPECT_EQ(failures, 0) << failures << " of " << cases.size() << " cases differ";
}

TEST_P(VocabFixture, decodes_each_case_back_to_its_text) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string vocab = GetParam();
    Tokenizer tok = Tokenizer::from_file(test::fixture("vocab/" + vocab + ".gguf").string());
    for (const Case& c : load_cases(vocab)) {
        std::string text = tok.detokenize(c.ids, false);
        std::string expected = c.text;
        if (tok.vocab().type() == VocabType::SPM) {
            // The SPM word marker adds a space at the start; detokenize removes
            // exactly one. Unknown characters come back as <unk>'s text: none here.
            EXPECT_EQ(text, expected) << vocab << ": '" << c.text << "'";
        } else if (!tok.vocab().clean_spaces()) {
            EXPECT_EQ(text, expected) << vocab << ": '" << c.text << "'";
        } else {
            // clean_up_tokenization_spaces changes " ." and " 's": compare with
            // the same clean-up applied to the input.
            EXPECT_EQ(text, text::clean_up_spaces(expected)) << vocab << ": '" << c.text << "'";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Bpe, VocabFixture,
                         ::testing::Values("ggml-vocab-deepseek-coder", "ggml-vocab-deepseek-llm", "ggml-vocab-falcon",
                                           "ggml-vocab-gpt-2", "ggml-vocab-mpt", "ggml-vocab-refact",
                                           "ggml-vocab-starcoder"),
                         [](const auto& info) {
                             std::string n = std::string(info.param).substr(11);
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });
INSTANTIATE_TEST_SUITE_P(SentencePiece, VocabFixture, ::testing::Values("ggml-vocab-llama-spm", "ggml-vocab-phi-3"),
                         [](const auto& info) {
                             std::string n = std::string(info.param).substr(11);
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

TEST(VocabFixtureWordPiece, bert_bge_is_out_of_scope) {
    GTEST_SKIP() << "ggml-vocab-bert-bge is a WordPiece (tokenizer.ggml.model = bert) vocabulary; moeserve serves "
                    "BPE and SentencePiece models only";
}

TEST(VocabFixtureLoad, vocabularies_without_cases_load) {
    MOESERVE_REQUIRE_FIXTURES();
    // gpt-neox (no tokenizer.ggml.pre: the default pre-tokenizer) and baichuan (SPM).
    Tokenizer neox = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-gpt-neox.gguf").string());
    EXPECT_EQ(neox.vocab().pre(), "default");
    std::vector<TokenId> ids = neox.tokenize("Hello world", false, false);
    EXPECT_EQ(neox.detokenize(ids, false), "Hello world");
    Tokenizer baichuan = Tokenizer::from_file(test::fixture("vocab/ggml-vocab-baichuan.gguf").string());
    EXPECT_EQ(baichuan.vocab().type(), VocabType::SPM);
    ids = baichuan.tokenize("Hello world", true, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 1);
    EXPECT_EQ(baichuan.detokenize(std::span(ids).subspan(1), false), "Hello world");
}

}  // namespace
}  // namespace moeserve
