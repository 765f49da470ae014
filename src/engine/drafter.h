// The guesses of speculative decoding for every slot of a scheduler
// (serve --spec-type ngram-simple,ngram-mod): the kinds --spec-type names are
// asked in order and the first that guesses something for a slot's step
// gives its draft, as llama.cpp's common_speculative_draft does. What the
// kinds keep between steps lives here: ngram-mod's pool of n-grams, shared
// by all slots, and per slot how far its history is in the pool and how
// well its last drafts did (three poor ones in a row clear the pool, as in
// llama.cpp: a pool full of another text's n-grams guesses wrong).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/ngram_draft.h"
#include "engine/ngram_mod.h"

namespace moeserve {

class Drafter {
  public:
    Drafter(const SpeculativeConfig& config, int n_slots);

    // Slot `slot` runs task `task`, whose prompt is in its cache: the first
    // call for a task adds the prompt to the pool (llama.cpp's begin(), at the
    // end of the prompt), whether or not the task will ever draft.
    void start(int slot, uint64_t task, std::span<const int32_t> prompt);
    // The draft for slot `slot`, running task `task` (start() first, if not
    // yet), whose cache holds `history` and whose next token is `sampled`: at
    // most n_max tokens.
    std::vector<int32_t> draft(int slot, uint64_t task, std::span<const int32_t> history, int32_t sampled,
                               int64_t n_max);
    // The slot's last draft was verified and its first n_accepted tokens kept.
    void accept(int slot, int64_t n_accepted);

    // Bytes of ngram-mod's pool (0 without it).
    size_t pool_bytes() const { return pool_ ? pool_->bytes() : 0; }
    // Times ngram-mod's pool was cleared (too full at a prompt, or guessing badly).
    uint64_t pool_resets() const { return pool_resets_; }

  private:
    struct SlotDrafts {
        std::optional<uint64_t> task;        // the task whose prompt is in the pool
        std::optional<DraftKind> last_kind;  // the kind that gave the last draft
        size_t pool_end = 0;                 // history[0, pool_end) starts n-grams already in the pool
        size_t n_last = 0;                   // ngram-mod: its last draft's length before any limit
        int n_poor = 0;                      // ngram-mod: drafts in a row with less than half accepted
    };
    // llama.cpp's begin(): the prompt's n-grams go into the pool; a pool past a
    // quarter full is cleared.
    void begin(SlotDrafts& s, std::span<const int32_t> prompt);
    std::vector<int32_t> draft_mod(SlotDrafts& s, std::span<const int32_t> history, int32_t sampled);
    void reset_pool();

    SpeculativeConfig config_;
    std::unique_ptr<NgramModPool> pool_;
    std::vector<SlotDrafts> slots_;
    uint64_t pool_resets_ = 0;
};

}  // namespace moeserve
