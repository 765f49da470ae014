// GPU MLA attention (absorbed form, K-only latent cache) against the CPU
// backend over identical cache contents, for every cache type.
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_op_fixture.h"
#include "memory/kv_cache.h"
#include "quant/ggml_type.h"

namespace moeserve::cuda::test {
namespace {

using CudaMla = CudaOpTest;

constexpr int kWidth = 576, kLatent = 512;  // GLM-4.7-Flash / DeepSeek: kv_lora 512 + RoPE 64

// One layer of latent cache with sequences of (n_ctx cached, n_new new)
// tokens; returns max_scaled_error of the GPU output against the CPU's.
double run_mla(Context& ctx, GgmlType type, int n_head, const std::vector<std::pair<int64_t, int64_t>>& seqs,
               std::mt19937& rng) {
    int64_t total = 0, n_tokens = 0;
    for (auto [ctx_len, n_new] : seqs) total += ctx_len + n_new, n_tokens += n_new;
    KvCacheConfig cfg;
    cfg.n_cells = total + 2;
    cfg.type_k = cfg.type_v = type;
    cfg.n_embd_k = {kWidth};
    cfg.n_embd_v = {0};
    cfg.head_dim_k = kWidth;
    cfg.allow_rotation = false;  // as deepseek2 configures its cache
    KvCache cache(cfg);
    std::vector<int32_t> all(cfg.n_cells);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    const auto rows = normal_floats(all.size() * kWidth, rng);
    auto cpu = make_cpu_backend(2);
    cpu->store_kv(cache, 0, rows.data(), nullptr, all);

    std::vector<int32_t> flat, n_cells;
    std::vector<int64_t> offset;
    int64_t next = 0;
    for (auto [ctx_len, n_new] : seqs) {
        const int64_t off = static_cast<int64_t>(flat.size());
        flat.insert(flat.end(), all.begin() + next, all.begin() + next + ctx_len + n_new);
        next += ctx_len + n_new;
        for (int64_t j = 0; j < n_new; ++j) {
            offset.push_back(off);
            n_cells.push_back(static_cast<int32_t>(ctx_len + j + 1));
        }
    }
    const auto q = normal_floats(n_tokens * n_head * kWidth, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(kWidth));
    std::vector<const int32_t*> ptrs;
    for (int64_t t = 0; t < n_tokens; ++t) ptrs.push_back(flat.data() + offset[t]);
    std::vector<float> want(n_tokens * n_head * kLatent);
    cpu->attention_mla(cache, 0, q.data(), n_tokens, n_head, kLatent, AttentionRows{ptrs, n_cells}, scale, want.data());

    const size_t row_bytes = cache.k_row_bytes(0);
    DeviceArray<uint8_t> dk(std::vector<uint8_t>(cache.k_row(0, 0), cache.k_row(0, 0) + row_bytes * cfg.n_cells));
    KvLayer layer;
    layer.k = dk.get();
    layer.k_row_bytes = row_bytes;
    layer.type_k = layer.type_v = type;
    layer.n_embd_k = kWidth;
    DeviceArray<float> dq(q), dout(want.size());
    DeviceArray<int32_t> dflat(flat), dn(n_cells);
    DeviceArray<int64_t> doff(offset);
    AttentionCells cells{dflat.get(), doff.get(), dn.get(), *std::max_element(n_cells.begin(), n_cells.end())};
    attention_mla(ctx, layer, dq.get(), n_tokens, n_head, kLatent, cells, scale, dout.get());
    return max_scaled_error(dout.download(), want);
}

TEST_F(CudaMla, decode_and_prefill_match_cpu_for_every_cache_type) {
    const AttentionForm f32("f32");  // the f32 kernel, to float rounding; the tensor-core form below
    std::mt19937 rng(20);
    const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,  GgmlType::Q4_0,
                              GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL};
    for (GgmlType type : types) {
        // Both backends round q to Q8_0/Q8_1 for a quantized cache and score
        // in f32: only the order of float additions differs.
        const double tol = type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 ? 1e-4 : 1e-3;
        for (int n_head : {16, 20}) {
            SCOPED_TRACE(std::string(ggml_type_name(type)) + " heads " + std::to_string(n_head));
            for (int64_t n : {1, 7, 4097}) {
                EXPECT_LT(run_mla(ctx_, type, n_head, {{n - 1, 1}}, rng), tol) << "decode over " << n << " cells";
                finish();
            }
            EXPECT_LT(run_mla(ctx_, type, n_head, {{30, 25}, {200, 1}, {0, 9}}, rng), tol) << "mixed prefill batch";
            finish();
        }
    }
}

// The tensor-core form's bound over an f16 cache: f32 rounding with Q and P
// in f16 pairs, f16 rounding with MOESERVE_CUDA_MMA_PAIRS=0 (one product).
double f16_cache_mma_bound() {
    const char* pairs = std::getenv("MOESERVE_CUDA_MMA_PAIRS");
    return pairs && std::string(pairs) == "0" ? 1e-2 : 1e-4;
}

// The tensor-core form on the latent rows (the default over an f16 cache;
// quantized caches take the f32 kernel unless mma is asked for): Q and P go
// in as f16 pairs hi + lo, so over an f16 cache, whose values f16 holds
// exactly, it agrees with the CPU to f32 rounding; a quantized cache's values
// are rounded to f16 in the tiles (bounds as the attention test's). It must
// actually run for these head sizes (576/512).
TEST_F(CudaMla, tensor_core_form_matches_cpu) {
    const AttentionForm mma("mma");
    std::mt19937 rng(21);
    const int64_t launches_before = mma_attention_launches();
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        const double bound = type == GgmlType::F16 ? f16_cache_mma_bound() : 4e-2;
        SCOPED_TRACE(ggml_type_name(type));
        for (int64_t n : {1, 4097}) {
            EXPECT_LT(run_mla(ctx_, type, 20, {{n - 1, 1}}, rng), bound) << "decode over " << n << " cells";
            finish();
        }
        EXPECT_LT(run_mla(ctx_, type, 20, {{30, 25}, {200, 1}, {0, 9}}, rng), bound) << "mixed prefill batch";
        finish();
    }
    EXPECT_EQ(mma_attention_launches() - launches_before, 3 * 3);
}

// Unset, MOESERVE_CUDA_ATTENTION picks the tensor-core form for MLA over an
// f16 cache and the f32 kernel over a quantized one (whose values f16 would
// round), within the f32 kernel's bounds either way.
TEST_F(CudaMla, automatic_choice_keeps_a_quantized_latent_cache_off_the_tensor_cores) {
    unsetenv("MOESERVE_CUDA_ATTENTION");
    std::mt19937 rng(22);
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        SCOPED_TRACE(ggml_type_name(type));
        const int64_t before = mma_attention_launches();
        EXPECT_LT(run_mla(ctx_, type, 20, {{300, 1}}, rng), type == GgmlType::F16 ? f16_cache_mma_bound() : 1e-3);
        finish();
        EXPECT_EQ(mma_attention_launches() - before, type == GgmlType::F16 ? 1 : 0);
    }
}

}  // namespace
}  // namespace moeserve::cuda::test
