// The hybrid memory of nemotron_h_moe on the fixture model: layer kinds and
// cache layout come from the metadata; prefill in chunks of any size equals
// one pass; sequences batched together (interleaved) equal each alone; a
// snapshot restored through truncate reproduces the logits exactly; a
// truncate the recurrent state cannot honour is refused and leaves the
// sequence as it was; removing a sequence starts it from a zero state.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"

namespace moeserve {
namespace {

const char* const kStem = "nemotron-h-moe-tiny-s1";

EngineOptions options(const std::string& weights, const std::string& kv, int n_seq, int64_t n_ubatch = 512) {
    return test::fixture_engine_options(kStem, weights, kv, n_seq, n_ubatch);
}

std::vector<int32_t> prompt_tokens(size_t n, size_t offset = 0) {
    return test::golden_tokens(kStem, n, offset);
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, int64_t n_vocab) {
    test::expect_logits_close(a, b, n_vocab, 1e-6, 1e-3f);
}

TEST(NemotronModel, layer_kinds_give_kv_rows_to_attention_and_state_to_mamba_layers) {
    MOESERVE_REQUIRE_FIXTURES();
    Engine e(options("q8_0", "f16", 2));
    const KvCacheConfig& c = e.cache().config();
    // MEM*EM: Mamba2 at 0, 2, 5; MoE at 1, 4; attention (2 KV heads × 64) at 3.
    const std::vector<int64_t> k = {0, 0, 0, 128, 0, 0};
    const std::vector<int64_t> r = {3 * 768, 0, 3 * 768, 0, 0, 3 * 768};
    const std::vector<int64_t> s = {64 * 512, 0, 64 * 512, 0, 0, 64 * 512};
    EXPECT_EQ(c.n_embd_k, k);
    EXPECT_EQ(c.n_embd_v, k);
    EXPECT_EQ(c.n_embd_r, r);
    EXPECT_EQ(c.n_embd_s, s);
    EXPECT_TRUE(e.cache().has_recurrent());
    // Recurrent bytes per sequence (spec §7.2): 4·[(K−1)(d_inner + 2GN) + N·d_inner] per Mamba2 layer.
    const size_t per_seq = 3 * 4 * (3 * 768 + 64 * 512);
    const size_t kv = 512 * 2 * 128 * 2;
    // The live state and the snapshots in the backend's memory (the rest are in host RAM, as used).
    EXPECT_EQ(c.n_rs_snapshots, 32);
    EXPECT_EQ(e.cache().bytes(), kv + 2 * per_seq * (1 + RecurrentState::kDeviceSnapshots));
}

class NemotronChunks : public ::testing::TestWithParam<int64_t> {};

TEST_P(NemotronChunks, prefill_in_chunks_equals_one_pass) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto toks = prompt_tokens(150);
    Engine whole(options("q4_k_m", "q8_0", 1));
    std::vector<float> expect = whole.eval(0, toks, true);
    Engine chunked(options("q4_k_m", "q8_0", 1, GetParam()));
    std::vector<float> got = chunked.eval(0, toks, true);
    expect_close(expect, got, whole.n_vocab());
}

INSTANTIATE_TEST_SUITE_P(ChunkSizes, NemotronChunks, ::testing::Values(1, 7, 64, 150));

class NemotronBatch : public ::testing::TestWithParam<std::string> {};

TEST_P(NemotronBatch, two_sequences_in_one_batch_match_each_alone) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto a = prompt_tokens(40, 0), b = prompt_tokens(25, 60);
    Engine alone(options("q4_k_m", GetParam(), 1));
    std::vector<float> la = alone.eval(0, a, true);
    alone.cache().clear();
    std::vector<float> lb = alone.eval(0, b, true);

    Engine both(options("q4_k_m", GetParam(), 2));
    Batch batch;  // interleaved: each sequence's recurrent state must follow only its own tokens
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        if (i < a.size()) batch.add(a[i], static_cast<int32_t>(i), 0, true);
        if (i < b.size()) batch.add(b[i], static_cast<int32_t>(i), 1, true);
    }
    std::vector<float> out = both.model().forward(batch, both.cache());
    const int64_t V = both.n_vocab();
    std::vector<float> got_a, got_b;
    for (size_t i = 0; i < batch.size(); ++i) {
        auto& dst = batch.seq_ids[i] == 0 ? got_a : got_b;
        dst.insert(dst.end(), out.begin() + i * V, out.begin() + (i + 1) * V);
    }
    expect_close(la, got_a, V);
    expect_close(lb, got_b, V);

    // Then one decode step for both sequences in one batch.
    Batch step;
    step.add(a[0], static_cast<int32_t>(a.size()), 0, true);
    step.add(b[0], static_cast<int32_t>(b.size()), 1, true);
    std::vector<float> two = both.model().forward(step, both.cache());
    std::vector<float> sa = alone.eval(0, std::span<const int32_t>(&b[0], 1), true);  // alone holds b now
    expect_close(sa, std::vector<float>(two.begin() + V, two.end()), V);
}

INSTANTIATE_TEST_SUITE_P(Caches, NemotronBatch, ::testing::Values("f16", "q4_0"));

TEST(NemotronState, snapshot_restored_by_truncate_reproduces_the_logits_exactly) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto prefix = prompt_tokens(30, 0), detour = prompt_tokens(20, 30), next = prompt_tokens(20, 80);
    Engine e(options("q8_0", "q8_0", 1));
    e.eval(0, prefix, false);
    e.cache().snapshot(0);
    EXPECT_EQ(e.cache().snapshot_positions(0), std::vector<int64_t>{30});
    e.eval(0, detour, false);
    e.cache().snapshot(0);
    EXPECT_EQ(e.cache().snapshot_positions(0), (std::vector<int64_t>{50, 30}));
    ASSERT_TRUE(e.cache().can_truncate(0, 30));
    e.cache().truncate(0, 30);
    EXPECT_EQ(e.cache().seq_length(0), 30);
    EXPECT_EQ(e.cache().snapshot_positions(0), std::vector<int64_t>{30});  // the later one is gone
    std::vector<float> after = e.eval(0, next, true);

    Engine fresh(options("q8_0", "q8_0", 1));
    fresh.eval(0, prefix, false);
    std::vector<float> expect = fresh.eval(0, next, true);
    EXPECT_EQ(expect, after);
}

TEST(NemotronState, truncating_where_no_snapshot_was_taken_is_refused_cleanly) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto toks = prompt_tokens(40, 0);
    Engine e(options("q8_0", "f16", 1));
    e.eval(0, std::span<const int32_t>(toks).first(20), false);
    e.cache().snapshot(0);
    e.eval(0, std::span<const int32_t>(toks).subspan(20), false);
    const int64_t free_before = e.cache().n_free();
    EXPECT_FALSE(e.cache().can_truncate(0, 25));
    EXPECT_TRUE(e.cache().can_truncate(0, 20));
    EXPECT_TRUE(e.cache().can_truncate(0, 0));
    EXPECT_TRUE(e.cache().can_truncate(0, 40));
    try {
        e.cache().truncate(0, 25);
        FAIL() << "expected a refusal";
    } catch (const std::runtime_error& err) {
        EXPECT_NE(std::string(err.what()).find("re-evaluated"), std::string::npos) << err.what();
    }
    EXPECT_EQ(e.cache().seq_length(0), 40);
    EXPECT_EQ(e.cache().n_free(), free_before);
    EXPECT_NO_THROW(e.cache().truncate(0, 40));  // nothing to drop
    EXPECT_EQ(e.cache().seq_length(0), 40);

    // The sequence continues as if nothing had happened.
    Engine fresh(options("q8_0", "f16", 1));
    fresh.eval(0, toks, false);
    EXPECT_EQ(fresh.eval(0, std::span<const int32_t>(toks).first(3), true),
              e.eval(0, std::span<const int32_t>(toks).first(3), true));
}

TEST(NemotronState, a_removed_sequence_starts_again_from_a_zero_state) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto first = prompt_tokens(30, 0), second = prompt_tokens(30, 40);
    Engine e(options("iq4_xs", "f16", 1));
    e.eval(0, first, false);
    e.cache().snapshot(0);
    e.cache().remove(0);
    EXPECT_EQ(e.cache().seq_length(0), 0);
    EXPECT_TRUE(e.cache().snapshot_positions(0).empty());
    std::vector<float> got = e.eval(0, second, true);
    Engine fresh(options("iq4_xs", "f16", 1));
    EXPECT_EQ(fresh.eval(0, second, true), got);
}

TEST(NemotronState, decoding_one_token_at_a_time_matches_the_prompt_batch) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto toks = prompt_tokens(48, 0);
    Engine batch(options("f16", "q4_0", 1));
    std::vector<float> all = batch.eval(0, toks, true);
    Engine step(options("f16", "q4_0", 1));
    std::vector<float> one_by_one;
    for (int32_t t : toks) {
        auto l = step.eval(0, std::span<const int32_t>(&t, 1), true);
        one_by_one.insert(one_by_one.end(), l.begin(), l.end());
    }
    expect_close(all, one_by_one, batch.n_vocab());
}

}  // namespace
}  // namespace moeserve
