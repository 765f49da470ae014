// The server's RAM prompt cache (llama-server's --cache-ram, spec
// server-behaviour §6.2): slots' cached prompts saved to host memory when
// their slot is given to another conversation, so that a conversation that
// comes back later loads its prefix instead of evaluating it again. Entries
// are evicted least recently used first to stay within the byte limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "memory/kv_cache.h"

namespace moeserve {

class PromptCache {
  public:
    struct Entry {
        std::vector<int32_t> tokens;
        SequenceState state;
        uint64_t last_use = 0;
    };
    struct Match {
        size_t index;
        int64_t n_prefix;  // tokens the entry shares with the prompt
    };

    // limit_bytes: 0 = off.
    explicit PromptCache(size_t limit_bytes = 0) : limit_(limit_bytes) {}

    bool enabled() const { return limit_ > 0; }
    size_t limit() const { return limit_; }
    size_t bytes() const { return bytes_; }
    size_t size() const { return entries_.size(); }
    const Entry& entry(size_t i) const { return entries_[i]; }

    // Stores a state (tokens are what it holds). An entry whose tokens are a
    // prefix of these is replaced; nothing is stored when an entry already
    // holds these tokens and more, or when the state alone exceeds the limit.
    // Returns whether it was stored.
    bool put(std::vector<int32_t> tokens, SequenceState state);
    // The entry sharing the longest prefix with the prompt, when that prefix
    // is longer than `beat` and keeps at least a quarter of the entry.
    std::optional<Match> find(const std::vector<int32_t>& prompt, int64_t beat) const;
    // Removes an entry and returns it.
    Entry take(size_t index);

  private:
    void evict_to(size_t limit);

    size_t limit_;
    size_t bytes_ = 0;
    uint64_t clock_ = 0;
    std::vector<Entry> entries_;
};

// Length of the common prefix of two token lists.
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b);

}  // namespace moeserve
