// Self-speculative drafts from the sequence's own history (llama.cpp's
// `--spec-type ngram-simple`): when the last size_n tokens (the newest one
// just sampled) appeared before, the tokens that followed them then are a
// guess at what follows now. (ngram_mod.h has the other kind, a hashed pool
// of n-grams shared by the slots; drafter.h picks between them.) Code that is being edited or quoted, a tool
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

// llama.cpp's ngram-mod: a hashed pool of n-grams (n_match tokens -> the
// token that followed them), shared by all slots, walked one token at a time.
struct NgramModConfig {
    int n_match = 24;  // tokens hashed as the key (--spec-ngram-mod-n-match)
    int n_min = 48;    // a shorter walk is no draft (--spec-ngram-mod-n-min)
    int n_max = 64;    // longest walk (--spec-ngram-mod-n-max)
};

// The kinds of guesses --spec-type names, tried in the order given: the
// first that guesses something for a slot's step is the step's draft.
enum class DraftKind { ngram_simple, ngram_mod };

// The speculative-decoding settings of a server (serve --spec-type ...).
struct SpeculativeConfig {
    bool enabled = false;          // --spec-type names at least one kind
    std::vector<DraftKind> kinds;  // in --spec-type's order
    NgramDraftConfig ngram;        // ngram-simple
    NgramModConfig mod;            // ngram-mod
    int n_max = 16;                // --spec-draft-n-max: most ngram-simple guesses per step
    int n_min = 0;                 // --spec-draft-n-min: a request's default speculative.n_min
    // The longest draft any of the kinds makes: the logits rows planned per
    // slot, and a request's default (and largest) speculative.n_max.
    int draft_max() const;
};

// The draft for the token after `sampled`, which follows `history` (the
// tokens in the cache): the latest earlier place where history's last
// size_n - 1 tokens and `sampled` occurred together, and up to size_m tokens
// that followed it. Empty when there is no such place, when the history is
// not longer than size_n + size_m + 1 tokens, or when fewer than size_n
// tokens follow the match (llama.cpp's rules for ngram-simple).
std::vector<int32_t> ngram_simple_draft(std::span<const int32_t> history, int32_t sampled,
                                        const NgramDraftConfig& config);

// Parses --spec-type's value (a comma list, as llama.cpp's; "none" names
// nothing, so "none" alone turns speculation off); throws std::invalid_argument naming what is
// supported for the other llama.cpp kinds (draft models, n-gram maps).
std::vector<DraftKind> parse_spec_type(const std::string& value);
const char* draft_kind_name(DraftKind kind);

}  // namespace moeserve
