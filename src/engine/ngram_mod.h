// llama.cpp's `--spec-type ngram-mod`: a fixed-size table mapping the hash of
// n_match consecutive tokens to the token that followed them, filled from
// every slot's prompt and answer. A draft starts from the last n_match - 1
// tokens and the one just sampled, looks up the next token, shifts it in and
// looks again, until an empty entry or n_max tokens. Unlike ngram-simple it
// costs no search of the history (one hash a guessed token, whatever the
// context length), remembers what other conversations wrote (the table is
// shared by the slots: an agent's many requests over one code base guess
// from each other), and guesses runs of any length: llama.cpp drafts 48-64
// tokens with it for MoE models, where a long verification costs little
// more than a short one. Collisions only cost a wrong guess.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace moeserve {

class NgramModPool {
  public:
    static constexpr int32_t kEmpty = -1;
    // llama.cpp's size: 4M entries, 16 MiB.
    static constexpr size_t kDefaultEntries = size_t{4} << 20;

    NgramModPool(int n, size_t entries = kDefaultEntries);

    int n() const { return n_; }
    size_t size() const { return entries_.size(); }
    size_t bytes() const { return entries_.size() * sizeof(int32_t); }
    // Additions that overwrote an entry in use (llama.cpp's "used" count, its
    // measure of how full the table is: it is reset past a quarter).
    size_t used() const { return used_; }

    // Records that tokens[n] followed tokens[0, n).
    void add(const int32_t* tokens);
    // The token recorded after tokens[0, n), or kEmpty.
    int32_t get(const int32_t* tokens) const;
    void reset();

  private:
    // llama.cpp's hash: the tokens folded in with a 64-bit LCG multiplier, modulo the size.
    size_t index(const int32_t* tokens) const;

    int n_;
    std::vector<int32_t> entries_;
    size_t used_ = 0;
};

// The draft for the token after `sampled`, which follows `history`: the walk
// through the pool from history's last n - 1 tokens and `sampled`, at most
// n_max tokens; empty when it stops before n_min tokens or the history is
// shorter than n.
std::vector<int32_t> ngram_mod_draft(const NgramModPool& pool, std::span<const int32_t> history, int32_t sampled,
                                     int n_min, int n_max);

}  // namespace moeserve
