#include "engine/ngram_mod.h"

#include <algorithm>
#include <stdexcept>

namespace moeserve {

NgramModPool::NgramModPool(int n, size_t entries) : n_(n), entries_(entries, kEmpty) {
    if (n < 1 || entries == 0) throw std::invalid_argument("ngram-mod: n_match and the table size must be positive");
}

size_t NgramModPool::index(const int32_t* tokens) const {
    uint64_t h = 0;
    // A token id is added as llama.cpp's size_t arithmetic adds it (sign-extended).
    for (int i = 0; i < n_; ++i)
        h = h * 6364136223846793005ULL + static_cast<uint64_t>(static_cast<int64_t>(tokens[i]));
    return static_cast<size_t>(h % entries_.size());
}

void NgramModPool::add(const int32_t* tokens) {
    int32_t& e = entries_[index(tokens)];
    if (e != kEmpty) ++used_;
    e = tokens[n_];
}

int32_t NgramModPool::get(const int32_t* tokens) const {
    return entries_[index(tokens)];
}

void NgramModPool::reset() {
    std::fill(entries_.begin(), entries_.end(), kEmpty);
    used_ = 0;
}

std::vector<int32_t> ngram_mod_draft(const NgramModPool& pool, std::span<const int32_t> history, int32_t sampled,
                                     int n_min, int n_max) {
    const size_t n = static_cast<size_t>(pool.n());
    if (history.size() < n || n_max <= 0) return {};
    // walk = [last n - 1 tokens of the history, sampled, guesses...]; each
    // lookup hashes the newest n tokens of it.
    std::vector<int32_t> walk;
    walk.reserve(n + static_cast<size_t>(n_max));
    walk.assign(history.end() - static_cast<std::ptrdiff_t>(n - 1), history.end());
    walk.push_back(sampled);
    for (int i = 0; i < n_max; ++i) {
        const int32_t next = pool.get(walk.data() + i);
        if (next == NgramModPool::kEmpty) {
            if (i < n_min) return {};
            break;
        }
        walk.push_back(next);
    }
    return std::vector<int32_t>(walk.begin() + static_cast<std::ptrdiff_t>(n), walk.end());
}

}  // namespace moeserve
