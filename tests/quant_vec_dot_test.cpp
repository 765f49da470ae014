// Dot-product kernels: every SIMD level against the scalar reference, and the
// scalar reference against dequantize-then-dot.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/block_formats.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

const GgmlType kDotTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16,  GgmlType::Q4_0,   GgmlType::Q4_1,
                              GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,  GgmlType::IQ4_NL, GgmlType::Q4_K,
                              GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS};

// Offsets of the fp16 scale fields of a weight block, to pin them to chosen values.
std::vector<size_t> fp16_fields(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
            return {0, 2};
        case GgmlType::Q6_K:
            return {208};
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
            return {};
        default:
            return {0};
    }
}

std::vector<float> dequantized(GgmlType t, const void* p, int64_t n) {
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_row(t, p, y.data(), n);
    return y;
}

// Σ|w_i * a_i| of the dequantized rows: the scale for float-order tolerances.
double abs_dot(const std::vector<float>& w, const std::vector<float>& a) {
    double s = 0;
    for (size_t i = 0; i < w.size(); ++i) s += std::fabs(static_cast<double>(w[i]) * a[i]);
    return s;
}

double exact_dot(const std::vector<float>& w, const std::vector<float>& a) {
    double s = 0;
    for (size_t i = 0; i < w.size(); ++i) s += static_cast<double>(w[i]) * a[i];
    return s;
}

// Random weight bytes with the scale fields set to d (and Q8_0 codes kept off
// -128, which ggml never writes), activations quantized from N(0,1).
struct Case {
    std::vector<uint8_t> w, a;
};

Case random_case(GgmlType t, int64_t n, uint16_t d_bits, std::mt19937& rng) {
    Case c;
    c.w.resize(ggml_row_bytes(t, n));
    if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = dist(rng);
        quantize_row(t, x.data(), c.w.data(), n);
    } else {
        for (auto& b : c.w) b = static_cast<uint8_t>(rng());
        const int64_t bs = ggml_type_info(t).type_size;
        for (int64_t off = 0; off < static_cast<int64_t>(c.w.size()); off += bs) {
            for (size_t f : fp16_fields(t)) test::put_fp16(c.w.data() + off + f, d_bits);
            if (t == GgmlType::Q8_0)
                for (int j = 2; j < 34; ++j)
                    if (c.w[off + j] == 0x80) c.w[off + j] = 0x81;
        }
    }
    const GgmlType at = vec_dot_type(t);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = dist(rng);
    c.a.resize(ggml_row_bytes(at, n));
    quantize_row_activation(at, x.data(), c.a.data(), n);
    return c;
}

TEST(QuantVecDot, activation_types_follow_the_ggml_table) {
    EXPECT_EQ(vec_dot_type(GgmlType::Q4_0), GgmlType::Q8_0);
    EXPECT_EQ(vec_dot_type(GgmlType::Q5_0), GgmlType::Q8_0);
    EXPECT_EQ(vec_dot_type(GgmlType::Q8_0), GgmlType::Q8_0);
    EXPECT_EQ(vec_dot_type(GgmlType::IQ4_NL), GgmlType::Q8_0);
    EXPECT_EQ(vec_dot_type(GgmlType::Q4_1), GgmlType::Q8_1);
    EXPECT_EQ(vec_dot_type(GgmlType::Q5_1), GgmlType::Q8_1);
    for (GgmlType t :
         {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS})
        EXPECT_EQ(vec_dot_type(t), GgmlType::Q8_K);
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) EXPECT_EQ(vec_dot_type(t), t);
    EXPECT_THROW(vec_dot_type(GgmlType::IQ2_XXS), std::invalid_argument);
}

TEST(QuantVecDot, every_simd_kernel_matches_the_scalar_kernel) {
    std::mt19937 rng(31);
    // Scale fields: ordinary, large, tiny normal, subnormal.
    const uint16_t scales[] = {0x2A00, 0x6400, 0x0400, 0x0003};
    for (GgmlType t : kDotTypes) {
        for (int64_t n : {256, 4096}) {
            for (uint16_t d : scales) {
                const Case c = random_case(t, n, d, rng);
                const double scale =
                    abs_dot(dequantized(t, c.w.data(), n), dequantized(vec_dot_type(t), c.a.data(), n));
                const float ref = vec_dot_scalar(t, c.w.data(), c.a.data(), n);
                for (SimdLevel level : {SimdLevel::avx2, SimdLevel::avx512}) {
                    const VecDotFn fn = vec_dot_kernel(t, level);
                    if (!fn) continue;
                    const float got = fn(c.w.data(), c.a.data(), n);
                    // Integer block sums are exact; only the float summation order differs.
                    EXPECT_NEAR(got, ref, 2e-6 * scale + 1e-30)
                        << ggml_type_name(t) << " " << simd_level_name(level) << " n=" << n << " d=" << d;
                }
                EXPECT_EQ(vec_dot(t, c.w.data(), c.a.data(), n), vec_dot_kernel(t)(c.w.data(), c.a.data(), n));
            }
        }
    }
}

TEST(QuantVecDot, scalar_kernel_equals_dot_of_dequantized_rows) {
    std::mt19937 rng(32);
    for (GgmlType t : kDotTypes) {
        const int64_t n = 2048;
        const Case c = random_case(t, n, 0x2A00, rng);
        const auto w = dequantized(t, c.w.data(), n);
        const auto a = dequantized(vec_dot_type(t), c.a.data(), n);
        const double expect = exact_dot(w, a);
        // Q4_1/Q5_1 use Q8_1's fp16 sum field for the min term, which is rounded.
        const double tol = (t == GgmlType::Q4_1 || t == GgmlType::Q5_1) ? 2e-3 : 2e-6;
        EXPECT_NEAR(vec_dot_scalar(t, c.w.data(), c.a.data(), n), expect, tol * abs_dot(w, a)) << ggml_type_name(t);
    }
}

TEST(QuantVecDot, quantized_dot_is_close_to_the_float_dot) {
    // End to end: weights and activations from N(0,1), quantized the way
    // llama.cpp does. The relative error, measured against ||w||·||a||, is
    // bounded by the two formats' quantization errors (weights dominate).
    const int64_t n = 4096;
    const auto wf = test::random_normal(static_cast<size_t>(n), 41);
    const auto af = test::random_normal(static_cast<size_t>(n), 42);
    double ww = 0, aa = 0;
    for (int64_t i = 0; i < n; ++i) ww += wf[i] * wf[i], aa += af[i] * af[i];
    const double norm = std::sqrt(ww * aa);
    const double exact = exact_dot(wf, af);
    for (GgmlType t : kDotTypes) {
        const auto w = test::quantized(t, wf, quantize_weight_row);
        const auto a = test::quantized(vec_dot_type(t), af, quantize_row_activation);
        const double err = std::fabs(vec_dot(t, w.data(), a.data(), n) - exact) / norm;
        EXPECT_LT(err, 0.07) << ggml_type_name(t);
        // The error is that of the formats, not of the kernel: the float dot of
        // the dequantized weights with the float activations is as close.
        const double deq = exact_dot(dequantized(t, w.data(), n), af);
        EXPECT_LT(std::fabs(vec_dot(t, w.data(), a.data(), n) - deq) / norm, 0.01) << ggml_type_name(t);
    }
}

TEST(QuantVecDot, unsupported_types_and_bad_lengths_throw) {
    std::vector<uint8_t> w(4096), a(4096);
    try {
        vec_dot(GgmlType::Q2_K, w.data(), a.data(), 256);
        FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("q2_K"), std::string::npos) << e.what();
    }
    EXPECT_THROW(vec_dot(GgmlType::Q4_K, w.data(), a.data(), 32), std::invalid_argument);
    EXPECT_THROW(vec_dot_scalar(GgmlType::Q8_0, w.data(), a.data(), 48), std::invalid_argument);
    EXPECT_EQ(vec_dot_kernel(GgmlType::IQ1_S), nullptr);
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// The four-row kernels unpack each weight block once for four activation
// rows; the results must be bit-identical to four single-row dots.
TEST(QuantVecDot4, four_row_kernels_equal_four_single_dots_exactly) {
    std::mt19937 rng(11);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    int checked = 0;
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::IQ4_XS,
                          GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::IQ4_NL}) {
        VecDot4Fn dot4 = vec_dot4_kernel(type);
        if (!dot4) continue;
        const int64_t n = 1024;
        std::vector<float> wf(n), af(n);
        for (auto& v : wf) v = dist(rng);
        std::vector<uint8_t> w(ggml_row_bytes(type, n));
        quantize_row(type, wf.data(), w.data(), n);
        const GgmlType at = vec_dot_type(type);
        std::vector<std::vector<uint8_t>> acts(4, std::vector<uint8_t>(ggml_row_bytes(at, n)));
        const void* a[4];
        for (int k = 0; k < 4; ++k) {
            for (auto& v : af) v = dist(rng) * (k + 1);
            quantize_row_activation(at, af.data(), acts[k].data(), n);
            a[k] = acts[k].data();
        }
        float out[4];
        dot4(w.data(), a, out, n);
        for (int k = 0; k < 4; ++k) EXPECT_EQ(out[k], vec_dot(type, w.data(), a[k], n)) << ggml_type_name(type);
        ++checked;
    }
#if defined(__AVX2__)
    EXPECT_GE(checked, 5);  // Q4_K and the Q8_0 family have one wherever AVX2 is compiled in
#endif
}

}  // namespace
}  // namespace moeserve
