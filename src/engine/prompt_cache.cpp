#include "engine/prompt_cache.h"

#include <algorithm>

namespace moeserve {

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

bool PromptCache::put(std::vector<int32_t> tokens, SequenceState state) {
    if (!enabled() || tokens.empty()) return false;
    const size_t size = state.bytes() + tokens.size() * sizeof(int32_t);
    if (size > limit_) return false;
    for (size_t i = 0; i < entries_.size();) {
        const auto& held = entries_[i].tokens;
        const size_t shared = common_prefix(held, tokens);
        if (shared == tokens.size()) {  // it holds these tokens already (and perhaps more)
            entries_[i].last_use = ++clock_;
            return false;
        }
        if (shared == held.size()) {  // a prefix of these: superseded
            take(i);
            continue;
        }
        ++i;
    }
    evict_to(limit_ - size);
    bytes_ += size;
    entries_.push_back({std::move(tokens), std::move(state), ++clock_});
    return true;
}

std::optional<PromptCache::Match> PromptCache::find(const std::vector<int32_t>& prompt, int64_t beat) const {
    std::optional<Match> best;
    for (size_t i = 0; i < entries_.size(); ++i) {
        const int64_t n = static_cast<int64_t>(common_prefix(entries_[i].tokens, prompt));
        if (n <= beat || 4 * n < static_cast<int64_t>(entries_[i].tokens.size())) continue;
        if (!best || n > best->n_prefix) best = Match{i, n};
    }
    return best;
}

PromptCache::Entry PromptCache::take(size_t index) {
    Entry e = std::move(entries_.at(index));
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(index));
    bytes_ -= e.state.bytes() + e.tokens.size() * sizeof(int32_t);
    return e;
}

void PromptCache::evict_to(size_t limit) {
    while (bytes_ > limit && !entries_.empty()) {
        size_t oldest = 0;
        for (size_t i = 1; i < entries_.size(); ++i)
            if (entries_[i].last_use < entries_[oldest].last_use) oldest = i;
        take(oldest);
    }
}

}  // namespace moeserve
