// RecurrentState and the KvCache semantics built on it, without a model:
// zeroed slots, bounded snapshots newest first, restore through truncate,
// and a cache without recurrent layers behaving exactly as before.
#include <gtest/gtest.h>

#include "memory/kv_cache.h"
#include "small_cache_config.h"

namespace moeserve {
namespace {

KvCacheConfig hybrid_config(int n_seq, int n_snapshots) {
    return test::small_cache_config(n_seq, true, n_snapshots);
}

// Sequence 0 grows by n tokens, its state takes `value`, and is saved as `kind`.
void append_and_snapshot(KvCache& cache, int64_t n, float value, SnapshotKind kind) {
    cache.append(0, n);
    cache.ssm_state(0, 0)[0] = value;
    cache.snapshot(0, kind);
}

TEST(RecurrentState, slots_are_separate_and_start_at_zero) {
    KvCache cache(hybrid_config(2, 2));
    ASSERT_TRUE(cache.has_recurrent());
    EXPECT_EQ(cache.n_embd_r(0), 30);
    EXPECT_EQ(cache.n_embd_s(0), 32);
    EXPECT_EQ(cache.n_embd_r(1), 0);
    for (int i = 0; i < 30; ++i) EXPECT_EQ(cache.conv_state(0, 1)[i], 0.0f);
    cache.conv_state(0, 0)[5] = 1.5f;
    cache.ssm_state(0, 0)[31] = 2.5f;
    EXPECT_EQ(cache.conv_state(0, 1)[5], 0.0f);
    EXPECT_EQ(cache.ssm_state(0, 1)[31], 0.0f);
    // 2 sequences × (1 live + 2 snapshots) × 62 floats, plus K and V rows of layer 1.
    EXPECT_EQ(cache.bytes(), 2u * 3 * 62 * 4 + 64u * 2 * 128 * 2);
}

TEST(RecurrentState, snapshots_are_bounded_newest_first_and_restored_by_truncate) {
    KvCache cache(hybrid_config(1, 2));
    for (int step = 1; step <= 3; ++step) {
        cache.append(0, 10);
        cache.ssm_state(0, 0)[0] = static_cast<float>(step);
        cache.snapshot(0);
    }
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{30, 20}));  // 10 was evicted
    cache.append(0, 5);
    cache.ssm_state(0, 0)[0] = 99.0f;
    EXPECT_FALSE(cache.can_truncate(0, 10));
    EXPECT_THROW(cache.truncate(0, 10), std::runtime_error);
    EXPECT_EQ(cache.seq_length(0), 35);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 99.0f);

    cache.truncate(0, 20);
    EXPECT_EQ(cache.seq_length(0), 20);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 2.0f);
    EXPECT_EQ(cache.snapshot_positions(0), std::vector<int64_t>{20});
    // Snapshotting the same position again replaces it.
    cache.ssm_state(0, 0)[0] = 7.0f;
    cache.snapshot(0);
    EXPECT_EQ(cache.snapshot_positions(0), std::vector<int64_t>{20});
    cache.append(0, 3);
    cache.truncate(0, 20);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 7.0f);

    cache.truncate(0, 0);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 0.0f);
    EXPECT_TRUE(cache.snapshot_positions(0).empty());
    EXPECT_EQ(cache.n_free(), 64);
}

// Two kinds share a sequence's buffers without evicting each other: the prompt
// ends keep at most two, the turn boundaries the rest, so an agent's tool loop
// (a new prompt end per request) never pushes out the last user message's
// boundaries, and each boundary restores its own state.
TEST(RecurrentState, turn_boundaries_survive_prompt_ends) {
    KvCache cache(hybrid_config(1, 4));
    auto step = [&](int64_t n, float value, SnapshotKind kind) { append_and_snapshot(cache, n, value, kind); };
    step(10, 1, SnapshotKind::turn_boundary);  // 10
    step(5, 2, SnapshotKind::turn_boundary);   // 15
    for (int request = 0; request < 3; ++request) {
        step(9, 10.0f + request, SnapshotKind::prompt_end);
        step(1, 20.0f + request, SnapshotKind::prompt_end);
    }
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{45, 44, 15, 10}));
    // A third boundary evicts the oldest boundary, not a prompt end.
    step(1, 3, SnapshotKind::turn_boundary);
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{46, 45, 44, 15}));
    // A prompt end saved again as a turn boundary becomes one (and is not evicted by prompt ends).
    cache.truncate(0, 45);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 22.0f);
    cache.snapshot(0, SnapshotKind::turn_boundary);
    step(2, 30, SnapshotKind::prompt_end);
    step(2, 31, SnapshotKind::prompt_end);
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{49, 47, 45, 15}));
    step(2, 32, SnapshotKind::prompt_end);
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{51, 49, 45, 15}));
    cache.truncate(0, 45);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 22.0f);
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{45, 15}));
    cache.truncate(0, 15);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 2.0f);
    EXPECT_EQ(cache.snapshot_positions(0), std::vector<int64_t>{15});
}

TEST(RecurrentState, fewer_than_three_snapshots_keep_prompt_ends_only) {
    KvCache cache(hybrid_config(1, 2));
    cache.append(0, 10);
    cache.snapshot(0, SnapshotKind::turn_boundary);
    EXPECT_TRUE(cache.snapshot_positions(0).empty());
    cache.snapshot(0);
    EXPECT_EQ(cache.snapshot_positions(0), std::vector<int64_t>{10});
    cache.snapshot(0, SnapshotKind::turn_boundary);  // no room for boundaries: the prompt end stays
    EXPECT_EQ(cache.snapshot_positions(0), std::vector<int64_t>{10});
}

// Message starts (the spaced ladder of a long conversation) are a third kind, kept
// in host RAM beyond the four device snapshots: they cost no backend memory,
// take RAM only while held, restore (and share) their own state, and are not
// demoted when a lower kind is saved at their position.
TEST(RecurrentState, message_starts_live_in_host_ram_beyond_the_device_snapshots) {
    const size_t state_bytes = 62 * sizeof(float);
    KvCache four(hybrid_config(2, 4));
    KvCache cache(hybrid_config(2, 7));
    EXPECT_EQ(cache.bytes(), four.bytes());  // 3 more snapshots, none in the backend's buffers
    EXPECT_EQ(cache.snapshot_capacity(SnapshotKind::message_start), 3);
    EXPECT_EQ(four.snapshot_capacity(SnapshotKind::message_start), 0);
    EXPECT_EQ(cache.snapshot_host_bytes(), 0u);

    auto step = [&](int64_t n, float value, SnapshotKind kind) { append_and_snapshot(cache, n, value, kind); };
    step(8, 1, SnapshotKind::message_start);  // 8
    step(8, 2, SnapshotKind::message_start);  // 16
    step(4, 3, SnapshotKind::turn_boundary);  // 20
    step(8, 4, SnapshotKind::message_start);  // 28
    step(4, 5, SnapshotKind::message_start);  // 32: evicts 16, the oldest but the lowest (8)
    step(2, 6, SnapshotKind::prompt_end);     // 34
    step(1, 7, SnapshotKind::prompt_end);     // 35
    EXPECT_EQ(cache.snapshot_positions(0, SnapshotKind::message_start), (std::vector<int64_t>{32, 28, 8}));
    EXPECT_EQ(cache.snapshot_positions(0), (std::vector<int64_t>{35, 34, 32, 28, 20, 8}));
    EXPECT_EQ(cache.snapshot_host_bytes(), 3 * state_bytes);

    // A prompt end saved where a message start is keeps it a message start.
    cache.truncate(0, 28);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 4.0f);
    cache.snapshot(0);
    EXPECT_EQ(cache.snapshot_positions(0, SnapshotKind::message_start), (std::vector<int64_t>{28, 8}));
    EXPECT_TRUE(cache.snapshot_positions(0, SnapshotKind::prompt_end).empty());
    EXPECT_EQ(cache.snapshot_host_bytes(), 2 * state_bytes);  // 32's buffer went with it

    // Another sequence takes a prefix up to a message start: that state, uploaded.
    ASSERT_TRUE(cache.can_share_prefix(0, 1, 8));
    cache.share_prefix(0, 1, 8);
    EXPECT_EQ(cache.ssm_state(0, 1)[0], 1.0f);
    EXPECT_TRUE(cache.snapshot_positions(1).empty());

    // Rewinding past a message start lets its RAM go; a new sequence lets all go.
    cache.truncate(0, 8);
    EXPECT_EQ(cache.ssm_state(0, 0)[0], 1.0f);
    EXPECT_EQ(cache.snapshot_positions(0), std::vector<int64_t>{8});
    EXPECT_EQ(cache.snapshot_host_bytes(), state_bytes);
    cache.truncate(0, 0);
    EXPECT_EQ(cache.snapshot_host_bytes(), 0u);
}

TEST(RecurrentState, clear_zeroes_every_sequence) {
    KvCache cache(hybrid_config(2, 1));
    cache.append(1, 4);
    cache.conv_state(0, 1)[0] = 3.0f;
    cache.snapshot(1);
    cache.clear();
    EXPECT_EQ(cache.conv_state(0, 1)[0], 0.0f);
    EXPECT_TRUE(cache.snapshot_positions(1).empty());
    EXPECT_EQ(cache.seq_length(1), 0);
}

TEST(RecurrentState, a_cache_without_recurrent_layers_truncates_anywhere) {
    KvCacheConfig c = hybrid_config(1, 2);
    c.n_embd_r.clear();
    c.n_embd_s.clear();
    KvCache cache(c);
    EXPECT_FALSE(cache.has_recurrent());
    cache.append(0, 12);
    cache.snapshot(0);  // a no-op
    EXPECT_TRUE(cache.snapshot_positions(0).empty());
    EXPECT_TRUE(cache.can_truncate(0, 5));
    cache.truncate(0, 5);
    EXPECT_EQ(cache.seq_length(0), 5);
    EXPECT_EQ(cache.bytes(), 64u * 2 * 128 * 2);
}

TEST(RecurrentState, mismatched_layer_lists_are_refused) {
    KvCacheConfig c = hybrid_config(1, 2);
    c.n_embd_s = {1};
    EXPECT_THROW(KvCache{c}, std::invalid_argument);
}

}  // namespace
}  // namespace moeserve
