// BPE pre-tokenizers: how llama.cpp cuts text into words before merging, for
// each tokenizer.ggml.pre. A pre-tokenizer is llama.cpp's list of regexes,
// applied one after another, each splitting the pieces the previous produced.
// Two regexes (GPT-2's and Llama 3's) run as hand-written matchers, as in
// llama.cpp; every other regex runs in PCRE2 on llama.cpp's "collapsed" text
// (each non-ASCII code point replaced by one byte standing for its class) or,
// for regexes without \p{..} classes, on the code points themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::text {

struct PreTokenizerSpec {
    std::vector<std::string> regexes;
    bool clean_spaces = true;     // decode removes spaces before punctuation (clean_up_tokenization_spaces)
    bool ignore_merges = false;   // a word that is a token is not merged
    bool add_bos = false;         // default of tokenizer.ggml.add_bos_token
    bool no_default_bos = false;  // no BOS id unless the file names one (GLM)
};

// The spec for a tokenizer.ggml.pre name, or nullptr when llama.cpp does not
// know the name either (or moeserve does not support it).
const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre);

class PreTokenizer {
  public:
    // Compiles the regexes. Throws std::runtime_error on a regex PCRE2 rejects.
    explicit PreTokenizer(const std::vector<std::string>& regexes);
    ~PreTokenizer();
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;

    // Splits the code points into words; appends the length of each word (in
    // code points, all > 0, summing to cpts.size()) to `lengths`.
    void split(const std::vector<uint32_t>& cpts, std::vector<uint32_t>& lengths) const;

  private:
    struct Step;
    std::vector<std::unique_ptr<Step>> steps_;
    bool needs_collapsed_ = false;
    bool needs_wide_ = false;
};

// llama.cpp's rewrite of a regex for collapsed text: \p{L}, \p{N}, \p{P}, \p{S},
// \p{M} (and \p{Lu} etc., which count as \p{L}) become classes of the class byte
// plus the ASCII members. Exposed for tests.
std::string collapse_regex(std::string_view regex);
bool regex_uses_categories(std::string_view regex);

// The collapsed form of one code point.
char collapse_codepoint(uint32_t cp);

}  // namespace moeserve::text
