// GQA attention over the KV cache: the group kernels (one K/V row against
// all query rows of its KV head) and the whole attention op.
//  - Quantized K scores equal the AVX2 vec_dot kernel's bit for bit (what the
//    per-row path used), for any number of query rows and head sizes.
//  - F16 K scores and V sums agree with double-precision sums over the
//    dequantized rows, and bit for bit with the general path's f32 dot
//    (16 FMA lanes, reduce_add's tree) and fused multiply-adds in cell order.
//  - CpuBackend::attention over several sequences (decode tokens and a
//    causal prompt block, interleaved cells, odd lengths) agrees with a
//    double-precision softmax attention over the rows the cache holds, for
//    1, 2 and 4 KV heads, head sizes 64, 128 and 192, and 1 to 3 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_backend.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

std::vector<float> random_normal(size_t n, std::mt19937& rng, float sd = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// n rows of `width` random values in `type` (as the cache stores them).
std::vector<uint8_t> random_rows(GgmlType type, int64_t n, int width, std::mt19937& rng) {
    const size_t row_bytes = ggml_row_bytes(type, width);
    std::vector<uint8_t> out(row_bytes * n);
    for (int64_t r = 0; r < n; ++r) {
        const auto x = random_normal(width, rng);
        quantize_row_activation(type, x.data(), out.data() + r * row_bytes, width);
    }
    return out;
}

std::vector<double> dequantized(GgmlType type, const uint8_t* row, int width) {
    std::vector<float> f(width);
    dequantize_row(type, row, f.data(), width);
    return {f.begin(), f.end()};
}

// Row pointers in a scrambled order, as a sequence's cells may lie in the pool.
std::vector<const uint8_t*> scrambled_rows(const std::vector<uint8_t>& rows, size_t row_bytes, int64_t n) {
    std::vector<const uint8_t*> out(n);
    for (int64_t c = 0; c < n; ++c) out[c] = rows.data() + ((c * 7) % n) * row_bytes;
    return out;
}

TEST(AttentionGroupKernels, QuantizedScoresEqualTheVecDotKernel) {
    std::mt19937 rng(7);
    for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0}) {
        const VecDotFn dot = vec_dot_kernel(type, SimdLevel::avx2);
        ASSERT_NE(dot, nullptr);
        for (int head_dim : {32, 64, 96, 128, 192, 256}) {
            if (!has_group_scores(type, head_dim)) GTEST_SKIP() << "no group kernels in this build";
            for (int n_rows : {1, 3, 8, 13, 16, 24}) {
                const int64_t n_cells = 37;
                const size_t k_bytes = ggml_row_bytes(type, head_dim),
                             q_bytes = ggml_row_bytes(GgmlType::Q8_0, head_dim);
                const auto k = random_rows(type, n_cells, head_dim, rng);
                const auto q = random_rows(GgmlType::Q8_0, n_rows, head_dim, rng);
                const auto k_rows = scrambled_rows(k, k_bytes, n_cells);
                std::vector<uint8_t> packed(group_query_bytes(type, n_rows, head_dim));
                pack_group_queries(type, q.data(), q_bytes, n_rows, head_dim, packed.data());
                const int64_t stride = n_cells + 3;
                std::vector<float> scores(n_rows * stride, -1.0f);
                const float scale = 0.125f;
                score_group_rows(type, k_rows.data(), n_cells, packed.data(), n_rows, head_dim, scale, scores.data(),
                                 stride);
                for (int r = 0; r < n_rows; ++r)
                    for (int64_t c = 0; c < n_cells; ++c)
                        ASSERT_EQ(scores[r * stride + c], dot(k_rows[c], q.data() + r * q_bytes, head_dim) * scale)
                            << ggml_type_name(type) << " head_dim " << head_dim << " rows " << n_rows << " r " << r
                            << " c " << c;
            }
        }
    }
}

TEST(AttentionGroupKernels, F16ScoresMatchDoubleDots) {
    std::mt19937 rng(8);
    for (int head_dim : {64, 128, 192}) {
        if (!has_group_scores(GgmlType::F16, head_dim)) GTEST_SKIP() << "no group kernels in this build";
        for (int n_rows : {1, 2, 3, 4, 5, 8, 16, 17, 32}) {
            const int64_t n_cells = 29;
            const auto k = random_rows(GgmlType::F16, n_cells, head_dim, rng);
            const auto q = random_normal(static_cast<size_t>(n_rows) * head_dim, rng);
            const auto k_rows = scrambled_rows(k, head_dim * 2, n_cells);
            std::vector<uint8_t> packed(group_query_bytes(GgmlType::F16, n_rows, head_dim));
            pack_group_queries(GgmlType::F16, q.data(), head_dim * sizeof(float), n_rows, head_dim, packed.data());
            std::vector<float> scores(n_rows * n_cells);
            score_group_rows(GgmlType::F16, k_rows.data(), n_cells, packed.data(), n_rows, head_dim, 0.5f,
                             scores.data(), n_cells);
            for (int r = 0; r < n_rows; ++r)
                for (int64_t c = 0; c < n_cells; ++c) {
                    const auto kd = dequantized(GgmlType::F16, k_rows[c], head_dim);
                    double want = 0, size = 0;
                    for (int i = 0; i < head_dim; ++i) {
                        want += q[r * head_dim + i] * kd[i];
                        size += std::fabs(q[r * head_dim + i] * kd[i]);
                    }
                    ASSERT_NEAR(scores[r * n_cells + c], 0.5 * want, 0.5 * size * 1e-6)
                        << "head_dim " << head_dim << " rows " << n_rows << " r " << r << " c " << c;
                    // Bit for bit the general path's f32 dot: 16 lanes of FMAs in element
                    // order, then _mm512_reduce_add_ps's tree (i + i+8, i + i+4, i + i+2, 0 + 1).
                    float lane[16] = {};
                    for (int i = 0; i < head_dim; ++i)
                        lane[i % 16] = std::fma(q[r * head_dim + i], static_cast<float>(kd[i]), lane[i % 16]);
                    for (int width = 8; width >= 1; width /= 2)
                        for (int l = 0; l < width; ++l) lane[l] += lane[l + width];
                    ASSERT_EQ(scores[r * n_cells + c], 0.5f * lane[0])
                        << "head_dim " << head_dim << " rows " << n_rows << " r " << r << " c " << c;
                }
        }
    }
}

TEST(AttentionGroupKernels, ValueSumsMatchDoubleSums) {
    std::mt19937 rng(9);
    for (GgmlType type : {GgmlType::F16, GgmlType::Q4_0, GgmlType::Q8_0}) {
        for (int head_dim : {64, 128, 192}) {
            if (!has_group_values(type, head_dim)) GTEST_SKIP() << "no group kernels in this build";
            for (int n_rows : {1, 2, 3, 4, 5, 8, 16, 23}) {
                const int64_t n_cells = 131;  // two chunks of the kernel and an odd tail
                const size_t v_bytes = ggml_row_bytes(type, head_dim);
                const auto v = random_rows(type, n_cells, head_dim, rng);
                const auto v_rows = scrambled_rows(v, v_bytes, n_cells);
                const int64_t stride = n_cells + 1;
                std::vector<float> p(n_rows * stride);
                std::uniform_real_distribution<float> unit(0.0f, 1.0f);
                for (auto& x : p) x = unit(rng);
                const auto start = random_normal(static_cast<size_t>(n_rows) * head_dim, rng);
                std::vector<float> acc = start;
                accumulate_group_rows(type, v_rows.data(), n_cells, p.data(), stride, n_rows, head_dim, acc.data());
                std::vector<std::vector<double>> vd(n_cells);
                for (int64_t c = 0; c < n_cells; ++c) vd[c] = dequantized(type, v_rows[c], head_dim);
                for (int r = 0; r < n_rows; ++r)
                    for (int i = 0; i < head_dim; ++i) {
                        double want = start[r * head_dim + i], size = std::fabs(want);
                        for (int64_t c = 0; c < n_cells; ++c) {
                            want += p[r * stride + c] * vd[c][i];
                            size += std::fabs(p[r * stride + c] * vd[c][i]);
                        }
                        ASSERT_NEAR(acc[r * head_dim + i], want, size * 1e-6)
                            << ggml_type_name(type) << " head_dim " << head_dim << " rows " << n_rows << " r " << r
                            << " i " << i;
                        // Bit for bit: one fused multiply-add per cell, in cell order (the
                        // dequantized values are exact in f32).
                        float exact = start[r * head_dim + i];
                        for (int64_t c = 0; c < n_cells; ++c)
                            exact = std::fma(p[r * stride + c], static_cast<float>(vd[c][i]), exact);
                        ASSERT_EQ(acc[r * head_dim + i], exact) << ggml_type_name(type) << " head_dim " << head_dim
                                                                << " rows " << n_rows << " r " << r << " i " << i;
                    }
            }
        }
    }
}

struct AttentionCase {
    GgmlType type_k, type_v;
    int n_head_kv, group, head_dim, n_threads;
};

// A one-layer cache of the case's types and heads.
KvCacheConfig one_layer_cache(const AttentionCase& t, int64_t n_cells, int n_seq) {
    const int n_embd = t.n_head_kv * t.head_dim;
    KvCacheConfig cfg;
    cfg.n_cells = n_cells;
    cfg.n_seq_max = n_seq;
    cfg.type_k = t.type_k;
    cfg.type_v = t.type_v;
    cfg.n_embd_k = {n_embd};
    cfg.n_embd_v = {n_embd};
    cfg.head_dim_k = cfg.head_dim_v = t.head_dim;
    return cfg;
}

// Three sequences in one batch: 0 decodes one token after 300 cached
// positions, 1 is a 13-token prompt (causal blocks of up to 8 tokens), 2
// decodes one token after 77. Their cells interleave in the pool.
// split_chunk > 0: every token's cells in chunks of that many
// (cpu_attention_split.cpp; 301 cells in chunks of 64: five, the last partial).
void check_attention_matches_reference(const AttentionCase& t, int64_t split_chunk = 0) {
    std::mt19937 rng(100 + t.n_head_kv * 10 + t.head_dim + t.group);
    const int dk = t.head_dim, n_head = t.n_head_kv * t.group, n_embd = t.n_head_kv * dk;
    KvCache cache(one_layer_cache(t, 512, 3));
    auto backend = std::make_unique<CpuBackend>(t.n_threads);
    if (split_chunk > 0)
        backend->set_attention_split(1, split_chunk);
    else
        backend->set_attention_split(int64_t{1} << 40);

    auto fill = [&](int seq, int64_t n) {
        const auto cells = cache.append(seq, n);
        const auto k = random_normal(n * n_embd, rng), v = random_normal(n * n_embd, rng);
        backend->store_kv(cache, 0, k.data(), v.data(), cells);
    };
    fill(0, 120), fill(2, 40), fill(0, 181), fill(1, 6), fill(2, 38), fill(1, 7);  // lengths 301, 13, 78

    // Batch tokens: seq 0 position 300, seq 1 positions 0..12, seq 2 position 77.
    std::vector<int> seq_of = {0};
    std::vector<int32_t> n_cells = {301};
    for (int p = 0; p < 13; ++p) seq_of.push_back(1), n_cells.push_back(p + 1);
    seq_of.push_back(2), n_cells.push_back(78);
    const int64_t n_tokens = static_cast<int64_t>(seq_of.size());
    std::vector<const int32_t*> cell_ptrs;
    for (int s : seq_of) cell_ptrs.push_back(cache.seq_cells(s).data());
    const AttentionRows rows{cell_ptrs, n_cells};

    const auto q = random_normal(n_tokens * n_head * dk, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
    std::vector<float> out(n_tokens * n_head * dk);
    backend->attention(cache, 0, q.data(), n_tokens, n_head, rows, scale, out.data());

    // Reference: the query as the kernels see it (rotated like K, and rounded
    // to Q8_0 for a quantized K), the cached rows dequantized, all sums in double.
    const size_t k_bytes = ggml_row_bytes(t.type_k, dk), v_bytes = ggml_row_bytes(t.type_v, dk);
    const bool quantized_k = t.type_k != GgmlType::F16 && t.type_k != GgmlType::F32 && t.type_k != GgmlType::BF16;
    for (int64_t tok = 0; tok < n_tokens; ++tok)
        for (int h = 0; h < n_head; ++h) {
            const int g = h / t.group;
            std::vector<float> qh(q.begin() + (tok * n_head + h) * dk, q.begin() + (tok * n_head + h + 1) * dk);
            if (const int chunk = cache.k_rotation_chunk())
                for (int i = 0; i + chunk <= dk; i += chunk) hadamard_transform(qh.data() + i, chunk);
            if (quantized_k) {
                std::vector<uint8_t> q8(ggml_row_bytes(GgmlType::Q8_0, dk));
                quantize_row_activation(GgmlType::Q8_0, qh.data(), q8.data(), dk);
                dequantize_row(GgmlType::Q8_0, q8.data(), qh.data(), dk);
            }
            const int64_t n = n_cells[tok];
            std::vector<double> s(n);
            double mx = -INFINITY;
            for (int64_t c = 0; c < n; ++c) {
                const auto kd = dequantized(t.type_k, cache.k_row(0, cell_ptrs[tok][c]) + g * k_bytes, dk);
                double dot = 0;
                for (int i = 0; i < dk; ++i) dot += qh[i] * kd[i];
                s[c] = dot * scale;
                mx = std::max(mx, s[c]);
            }
            double sum = 0;
            for (auto& x : s) sum += (x = std::exp(x - mx));
            std::vector<double> o(dk, 0.0);
            for (int64_t c = 0; c < n; ++c) {
                const auto vd = dequantized(t.type_v, cache.v_row(0, cell_ptrs[tok][c]) + g * v_bytes, dk);
                for (int i = 0; i < dk; ++i) o[i] += s[c] / sum * vd[i];
            }
            std::vector<float> want(o.begin(), o.end());
            if (const int chunk = cache.v_rotation_chunk())
                for (int i = 0; i + chunk <= dk; i += chunk) hadamard_transform(want.data() + i, chunk);
            const float* got = out.data() + (tok * n_head + h) * dk;
            for (int i = 0; i < dk; ++i)
                ASSERT_NEAR(got[i], want[i], 2e-5)
                    << ggml_type_name(t.type_k) << "/" << ggml_type_name(t.type_v) << " kv heads " << t.n_head_kv
                    << " group " << t.group << " head_dim " << dk << " threads " << t.n_threads << " token " << tok
                    << " head " << h << " i " << i << " split chunk " << split_chunk;
        }
}

TEST(AttentionGroupKernels, AttentionMatchesDoubleReference) {
    const AttentionCase cases[] = {
        {GgmlType::Q4_0, GgmlType::Q4_0, 4, 8, 128, 2},  // the Qwen3-MoE shape
        {GgmlType::F16, GgmlType::F16, 2, 16, 128, 2},   // the Nemotron shape
        {GgmlType::Q8_0, GgmlType::Q8_0, 1, 5, 64, 1},  {GgmlType::Q4_0, GgmlType::F16, 2, 3, 192, 3},
        {GgmlType::F16, GgmlType::Q4_0, 4, 4, 64, 3},   {GgmlType::Q4_0, GgmlType::Q8_0, 1, 16, 128, 1},
        {GgmlType::Q5_0, GgmlType::Q5_0, 2, 8, 128, 2},  // no group kernel for Q5_0: the general path
    };
    for (const auto& c : cases) {
        check_attention_matches_reference(c);
        if (HasFatalFailure()) return;
        // Every token's cells in chunks, each with its own softmax state, merged: chunks of 64
        // (the decode tokens' 301 and 78 cells in 5 and 2), and of 4 (the prompt's rows in
        // 1 to 4, the block's last chunk partly or not at all theirs).
        for (int64_t chunk : {64, 4}) {
            check_attention_matches_reference(c, chunk);
            if (HasFatalFailure()) return;
        }
    }
}

// From --attention_streaming_from cells on (8K by default) a thread reads
// its KV heads a chunk of cells at a time instead of one head's whole context
// after another; every score and sum sees the same operations in the same
// order, so the outputs are the same bits. A decode token and a 5-token
// prompt block after 8,500 cached positions, the two orders compared.
TEST(AttentionGroupKernels, ReadingAllHeadsOfAChunkOfCellsGivesTheSameBits) {
    const AttentionCase cases[] = {
        {GgmlType::F16, GgmlType::F16, 4, 8, 128, 2},    {GgmlType::Q8_0, GgmlType::Q8_0, 4, 8, 128, 2},
        {GgmlType::Q4_0, GgmlType::Q4_0, 2, 16, 128, 3}, {GgmlType::Q4_0, GgmlType::F16, 3, 4, 64, 2},
        {GgmlType::Q5_0, GgmlType::Q5_0, 2, 4, 64, 2},  // the general path
    };
    for (const auto& t : cases) {
        std::mt19937 rng(7);
        const int dk = t.head_dim, n_head = t.n_head_kv * t.group, n_embd = t.n_head_kv * dk;
        KvCache cache(one_layer_cache(t, 8600, 1));
        CpuBackend streaming(t.n_threads), per_head(t.n_threads);
        per_head.set_attention_streaming_from(int64_t{1} << 40);
        for (CpuBackend* b : {&streaming, &per_head}) b->set_attention_split(int64_t{1} << 40);  // not split
        const int64_t n = 8506;
        const auto cells = cache.append(0, n);
        const auto k = random_normal(n * n_embd, rng), v = random_normal(n * n_embd, rng);
        streaming.store_kv(cache, 0, k.data(), v.data(), cells);
        // Tokens: the last 5 positions as a prompt block, then position 8500 again as a decode token.
        std::vector<int32_t> n_cells = {8502, 8503, 8504, 8505, 8506, 8501};
        std::vector<const int32_t*> cell_ptrs(n_cells.size(), cache.seq_cells(0).data());
        const AttentionRows rows{cell_ptrs, n_cells};
        const int64_t n_tokens = static_cast<int64_t>(n_cells.size());
        const auto q = random_normal(n_tokens * n_head * dk, rng);
        std::vector<float> a(n_tokens * n_head * dk), b(a.size());
        streaming.attention(cache, 0, q.data(), n_tokens, n_head, rows, 0.088f, a.data());
        per_head.attention(cache, 0, q.data(), n_tokens, n_head, rows, 0.088f, b.data());
        for (size_t i = 0; i < a.size(); ++i)
            ASSERT_EQ(a[i], b[i]) << ggml_type_name(t.type_k) << "/" << ggml_type_name(t.type_v) << " element " << i;
    }
}

// A token deep in the context takes its cells in fixed chunks (8K cells and
// more, chunks of 2K; every cache type), so its output is the same bits with
// any number of threads, beside any other tokens in the batch, and decoded
// alone or inside a prompt block; and it agrees with the unsplit op (one
// softmax over all cells) within rounding.
TEST(AttentionGroupKernels, SplitCellsGiveTheSameBitsWithAnyThreadsOrBatch) {
    const AttentionCase cases[] = {
        {GgmlType::F16, GgmlType::F16, 4, 8, 128, 1},
        {GgmlType::Q4_0, GgmlType::Q4_0, 2, 16, 128, 1},
        {GgmlType::Q8_0, GgmlType::F16, 4, 8, 128, 1},
        {GgmlType::Q5_0, GgmlType::Q5_0, 2, 8, 128, 1},  // no group kernels: the general path's loops
    };
    for (const auto& t : cases) {
        SCOPED_TRACE(std::string(ggml_type_name(t.type_k)) + "/" + std::string(ggml_type_name(t.type_v)));
        std::mt19937 rng(11);
        const int dk = t.head_dim, n_head = t.n_head_kv * t.group, n_embd = t.n_head_kv * dk;
        KvCache cache(one_layer_cache(t, 18800, 2));
        CpuBackend one(1), three(3), unsplit(2);
        unsplit.set_attention_split(int64_t{1} << 40);
        for (auto [seq, n] : {std::pair{0, 9000}, {1, 9400}, {0, 301}}) {  // seq 0: 9,301 cells, five chunks
            const auto cells = cache.append(seq, n);
            const auto k = random_normal(n * n_embd, rng), v = random_normal(n * n_embd, rng);
            one.store_kv(cache, 0, k.data(), v.data(), cells);
        }
        const auto q = random_normal(4 * n_head * dk, rng);  // four tokens' queries
        const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
        // Alone: seq 0's token after all its cells.
        std::vector<const int32_t*> alone_ptrs = {cache.seq_cells(0).data()};
        std::vector<int32_t> alone_n = {9301};
        std::vector<float> a(n_head * dk), b(a.size()), c(4 * n_head * dk), d(a.size());
        one.attention(cache, 0, q.data(), 1, n_head, AttentionRows{alone_ptrs, alone_n}, scale, a.data());
        // In a batch, on 3 threads: seq 1's last two positions as a prompt block, then seq 0's token, then seq 1's.
        std::vector<const int32_t*> batch_ptrs = {cache.seq_cells(1).data(), cache.seq_cells(1).data(),
                                                  cache.seq_cells(0).data(), cache.seq_cells(1).data()};
        std::vector<int32_t> batch_n = {9399, 9400, 9301, 9400};
        std::vector<float> qb(4 * n_head * dk);
        std::copy(q.begin() + n_head * dk, q.begin() + 3 * n_head * dk, qb.begin());
        std::copy(q.begin(), q.begin() + n_head * dk, qb.begin() + 2 * n_head * dk);
        std::copy(q.begin() + 3 * n_head * dk, q.end(), qb.begin() + 3 * n_head * dk);
        three.attention(cache, 0, qb.data(), 4, n_head, AttentionRows{batch_ptrs, batch_n}, scale, c.data());
        for (int i = 0; i < n_head * dk; ++i) ASSERT_EQ(a[i], c[2 * n_head * dk + i]) << "element " << i;
        // The prompt block's two tokens, each decoded alone: the same bits.
        for (int k = 0; k < 2; ++k) {
            std::vector<const int32_t*> ptr = {cache.seq_cells(1).data()};
            std::vector<int32_t> n = {batch_n[k]};
            std::vector<float> alone(n_head * dk);
            one.attention(cache, 0, qb.data() + k * n_head * dk, 1, n_head, AttentionRows{ptr, n}, scale, alone.data());
            for (int i = 0; i < n_head * dk; ++i)
                ASSERT_EQ(alone[i], c[k * n_head * dk + i]) << "prompt token " << k << " element " << i;
        }
        // Against one softmax over all cells: the same within rounding.
        unsplit.attention(cache, 0, q.data(), 1, n_head, AttentionRows{alone_ptrs, alone_n}, scale, d.data());
        double worst = 0;
        for (int i = 0; i < n_head * dk; ++i) worst = std::max(worst, std::abs(double(a[i]) - d[i]));
        EXPECT_LT(worst, 2e-6);
        EXPECT_GT(worst, 0.0);  // the float order did change: this is the split path
    }
}

}  // namespace
}  // namespace moeserve
