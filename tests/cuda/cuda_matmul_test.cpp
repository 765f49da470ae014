// GPU embed / matmul / matmul_heads against the CPU backend and against a
// double-precision product of the same dequantized weights.
//
// Tolerances. The GPU rounds activations exactly as the CPU does for the
// weight type (q8_0 / q8_1 / q8_K / f16 / bf16), so it is compared with the
// CPU backend (relative RMS error):
//  - matrix-vector path (<= 16 tokens): the same products summed in another
//    order: ~1e-6; bound 2e-5. Q4_1/Q5_1: the CPU adds each block's
//    weight minimum times an fp16-rounded activation sum (q8_1's s), the GPU
//    the exact sum: bound 2e-3.
//  - GEMM path: weights and rounded activations further rounded to f16
//    (2^-11 relative, RMS ~1.6e-4 each): ~2.5e-4; bound 2e-3 (F32 weights:
//    f32 GEMM, 2e-5). Q4_K, Q5_K, Q6_K, Q8_0, Q5_0 and Q4_0 rows of whole
//    256s take the int8 products at any batch (cuda_matvec_int8.cu,
//    cuda_mmq.cu: the CPU's integer sums per block) unless
//    MOESERVE_CUDA_INT8=0: 2e-5.
// The largest single error is bounded at 10x (20x for GEMMs) the RMS bound,
// relative to the RMS of the outputs, so one wrong row cannot hide. Both
// backends are also compared with a double-precision product of the same
// dequantized weights: the GPU may not be further from it than the CPU is,
// plus the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_test_util.h"

namespace moeserve::cuda::test {
namespace {

using CudaMatmul = CudaBlasTest;

constexpr GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,    GgmlType::BF16,  GgmlType::Q8_0, GgmlType::Q4_0,
                                  GgmlType::Q4_1, GgmlType::Q5_0,   GgmlType::Q5_1,  GgmlType::Q4_K, GgmlType::Q5_K,
                                  GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

bool is_float_type(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

// Row widths to test: 2688 (Nemotron's hidden size) is not a multiple of 256,
// so the 256-value block types use 2816 instead.
std::vector<int64_t> widths_for(GgmlType t) {
    const bool super_block = ggml_type_info(t).block_size == 256;
    return {256, 512, super_block ? 2816 : 2688};
}

struct Bounds {
    double rms, max;
};
Bounds gpu_bounds(GgmlType t, int64_t n_tokens, int64_t in) {
    const bool q8_1_partner = t == GgmlType::Q4_1 || t == GgmlType::Q5_1;
    const bool int8 = matvec_int8_supports(t) && in % 256 == 0;  // the integer products
    if (t == GgmlType::F32 || int8 || (n_tokens <= 16 && !q8_1_partner)) return {2e-5, 2e-4};
    return {2e-3, 4e-2};
}

// Checks one product's GPU result against the CPU's and both against the double reference.
void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::vector<double>& ref,
                  GgmlType type, int64_t n_tokens, int64_t in, const std::string& what) {
    const Bounds b = gpu_bounds(type, n_tokens, in);
    const std::vector<double> cpu_d = to_double(cpu);
    EXPECT_LT(relative_rms_error(gpu, cpu_d), b.rms) << what;
    EXPECT_LT(max_error_over_rms(gpu, cpu_d), b.max) << what;
    const double gpu_err = relative_rms_error(gpu, ref), cpu_err = relative_rms_error(cpu, ref);
    EXPECT_LT(gpu_err, cpu_err + b.rms) << what;
}

TEST(CudaMatmulChecks, rejects_weights_the_kernels_cannot_read) {
    // Thrown before any CUDA call, so this runs without a GPU too.
    Context ctx;
    Weight w;
    w.name = "blk.0.ffn_up.weight";
    w.type = GgmlType::Q2_K;
    w.ne = {256, 4, 1, 1};
    w.row_bytes = ggml_row_bytes(GgmlType::Q2_K, 256);
    w.matrix_bytes = w.row_bytes * 4;
    w.data = reinterpret_cast<const uint8_t*>(uintptr_t{4096});
    try {
        matmul(ctx, w, nullptr, 1, nullptr);
        FAIL() << "Q2_K accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("q2_K"), std::string::npos) << e.what();
    }
    w.type = GgmlType::F16;
    w.ne = {12, 4, 1, 1};  // rows of 12 halves: not a multiple of 8
    w.row_bytes = 24;
    w.matrix_bytes = 96;
    EXPECT_THROW(matmul(ctx, w, nullptr, 1, nullptr), std::invalid_argument);
    w.ne = {16, 4, 1, 1};
    w.row_bytes = 32;
    w.matrix_bytes = 128;
    w.data = reinterpret_cast<const uint8_t*>(uintptr_t{4098});  // misaligned
    EXPECT_THROW(embed(ctx, w, nullptr, 1, nullptr), std::invalid_argument);
}

TEST_F(CudaMatmul, embed_gives_the_dequantized_rows) {
    std::mt19937 rng(11);
    for (GgmlType type : kAllTypes) {
        const int64_t width = ggml_type_info(type).block_size == 256 ? 512 : 160;
        const int64_t n_rows = 50;
        const TestWeight table = make_test_weight(type, width, n_rows, 1, rng, 1.0f);
        const std::vector<int32_t> tokens = {3, 0, 49, 3, 17, 25, 8};
        DeviceArray<int32_t> dtok(tokens);
        DeviceArray<float> dout(tokens.size() * width);
        embed(ctx_, table.device, dtok.get(), static_cast<int64_t>(tokens.size()), dout.get());
        const std::vector<float> got = dout.download();
        // dequantize_row's values, up to the one rounding a fused q*d+m may save.
        for (size_t t = 0; t < tokens.size(); ++t) {
            const float* want = table.row(0, tokens[t]);
            float scale = 0;
            for (int64_t i = 0; i < width; ++i) scale = std::max(scale, std::abs(want[i]));
            for (int64_t i = 0; i < width; ++i)
                ASSERT_NEAR(got[t * width + i], want[i], 1e-6f * scale)
                    << ggml_type_name(type) << " token " << t << " element " << i;
        }
        finish();
    }
}

TEST_F(CudaMatmul, matmul_matches_cpu_for_every_weight_type_and_batch_size) {
    std::mt19937 rng(12);
    const auto cpu = make_cpu_backend(1);
    const int64_t out = 67;  // odd: a partial block of rows
    for (GgmlType type : kAllTypes) {
        for (int64_t in : widths_for(type)) {
            // Two stacked matrices; the product uses the second (the `expert` offset).
            const TestWeight w = make_test_weight(type, in, out, 2, rng);
            for (int64_t n_tokens : {1, 3, 8, 64, 300}) {
                const std::vector<float> x = normal_floats(n_tokens * in, rng);
                std::vector<float> want(n_tokens * out);
                cpu->matmul(w.host, x.data(), n_tokens, want.data(), 1);
                DeviceArray<float> dx(x), dy(n_tokens * out);
                matmul(ctx_, w.device, dx.get(), n_tokens, dy.get(), 1);
                const std::string what = std::string(ggml_type_name(type)) + " in " + std::to_string(in) + " tokens " +
                                         std::to_string(n_tokens);
                expect_close(dy.download(), want, reference_matmul(w, 1, x, n_tokens), type, n_tokens, in, what);
                finish();
            }
        }
    }
}

TEST_F(CudaMatmul, matmul_reads_activations_that_start_off_alignment) {
    // A model may multiply a slice of a wider row (x + 1 float here).
    std::mt19937 rng(14);
    const auto cpu = make_cpu_backend(1);
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::F16}) {
        const int64_t in = 256, out = 33;
        const TestWeight w = make_test_weight(type, in, out, 1, rng);
        for (int64_t n_tokens : {1, 5, 20}) {
            const std::vector<float> x = normal_floats(n_tokens * in + 1, rng);
            const std::vector<float> x_slice(x.begin() + 1, x.end());
            std::vector<float> want(n_tokens * out);
            cpu->matmul(w.host, x_slice.data(), n_tokens, want.data(), 0);
            DeviceArray<float> dx(x), dy(n_tokens * out);
            matmul(ctx_, w.device, dx.get() + 1, n_tokens, dy.get());
            expect_close(dy.download(), want, reference_matmul(w, 0, x_slice, n_tokens), type, n_tokens, in,
                         std::string(ggml_type_name(type)) + " tokens " + std::to_string(n_tokens));
            finish();
        }
    }
}

// Projections of one input (q/k/v): the input is rounded once per
// activation type, and each result is bit for bit that of its own matmul.
TEST_F(CudaMatmul, shared_input_products_equal_separate_ones) {
    std::mt19937 rng(15);
    const int64_t in = 512;
    const TestWeight a = make_test_weight(GgmlType::Q4_K, in, 40, 1, rng);
    const TestWeight b = make_test_weight(GgmlType::Q8_0, in, 24, 1, rng);
    const TestWeight c = make_test_weight(GgmlType::Q6_K, in, 8, 1, rng);
    for (int64_t n_tokens : {1, 5, 64}) {
        SCOPED_TRACE(std::to_string(n_tokens) + " tokens");
        DeviceArray<float> dx(normal_floats(n_tokens * in, rng));
        DeviceArray<float> ya(n_tokens * 40), yb(n_tokens * 24), yc(n_tokens * 8);
        DeviceArray<float> sa(n_tokens * 40), sb(n_tokens * 24), sc(n_tokens * 8);
        const DeviceProjection ps[] = {{a.device, sa.get()}, {b.device, sb.get()}, {c.device, sc.get()}};
        matmul_shared_input(ctx_, dx.get(), n_tokens, ps);
        matmul(ctx_, a.device, dx.get(), n_tokens, ya.get());
        matmul(ctx_, b.device, dx.get(), n_tokens, yb.get());
        matmul(ctx_, c.device, dx.get(), n_tokens, yc.get());
        EXPECT_EQ(sa.download(), ya.download());
        EXPECT_EQ(sb.download(), yb.download());
        EXPECT_EQ(sc.download(), yc.download());
        finish();
    }
}

// The FFN's gate and up products with the activation in one launch: what
// the separate products give, activated (ReLU²: bit for bit; SwiGLU: the
// host's expf against the GPU's __expf, ~1e-6 relative), for 1 to 16 tokens.
TEST_F(CudaMatmul, gated_matvec_equals_the_separate_products_activated) {
    std::mt19937 rng(16);
    const int64_t in = 512, out = 72;
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16}) {
        const TestWeight gate = make_test_weight(type, in, out, 1, rng);
        const TestWeight up = make_test_weight(type, in, out, 1, rng);
        for (int64_t n_tokens : {1, 3, 8, 16}) {
            SCOPED_TRACE(std::string(ggml_type_name(type)) + ", " + std::to_string(n_tokens) + " tokens");
            DeviceArray<float> dx(normal_floats(n_tokens * in, rng));
            DeviceArray<float> dg(n_tokens * out), du(n_tokens * out), fused(n_tokens * out);
            matmul(ctx_, gate.device, dx.get(), n_tokens, dg.get());
            matmul(ctx_, up.device, dx.get(), n_tokens, du.get());
            const std::vector<float> g = dg.download(), u = du.download();

            ASSERT_TRUE(
                matvec_gated(ctx_, gate.device, up.device, dx.get(), n_tokens, ExpertActivation::SwiGlu, fused.get()));
            const std::vector<float> swiglu = fused.download();
            double worst = 0;
            for (size_t i = 0; i < g.size(); ++i) {
                const double want = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
                worst = std::max(worst, std::abs(swiglu[i] - want) / std::max(1.0, std::abs(want)));
            }
            EXPECT_LT(worst, 1e-5);

            ASSERT_TRUE(matvec_gated(ctx_, Weight{}, up.device, dx.get(), n_tokens, ExpertActivation::ReluSquared,
                                     fused.get()));
            const std::vector<float> relu2 = fused.download();
            for (size_t i = 0; i < u.size(); ++i) {
                const float r = std::max(u[i], 0.0f);
                ASSERT_EQ(relu2[i], r * r) << "element " << i;
            }
            finish();
        }
    }
    // Over 16 tokens, or mismatched layouts, it declines and queues nothing.
    const TestWeight a = make_test_weight(GgmlType::Q4_K, 256, 8, 1, rng),
                     b = make_test_weight(GgmlType::Q8_0, 256, 8, 1, rng);
    EXPECT_FALSE(matvec_gated(ctx_, a.device, b.device, nullptr, 1, ExpertActivation::SwiGlu, nullptr));
    EXPECT_FALSE(matvec_gated(ctx_, a.device, a.device, nullptr, 17, ExpertActivation::SwiGlu, nullptr));
}

TEST_F(CudaMatmul, matmul_heads_matches_cpu_with_strided_heads) {
    std::mt19937 rng(13);
    const auto cpu = make_cpu_backend(1);
    const int n_head = 5;
    for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_K}) {
        const int64_t in = 256, out = 35;
        const TestWeight w = make_test_weight(type, in, out, n_head, rng);
        for (int64_t n_tokens : {1, 6, 40}) {
            // x row t: n_head heads of `in` values plus 4 (or 3: rows off 16-byte alignment) unused.
            const int64_t head_stride = in, token_stride = n_head * in + (n_tokens == 6 ? 3 : 4);
            const std::vector<float> x = normal_floats(n_tokens * token_stride, rng);
            std::vector<float> want(n_tokens * n_head * out);
            cpu->matmul_heads(w.host, x.data(), n_tokens, token_stride, head_stride, want.data());
            DeviceArray<float> dx(x), dy(n_tokens * n_head * out);
            matmul_heads(ctx_, w.device, dx.get(), n_tokens, token_stride, head_stride, dy.get());
            std::vector<double> ref(n_tokens * n_head * out);
            for (int64_t t = 0; t < n_tokens; ++t)
                for (int h = 0; h < n_head; ++h)
                    for (int64_t o = 0; o < out; ++o) {
                        double s = 0;
                        for (int64_t i = 0; i < in; ++i)
                            s += static_cast<double>(w.row(h, o)[i]) * x[t * token_stride + h * head_stride + i];
                        ref[(t * n_head + h) * out + o] = s;
                    }
            expect_close(dy.download(), want, ref, type, n_tokens, in,
                         std::string(ggml_type_name(type)) + " tokens " + std::to_string(n_tokens));
            finish();
        }
    }
}

// Prompts of per-head weights without an int8 tensor-core path (MLA's
// attn_k_b: Q5_0 rows of 128 in GLM-4.7-Flash's Q4_K_M files) take the
// matrix-vector kernels, not f16 GEMMs: the CPU's numbers to float rounding,
// at decode's bounds (f16 would round weights and activations by ~5e-4).
TEST_F(CudaMatmul, matmul_heads_prompts_without_int8_products_keep_float_precision) {
    std::mt19937 rng(14);
    const auto cpu = make_cpu_backend(1);
    const int n_head = 4;
    for (GgmlType type : {GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::IQ4_NL, GgmlType::BF16}) {
        const int64_t in = 128, out = 256;
        const TestWeight w = make_test_weight(type, in, out, n_head, rng);
        for (int64_t n_tokens : {40, 300}) {
            const std::string what = std::string(ggml_type_name(type)) + " tokens " + std::to_string(n_tokens);
            const int64_t head_stride = in + 64, token_stride = n_head * head_stride;  // MLA: q_nope then RoPE part
            const std::vector<float> x = normal_floats(n_tokens * token_stride, rng);
            std::vector<float> want(n_tokens * n_head * out);
            cpu->matmul_heads(w.host, x.data(), n_tokens, token_stride, head_stride, want.data());
            DeviceArray<float> dx(x), dy(n_tokens * n_head * out);
            matmul_heads(ctx_, w.device, dx.get(), n_tokens, token_stride, head_stride, dy.get());
            const std::vector<float> got = dy.download();
            const std::vector<double> want_d = to_double(want);
            EXPECT_LT(relative_rms_error(got, want_d), 2e-5) << what;
            EXPECT_LT(max_error_over_rms(got, want_d), 2e-4) << what;
            finish();
        }
    }
}

}  // namespace
}  // namespace moeserve::cuda::test
