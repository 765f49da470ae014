#include "engine/drafter.h"

#include <algorithm>

namespace moeserve {
namespace {

// llama.cpp's thresholds for the pool: cleared at a prompt when more than a
// quarter of it was overwritten, and after three drafts in a row of which
// less than half was kept; a slot's new tokens go in 32 at a time.
constexpr double kPoolFullShare = 0.25;
constexpr int kPoorDraftsInARow = 3;
constexpr size_t kPoolAddChunk = 32;

}  // namespace

Drafter::Drafter(const SpeculativeConfig& config, int n_slots)
    : config_(config), slots_(static_cast<size_t>(std::max(0, n_slots))) {
    if (std::find(config.kinds.begin(), config.kinds.end(), DraftKind::ngram_mod) != config.kinds.end())
        pool_ = std::make_unique<NgramModPool>(config.mod.n_match);
}

void Drafter::reset_pool() {
    pool_->reset();
    ++pool_resets_;
}

void Drafter::begin(SlotDrafts& s, std::span<const int32_t> prompt) {
    s.pool_end = 0;
    s.n_last = 0;
    if (!pool_) return;
    const size_t n = static_cast<size_t>(pool_->n());
    if (prompt.size() < n) return;
    for (size_t i = 0; i + n < prompt.size(); ++i) pool_->add(prompt.data() + i);
    s.pool_end = prompt.size() - n;
    if (static_cast<double>(pool_->used()) / static_cast<double>(pool_->size()) > kPoolFullShare) reset_pool();
}

std::vector<int32_t> Drafter::draft_mod(SlotDrafts& s, std::span<const int32_t> history, int32_t sampled) {
    s.n_last = 0;
    const size_t n = static_cast<size_t>(pool_->n());
    if (history.size() < n) return {};
    // The n-grams the slot's answer (and any tokens since its prompt) added.
    if (s.pool_end + kPoolAddChunk < history.size()) {
        for (size_t i = s.pool_end; i + n < history.size(); ++i) pool_->add(history.data() + i);
        s.pool_end = history.size() - n;
    }
    std::vector<int32_t> guess = ngram_mod_draft(*pool_, history, sampled, config_.mod.n_min, config_.mod.n_max);
    s.n_last = guess.size();
    return guess;
}

void Drafter::start(int slot, uint64_t task, std::span<const int32_t> prompt) {
    SlotDrafts& s = slots_.at(static_cast<size_t>(slot));
    if (s.task == task) return;
    s.task = task;
    s.last_kind.reset();
    begin(s, prompt);
}

std::vector<int32_t> Drafter::draft(int slot, uint64_t task, std::span<const int32_t> history, int32_t sampled,
                                    int64_t n_max) {
    start(slot, task, history);
    SlotDrafts& s = slots_.at(static_cast<size_t>(slot));
    s.last_kind.reset();
    for (DraftKind kind : config_.kinds) {
        std::vector<int32_t> guess;
        if (kind == DraftKind::ngram_mod)
            guess = draft_mod(s, history, sampled);
        else {
            guess = ngram_simple_draft(history, sampled, config_.ngram);
            if (static_cast<int64_t>(guess.size()) > config_.n_max) guess.resize(static_cast<size_t>(config_.n_max));
        }
        if (guess.empty()) continue;
        s.last_kind = kind;
        if (static_cast<int64_t>(guess.size()) > n_max) guess.resize(static_cast<size_t>(std::max<int64_t>(0, n_max)));
        return guess;
    }
    return {};
}

void Drafter::accept(int slot, int64_t n_accepted) {
    SlotDrafts& s = slots_.at(static_cast<size_t>(slot));
    if (s.last_kind != DraftKind::ngram_mod || s.n_last == 0) return;
    if (static_cast<double>(n_accepted) / static_cast<double>(s.n_last) < 0.5) {
        if (++s.n_poor >= kPoorDraftsInARow) {
            reset_pool();
            s.n_poor = 0;
            s.pool_end = 0;
        }
    } else {
        s.n_poor = 0;
    }
}

}  // namespace moeserve
