// Latent attention over a Q4_0/Q8_0 cache gives llama.cpp's bits: its parts
// (the integer scores, the C library's expf) and the whole op against a
// transcription of llama.cpp's one-query flash-attention loop, for decoded
// tokens of several sequences (one long enough to span several chunks of
// rows) and a prompt batch, on 1-3 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/latent_scores.h"
#include "backend/cpu/libm_expf.h"
#include "backend/cpu/x86_intrinsics.h"
#include "latent_cache.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/ggml_type.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

std::vector<float> random_values(size_t n, std::mt19937& rng, float sd) {
    std::normal_distribution<float> dist(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

bool same_bits(float a, float b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

TEST(LatentScores, equal_ggml_avx2_dot_of_the_q8_0_query_times_scale) {
    std::mt19937 rng(3);
    for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0}) {
        const VecDotFn dot = vec_dot_kernel(type, SimdLevel::avx2);
        ASSERT_NE(dot, nullptr);
        for (int width : {320, 576}) {
            ASSERT_TRUE(has_latent_int_scores(type, width));
            const size_t row_bytes = ggml_row_bytes(type, width), q_bytes = ggml_row_bytes(GgmlType::Q8_0, width);
            const int n_rows = 37, n_queries = 23;  // two full groups of 16 rows and a partial one
            std::vector<uint8_t> rows(row_bytes * n_rows);
            for (int j = 0; j < n_rows; ++j) {
                const auto x = random_values(width, rng, 1.0f);
                quantize_row_activation(type, x.data(), rows.data() + j * row_bytes, width);
            }
            std::vector<const uint8_t*> ptrs(n_rows);
            for (int j = 0; j < n_rows; ++j)
                ptrs[j] = rows.data() + ((j * 11) % n_rows) * row_bytes;  // scattered cells
            const auto q = random_values(static_cast<size_t>(n_queries) * width, rng, 0.3f);
            LatentQueries packed;
            packed.reset(type, n_queries, width);
            for (int i = 0; i < n_queries; ++i) packed.pack(i, q.data() + i * width);
            const float scale = 0.0721f;
            for (auto [first, count] : {std::pair{0, n_queries}, std::pair{5, 1}, std::pair{3, 17}}) {
                const int ld = n_rows + 3;
                std::vector<float> s(static_cast<size_t>(count) * ld, -1.0f);
                score_latent_rows(packed, first, count, ptrs.data(), n_rows, scale, s.data(), ld);
                std::vector<uint8_t> q8(q_bytes);
                for (int i = 0; i < count; ++i) {
                    quantize_row_activation(GgmlType::Q8_0, q.data() + (first + i) * width, q8.data(), width);
                    for (int j = 0; j < n_rows; ++j)
                        ASSERT_TRUE(same_bits(s[i * ld + j], dot(ptrs[j], q8.data(), width) * scale))
                            << ggml_type_name(type) << " width " << width << " query " << first + i << " row " << j
                            << ": " << s[i * ld + j] << " vs " << dot(ptrs[j], q8.data(), width) * scale;
                    EXPECT_EQ(s[i * ld + n_rows], -1.0f) << "wrote past the rows";
                }
            }
        }
    }
}

TEST(LibmExpf, equals_the_c_librarys_expf_for_softmax_arguments) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> wide(-110.0f, 0.0f), near(-1.0f, 0.0f);
    std::vector<float> xs = {0.0f,    -0.0f,   -1e-30f,        -0x1.62e42ep6f,
                             -87.0f,  -87.5f,  -0x1.9fe368p6f, -0x1.9fe366p6f,
                             -103.0f, -104.0f, -200.0f,        -std::numeric_limits<float>::infinity()};
    for (int i = 0; i < 200000; ++i) xs.push_back(wide(rng));
    for (int i = 0; i < 200000; ++i) xs.push_back(near(rng));
    while (xs.size() % 16) xs.push_back(-1.0f);
    for (size_t i = 0; i < xs.size(); ++i) ASSERT_TRUE(same_bits(libm_expf(xs[i]), std::exp(xs[i]))) << "x = " << xs[i];
#if defined(__AVX512F__)
    for (size_t i = 0; i < xs.size(); i += 16) {
        alignas(64) float out[16];
        _mm512_store_ps(out, libm_expf16(_mm512_loadu_ps(xs.data() + i)));
        for (int k = 0; k < 16; ++k) ASSERT_TRUE(same_bits(out[k], std::exp(xs[i + k]))) << "x = " << xs[i + k];
    }
#endif
}

// llama.cpp's flash-attention loop for one query over a quantized cache
// whose V is the first r values of K (ggml_compute_forward_flash_attn_ext_f16_one_chunk),
// with the one rule moeserve adds: a weight below the smallest normal float
// is 0 (counted in *subnormal).
std::vector<float> one_query_reference(GgmlType type, const KvCache& cache, const int32_t* cells, int n, const float* q,
                                       int d, int r, float scale, int* subnormal) {
    const VecDotFn dot = vec_dot_kernel(type, SimdLevel::avx2);
    std::vector<uint8_t> q8(ggml_row_bytes(GgmlType::Q8_0, d));
    quantize_row_activation(GgmlType::Q8_0, q, q8.data(), d);
    float M = -std::numeric_limits<float>::infinity(), S = 0.0f;
    std::vector<float> acc(r, 0.0f), v(d);
    for (int c = 0; c < n; ++c) {
        const uint8_t* row = cache.k_row(0, cells[c]);
        float s = dot(row, q8.data(), d);
        s = s * scale;
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            ms = std::exp(M - s);
            M = s;
            for (auto& a : acc) a *= ms;
        } else {
            vs = std::exp(s - M);
        }
        if (vs > 0.0f && vs < 0x1p-126f) {
            ++*subnormal;
            vs = 0.0f;
        }
        dequantize_row(type, row, v.data(), d);
        for (int i = 0; i < r; ++i) acc[i] = std::fma(v[i], vs, acc[i]);
        S = std::fma(S, ms, vs);
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (auto& a : acc) a *= inv;
    return acc;
}

class CpuMlaQuantized : public ::testing::TestWithParam<GgmlType> {};

TEST_P(CpuMlaQuantized, equals_llama_cpps_one_query_flash_attention_bit_for_bit) {
    const GgmlType type = GetParam();
    constexpr int kWidth = 576, kLatent = 512, kHeads = 20;  // GLM-4.7-Flash
    const std::vector<int> lengths = {1, 33, 700, 4500};     // the last spans three chunks of decode rows
    const int n_seq = static_cast<int>(lengths.size());
    std::mt19937 rng(21);
    KvCache cache(test::latent_cache_config(type, kWidth, 8192, n_seq));
    auto store = make_cpu_backend(1);
    for (int done = 0, more = 1; more; done += 100) {  // appended 100 at a time, round robin: cells interleave
        more = 0;
        for (int sq = 0; sq < n_seq; ++sq) {
            const int n = std::min(100, lengths[sq] - done);
            if (n <= 0) continue;
            more = 1;
            const auto x = random_values(static_cast<size_t>(n) * kWidth, rng, 1.0f);
            store->store_kv(cache, 0, x.data(), nullptr, cache.append(sq, n));
        }
    }
    std::vector<const int32_t*> seq_cells(n_seq);
    for (int sq = 0; sq < n_seq; ++sq) seq_cells[sq] = cache.seq_cells(sq).data();

    // Decode: one token per sequence. Prompt: the last 6 tokens of sequence 2
    // in one batch, each seeing the rows up to its own. The wide query of the
    // third batch spreads the scores past e^-87, where weights are subnormal.
    struct Batch {
        std::vector<const int32_t*> cells;
        std::vector<int32_t> n_cells;
        float q_sd;
    };
    std::vector<Batch> batches(3);
    for (int sq = 0; sq < n_seq; ++sq) {
        batches[0].cells.push_back(seq_cells[sq]);
        batches[0].n_cells.push_back(lengths[sq]);
    }
    batches[0].q_sd = 0.1f;
    for (int t = 0; t < 6; ++t) {
        batches[1].cells.push_back(seq_cells[2]);
        batches[1].n_cells.push_back(lengths[2] - 5 + t);
    }
    batches[1].q_sd = 0.1f;
    batches[2].cells = {seq_cells[3]};
    batches[2].n_cells = {lengths[3]};
    batches[2].q_sd = 10.0f;
    const float scale = 0.0625f;
    for (const Batch& b : batches) {
        const int n_tokens = static_cast<int>(b.cells.size());
        const auto q = random_values(static_cast<size_t>(n_tokens) * kHeads * kWidth, rng, b.q_sd);
        std::vector<float> want(static_cast<size_t>(n_tokens) * kHeads * kLatent);
        int subnormal = 0;
        for (int t = 0; t < n_tokens; ++t)
            for (int h = 0; h < kHeads; ++h) {
                const auto o =
                    one_query_reference(type, cache, b.cells[t], b.n_cells[t], q.data() + (t * kHeads + h) * kWidth,
                                        kWidth, kLatent, scale, &subnormal);
                std::copy(o.begin(), o.end(), want.begin() + (t * kHeads + h) * kLatent);
            }
        if (b.q_sd > 1.0f) {
            EXPECT_GT(subnormal, 0) << "the wide query was to make subnormal weights";
        }
        const AttentionRows rows{b.cells, b.n_cells};
        for (int threads : {1, 2, 3}) {
            auto backend = make_cpu_backend(threads);
            std::vector<float> out(want.size(), -1.0f);
            backend->attention_mla(cache, 0, q.data(), n_tokens, kHeads, kLatent, rows, scale, out.data());
            int differing = 0;
            for (size_t i = 0; i < want.size(); ++i) differing += !same_bits(out[i], want[i]);
            EXPECT_EQ(differing, 0) << ggml_type_name(type) << ", " << n_tokens << " tokens, " << threads
                                    << " threads: " << differing << " of " << want.size() << " values differ";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Caches, CpuMlaQuantized, ::testing::Values(GgmlType::Q4_0, GgmlType::Q8_0),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace moeserve
