// Self-speculative drafts from the sequence's own history (llama.cpp's
// `--spec-type ngram-simple`): when the last size_n tokens (the newest one
// just sampled) appeared before, the tokens that followed them then are a
// guess at what follows now. Code that is being edited or quoted, a tool
// call repeating a file's text, a summary citing its source: all repeat long
// runs of earlier tokens, and the model then verifies a run of guesses in one
// forward pass (one read of the weights and of the KV cache) instead of one
// pass per token. A wrong guess costs compute, never a different answer: the
// scheduler keeps only the guesses the sampler itself would have produced.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace moeserve {

struct NgramDraftConfig {
    int size_n = 12;  // tokens of the pattern looked up (--spec-ngram-simple-size-n)
    int size_m = 48;  // most tokens copied after an earlier match (--spec-ngram-simple-size-m)
};

// The speculative-decoding settings of a server (serve --spec-type ...).
struct SpeculativeConfig {
    bool enabled = false;  // --spec-type ngram-simple
    NgramDraftConfig ngram;
    int n_max = 16;  // --spec-draft-n-max: a request's default speculative.n_max
    int n_min = 0;   // --spec-draft-n-min: drafts shorter than this are not verified
};

// The draft for the token after `sampled`, which follows `history` (the
// tokens in the cache): the latest earlier place where history's last
// size_n - 1 tokens and `sampled` occurred together, and up to size_m tokens
// that followed it. Empty when there is no such place, when the history is
// not longer than size_n + size_m + 1 tokens, or when fewer than size_n
// tokens follow the match (llama.cpp's rules for ngram-simple).
std::vector<int32_t> ngram_simple_draft(std::span<const int32_t> history, int32_t sampled,
                                        const NgramDraftConfig& config);

// Parses --spec-type's value; throws std::invalid_argument naming what is
// supported for the other llama.cpp kinds (draft models, n-gram maps).
bool parse_spec_type(const std::string& value);

}  // namespace moeserve
