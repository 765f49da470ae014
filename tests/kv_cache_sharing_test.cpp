// KvCache prefix sharing without a model: a sequence takes the first n cells
// of another, cells are freed only when their last holder lets go, a context
// shift over shared cells is refused, and a hybrid cache copies the recurrent
// state from the giver's end or snapshot.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "memory/kv_cache.h"
#include "small_cache_config.h"

namespace moeserve {
namespace {

KvCacheConfig config(int n_seq, bool recurrent) {
    return test::small_cache_config(n_seq, recurrent);
}

TEST(KvCacheSharing, a_shared_prefix_uses_the_same_cells_until_the_last_holder_lets_go) {
    KvCache cache(config(3, false));
    cache.append(0, 20);
    ASSERT_TRUE(cache.can_share_prefix(0, 1, 12));
    EXPECT_FALSE(cache.can_share_prefix(0, 1, 21));
    EXPECT_FALSE(cache.can_share_prefix(0, 0, 5));
    cache.share_prefix(0, 1, 12);
    EXPECT_EQ(cache.seq_length(1), 12);
    const auto a = cache.seq_cells(0), b = cache.seq_cells(1);
    EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin()));
    EXPECT_EQ(cache.n_free(), 64 - 20);  // nothing allocated
    EXPECT_EQ(cache.shared_cells(0), 12);
    EXPECT_EQ(cache.shared_cells(1), 12);

    // The receiver goes on in cells of its own.
    const auto own = cache.append(1, 5);
    for (int32_t c : own) EXPECT_FALSE(cache.is_shared(c));
    EXPECT_EQ(cache.n_free(), 64 - 25);

    // The giver starts over: its 8 unshared cells are freed, the 12 shared stay with the receiver.
    cache.truncate(0, 0);
    EXPECT_EQ(cache.n_free(), 64 - 17);
    EXPECT_EQ(cache.shared_cells(1), 0);
    // A third sequence shares from the second; removing both frees everything exactly once.
    cache.share_prefix(1, 2, 17);
    cache.remove(1);
    EXPECT_EQ(cache.n_free(), 64 - 17);
    cache.remove(2);
    EXPECT_EQ(cache.n_free(), 64);
    // Every cell comes back once: a full-cache append gets 64 distinct cells.
    const auto all = cache.append(0, 64);
    EXPECT_EQ(std::set<int32_t>(all.begin(), all.end()).size(), 64u);
}

TEST(KvCacheSharing, sharing_replaces_what_the_receiver_held) {
    KvCache cache(config(2, false));
    cache.append(0, 10);
    cache.append(1, 30);
    cache.share_prefix(0, 1, 10);
    EXPECT_EQ(cache.seq_length(1), 10);
    EXPECT_EQ(cache.n_free(), 64 - 10);
}

TEST(KvCacheSharing, a_context_shift_over_shared_tokens_is_refused) {
    KvCache cache(config(2, false));
    cache.append(0, 20);
    cache.share_prefix(0, 1, 10);
    EXPECT_THROW(cache.discard(0, 4, 4), std::runtime_error);  // tokens 8, 9 after it are shared
    EXPECT_EQ(cache.seq_length(0), 20);
    cache.discard(0, 12, 4);  // all after the shared prefix: allowed
    EXPECT_EQ(cache.seq_length(0), 16);
    EXPECT_EQ(cache.n_free(), 64 - 16);
}

TEST(KvCacheSharing, a_hybrid_cache_copies_the_state_at_the_givers_end_or_snapshot) {
    KvCache cache(config(2, true));
    cache.append(0, 10);
    cache.ssm_state(0, 0)[3] = 1.0f;
    cache.snapshot(0);
    cache.append(0, 5);
    cache.ssm_state(0, 0)[3] = 2.0f;
    EXPECT_FALSE(cache.can_share_prefix(0, 1, 12));  // no state after 12 tokens
    EXPECT_THROW(cache.share_prefix(0, 1, 12), std::invalid_argument);

    cache.share_prefix(0, 1, 10);  // from the snapshot
    EXPECT_EQ(cache.ssm_state(0, 1)[3], 1.0f);
    EXPECT_EQ(cache.ssm_state(0, 0)[3], 2.0f);  // the giver's own state untouched
    cache.share_prefix(0, 1, 15);               // from its live state
    EXPECT_EQ(cache.ssm_state(0, 1)[3], 2.0f);
    EXPECT_TRUE(cache.snapshot_positions(1).empty());
}

}  // namespace
}  // namespace moeserve
