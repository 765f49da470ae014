// The RAM prompt cache's pieces: a sequence's KV rows and recurrent state
// saved from the cache and loaded into another sequence byte for byte, and
// the cache's matching, replacement and least-recently-used eviction.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "engine/prompt_cache.h"
#include "memory/kv_cache.h"

namespace moeserve {
namespace {

KvCacheConfig config(GgmlType type, bool recurrent) {
    KvCacheConfig c;
    c.n_cells = 256;
    c.n_seq_max = 3;
    c.type_k = c.type_v = type;
    c.n_embd_k = {128, 0, 256};  // a layer without KV rows in between
    c.n_embd_v = {128, 0, 256};
    c.head_dim_k = c.head_dim_v = 128;
    if (recurrent) {
        c.n_embd_r = {0, 24, 0};
        c.n_embd_s = {0, 64, 0};
    }
    return c;
}

void fill_random(KvCache& cache, int seq, int64_t n, std::mt19937& rng) {
    const std::vector<int32_t> cells = cache.append(seq, n);
    for (int l = 0; l < cache.n_layer(); ++l)
        for (int32_t c : cells) {
            for (size_t b = 0; b < cache.k_row_bytes(l); ++b) cache.k_row(l, c)[b] = static_cast<uint8_t>(rng());
            for (size_t b = 0; b < cache.v_row_bytes(l); ++b) cache.v_row(l, c)[b] = static_cast<uint8_t>(rng());
        }
    if (cache.has_recurrent())
        for (int l = 0; l < cache.n_layer(); ++l) {
            for (int64_t i = 0; i < cache.n_embd_r(l); ++i) cache.conv_state(l, seq)[i] = static_cast<float>(rng());
            for (int64_t i = 0; i < cache.n_embd_s(l); ++i) cache.ssm_state(l, seq)[i] = static_cast<float>(rng());
        }
}

void expect_same_rows(const KvCache& cache, int a, int b, int64_t n) {
    for (int l = 0; l < cache.n_layer(); ++l)
        for (int64_t i = 0; i < n && cache.k_row_bytes(l) > 0; ++i) {  // layers without rows have no data
            const int32_t ca = cache.seq_cells(a)[i], cb = cache.seq_cells(b)[i];
            ASSERT_EQ(std::memcmp(cache.k_row(l, ca), cache.k_row(l, cb), cache.k_row_bytes(l)), 0) << l << " " << i;
            ASSERT_EQ(std::memcmp(cache.v_row(l, ca), cache.v_row(l, cb), cache.v_row_bytes(l)), 0) << l << " " << i;
        }
}

TEST(SequenceState, saved_rows_load_into_another_sequence_whole_or_as_a_prefix) {
    std::mt19937 rng(5);
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        KvCache cache(config(type, false));
        fill_random(cache, 2, 7, rng);  // interleaved cells: sequence 0's are not consecutive
        fill_random(cache, 0, 40, rng);
        fill_random(cache, 2, 5, rng);
        fill_random(cache, 0, 20, rng);
        const SequenceState st = cache.save_sequence(0);
        EXPECT_EQ(st.n_tokens, 60);
        EXPECT_TRUE(st.recurrent.empty());
        cache.load_sequence(1, st, 60);
        EXPECT_EQ(cache.seq_length(1), 60);
        expect_same_rows(cache, 0, 1, 60);
        cache.load_sequence(1, st, 25);  // replaces what it held
        EXPECT_EQ(cache.seq_length(1), 25);
        expect_same_rows(cache, 0, 1, 25);
        EXPECT_EQ(cache.n_free(), 256 - 60 - 12 - 25);
        EXPECT_THROW(cache.load_sequence(1, st, 61), std::invalid_argument);
    }
}

TEST(SequenceState, a_recurrent_state_loads_whole) {
    std::mt19937 rng(6);
    KvCache cache(config(GgmlType::F16, true));
    fill_random(cache, 0, 30, rng);
    const SequenceState st = cache.save_sequence(0);
    ASSERT_EQ(st.recurrent.size(), static_cast<size_t>(cache.recurrent_seq_stride()));
    cache.load_sequence(1, st, 30);
    expect_same_rows(cache, 0, 1, 30);
    EXPECT_EQ(std::memcmp(cache.conv_state(1, 1), cache.conv_state(1, 0), 24 * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(cache.ssm_state(1, 1), cache.ssm_state(1, 0), 64 * sizeof(float)), 0);
    EXPECT_THROW(cache.load_sequence(1, st, 29), std::invalid_argument);
}

SequenceState state_of(size_t bytes) {
    SequenceState s;
    s.rows.resize(bytes);
    return s;
}

std::vector<int32_t> seq(std::initializer_list<int32_t> t) {
    return t;
}

TEST(PromptCache, finds_the_longest_useful_prefix_replaces_prefixes_and_evicts_the_oldest) {
    PromptCache off;
    EXPECT_FALSE(off.put(seq({1, 2, 3}), state_of(10)));

    PromptCache pc(1000);
    EXPECT_TRUE(pc.put(seq({1, 2, 3, 4}), state_of(100)));
    EXPECT_TRUE(pc.put(seq({9, 8, 7, 6, 5, 4, 3, 2}), state_of(100)));
    EXPECT_EQ(pc.size(), 2u);
    auto m = pc.find(seq({1, 2, 3, 7}), 0);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->n_prefix, 3);
    EXPECT_EQ(pc.entry(m->index).tokens, seq({1, 2, 3, 4}));
    EXPECT_FALSE(pc.find(seq({1, 2, 3, 7}), 3));  // must beat what the slot keeps
    EXPECT_FALSE(pc.find(seq({9, 1}), 0));        // 1 of 8 tokens: under a quarter of the entry
    EXPECT_TRUE(pc.find(seq({9, 8, 1}), 0));      // 2 of 8: a quarter

    // These tokens and more: replaces the shorter entry; the same or fewer: kept as it is.
    EXPECT_TRUE(pc.put(seq({1, 2, 3, 4, 5}), state_of(100)));
    EXPECT_EQ(pc.size(), 2u);
    EXPECT_FALSE(pc.put(seq({1, 2, 3}), state_of(100)));
    EXPECT_EQ(pc.size(), 2u);

    // Over the limit: the least recently used go first; too large alone: not stored.
    const size_t before = pc.bytes();
    EXPECT_TRUE(pc.put(seq({20, 21}), state_of(800)));
    EXPECT_LE(pc.bytes(), 1000u);
    EXPECT_GT(pc.bytes(), before);
    EXPECT_FALSE(pc.find(seq({9, 8, 7, 6}), 0));  // the oldest entry is gone
    EXPECT_TRUE(pc.find(seq({1, 2, 3, 4, 5, 6}), 0));
    EXPECT_FALSE(pc.put(seq({30}), state_of(2000)));

    const size_t n = pc.size();
    PromptCache::Entry e = pc.take(pc.find(seq({20, 21, 22}), 0)->index);
    EXPECT_EQ(e.tokens, seq({20, 21}));
    EXPECT_EQ(pc.size(), n - 1);
}

}  // namespace
}  // namespace moeserve
