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

// The AVX-512 kernels of the super-block formats redo the AVX2 kernels'
// (ggml's) float work lane for lane, only with the integer sums gathered
// differently, so llama.cpp's logits stay bit for bit: equal results for
// random blocks at every scale, subnormal included, and their four-row
// forms too.
TEST(QuantVecDot, avx512_kernels_of_the_super_block_formats_equal_the_avx2_kernels_bit_for_bit) {
    std::mt19937 rng(41);
    int checked = 0;
    for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS}) {
        const VecDotFn fast = vec_dot_kernel(t, SimdLevel::avx512), ref = vec_dot_kernel(t, SimdLevel::avx2);
        if (!fast || !ref) continue;
        for (int64_t n : {256, 2048, 6144})
            for (uint16_t d : {uint16_t{0x2A00}, uint16_t{0x6400}, uint16_t{0x0400}, uint16_t{0x0003}}) {
                const Case c = random_case(t, n, d, rng);
                EXPECT_EQ(fast(c.w.data(), c.a.data(), n), ref(c.w.data(), c.a.data(), n))
                    << ggml_type_name(t) << " n=" << n << " d=" << d;
            }
        ++checked;
    }
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    EXPECT_EQ(checked, 4);
#endif
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
                          GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::IQ4_NL, GgmlType::F16}) {
        VecDot4Fn dot4 = vec_dot4_kernel(type);
        if (!dot4) continue;
        // F16 rows of any length (its kernel has a scalar tail); the block formats in whole blocks.
        const int64_t n = type == GgmlType::F16 ? 1000 : 1024;
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

// The Q8_0-partner formats, at lengths that exercise every tail of the
// AVX-512 kernels (groups of 16 blocks, pairs of blocks, the short path for
// a last group of at most 4 blocks, and rows under 16 blocks, which use the
// AVX2 order): 3, 4, 17, 19, 23, 32, 84 and 116 blocks (84 = hidden 2688,
// 116 = Nemotron's shared-expert width 3712, 4 = an attention head of 128).
const GgmlType kQ8_0Family[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::IQ4_NL};
const int64_t kFamilyLengths[] = {96, 128, 544, 608, 736, 1024, 2688, 3712};

// Weights quantized from N(0,1) rows (every block has its own scale, some
// negative for IQ4_NL), activations from rows of growing magnitude.
struct Rows {
    std::vector<uint8_t> w;
    std::vector<uint8_t> act;  // n_rows rows of the activation type
    size_t act_row = 0;
};

Rows random_rows(GgmlType type, int64_t n, int n_rows, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    Rows r;
    std::vector<float> f(static_cast<size_t>(n));
    for (auto& v : f) v = dist(rng);
    r.w.resize(ggml_row_bytes(type, n));
    quantize_row(type, f.data(), r.w.data(), n);
    const GgmlType at = vec_dot_type(type);
    r.act_row = ggml_row_bytes(at, n);
    r.act.resize(r.act_row * n_rows);
    for (int k = 0; k < n_rows; ++k) {
        for (auto& v : f) v = dist(rng) * static_cast<float>(k + 1);
        quantize_row_activation(at, f.data(), r.act.data() + k * r.act_row, n);
    }
    return r;
}

// The two- and three-row kernels (a decode step of 2-3 slots) give each row
// the single-row kernel's bits.
TEST(QuantVecDotFew, two_and_three_row_kernels_equal_single_dots_exactly) {
    std::mt19937 rng(12);
    int checked = 0;
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS, GgmlType::Q8_0,
                          GgmlType::Q4_0, GgmlType::F16}) {
        for (int count : {2, 3}) {
            const VecDotFewFn few = vec_dot_few_kernel(type, count);
            if (!few) continue;
            for (int64_t n : {256, 2048}) {
                const Rows r = random_rows(type, n, count, rng);
                const void* a[3];
                for (int k = 0; k < count; ++k) a[k] = r.act.data() + k * r.act_row;
                float out[3];
                few(r.w.data(), a, out, n);
                for (int k = 0; k < count; ++k)
                    EXPECT_EQ(out[k], vec_dot(type, r.w.data(), a[k], n)) << ggml_type_name(type) << " x" << count;
            }
            ++checked;
        }
    }
    EXPECT_EQ(vec_dot_few_kernel(GgmlType::Q4_K, 4), nullptr);
    EXPECT_EQ(vec_dot_few_kernel(GgmlType::Q4_K, 1), nullptr);
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    EXPECT_EQ(checked, 8);  // the four super-block formats, two counts each
#endif
}

TEST(QuantVecDot4, q8_0_family_four_row_kernels_are_exact_at_every_length) {
    std::mt19937 rng(12);
    for (GgmlType type : kQ8_0Family) {
        const VecDot4Fn dot4 = vec_dot4_kernel(type);
        if (!dot4) continue;
        for (int64_t n : kFamilyLengths) {
            const Rows r = random_rows(type, n, 4, rng);
            const void* a[4];
            for (int k = 0; k < 4; ++k) a[k] = r.act.data() + k * r.act_row;
            float out[4];
            dot4(r.w.data(), a, out, n);
            for (int k = 0; k < 4; ++k)
                EXPECT_EQ(out[k], vec_dot(type, r.w.data(), a[k], n)) << ggml_type_name(type) << " n=" << n;
        }
    }
}

TEST(QuantVecDot, q8_0_family_simd_kernels_match_the_scalar_kernel_at_every_length) {
    std::mt19937 rng(13);
    for (GgmlType type : kQ8_0Family) {
        for (int64_t n : kFamilyLengths) {
            for (uint16_t d : {uint16_t{0x2A00}, uint16_t{0x0003}}) {
                const Case c = random_case(type, n, d, rng);
                const double scale =
                    abs_dot(dequantized(type, c.w.data(), n), dequantized(vec_dot_type(type), c.a.data(), n));
                const float ref = vec_dot_scalar(type, c.w.data(), c.a.data(), n);
                for (SimdLevel level : {SimdLevel::avx2, SimdLevel::avx512}) {
                    const VecDotFn fn = vec_dot_kernel(type, level);
                    if (!fn) continue;
                    EXPECT_NEAR(fn(c.w.data(), c.a.data(), n), ref, 2e-6 * scale + 1e-30)
                        << ggml_type_name(type) << " " << simd_level_name(level) << " n=" << n << " d=" << d;
                }
            }
        }
    }
}

// The tile kernel (rows in vector lanes) must give each row exactly what
// the single-row kernel gives, so a token's logits do not depend on where
// in a prompt batch it falls.
// A tile kernel's results for kDotTileRows activation rows against 1 to
// kDotTileWeightRows weight rows, and for a partial tile, against the
// single-row kernel, exactly. False where the type has no tile kernel for n.
bool check_tile_kernel(GgmlType type, int64_t n, std::mt19937& rng) {
    const VecDotTile* tile = vec_dot_tile_kernel(type, n);
    if (!tile) return false;
    const Rows r = random_rows(type, n, kDotTileRows, rng);
    std::vector<uint8_t> packed(tile->tile_bytes(n));
    tile->pack(r.act.data(), r.act_row, kDotTileRows, packed.data(), n);
    // kDotTileWeightRows weight rows, and fewer (the tail of a matrix).
    std::vector<std::vector<uint8_t>> w{r.w};
    for (int v = 1; v < kDotTileWeightRows; ++v) w.push_back(random_rows(type, n, 0, rng).w);
    std::vector<uint8_t> rows;
    for (const auto& row : w) rows.insert(rows.end(), row.begin(), row.end());
    for (int n_w = 1; n_w <= kDotTileWeightRows; ++n_w) {
        std::vector<float> out(static_cast<size_t>(n_w) * kDotTileRows);
        tile->dot(rows.data(), r.w.size(), n_w, packed.data(), out.data(), n);
        for (int v = 0; v < n_w; ++v)
            for (int k = 0; k < kDotTileRows; ++k)
                EXPECT_EQ(out[v * kDotTileRows + k], vec_dot(type, w[v].data(), r.act.data() + k * r.act_row, n))
                    << ggml_type_name(type) << " n=" << n << " weight rows " << n_w << " row " << v << "/" << k;
    }
    // A partial tile (the last tokens of a prompt): its rows give the same results.
    std::vector<uint8_t> partial(tile->tile_bytes(n), 0xAA);
    tile->pack(r.act.data(), r.act_row, 5, partial.data(), n);
    std::vector<float> out(kDotTileRows);
    tile->dot(rows.data(), r.w.size(), 1, partial.data(), out.data(), n);
    for (int k = 0; k < 5; ++k)
        EXPECT_EQ(out[k], vec_dot(type, r.w.data(), r.act.data() + k * r.act_row, n))
            << ggml_type_name(type) << " n=" << n << " partial tile row " << k;
    return true;
}

TEST(QuantVecDotTile, tile_kernel_equals_single_row_dots_exactly) {
    std::mt19937 rng(14);
    int checked = 0;
    for (GgmlType type : kQ8_0Family)
        for (int64_t n : kFamilyLengths) checked += check_tile_kernel(type, n, rng);
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    EXPECT_EQ(checked, static_cast<int>(4 * std::size(kFamilyLengths)));  // every format, every length, with VNNI
#endif
}

TEST(QuantVecDotTile, q8_k_partner_tile_kernels_equal_single_row_dots_exactly) {
    std::mt19937 rng(15);
    int checked = 0;
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS})
        for (int64_t n : {256, 512, 768, 1536, 2048, 5120}) checked += check_tile_kernel(type, n, rng);
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    EXPECT_EQ(checked, 24);
#endif
}

// Q4_K, Q6_K and IQ4_XS projections of one input (a Q4_K_M or IQ4_XS layer)
// share its packed tiles.
TEST(QuantVecDotTile, q8_k_partners_share_the_tile_layout) {
    const VecDotTile* q4 = vec_dot_tile_kernel(GgmlType::Q4_K, 2048);
    if (!q4) GTEST_SKIP() << "no Q8_K tile kernels in this build (they need AVX-512 VNNI)";
    for (GgmlType type : {GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS}) {
        const VecDotTile* t = vec_dot_tile_kernel(type, 2048);
        ASSERT_NE(t, nullptr) << ggml_type_name(type);
        EXPECT_EQ(t->pack, q4->pack) << ggml_type_name(type);
        EXPECT_EQ(t->tile_bytes(2048), q4->tile_bytes(2048)) << ggml_type_name(type);
    }
}

// The weight-rows kernel (a decoded token against several weight rows) must
// give each row exactly what the single-row kernel gives.
TEST(QuantVecDotRows, weight_rows_kernel_equals_single_row_dots_exactly) {
    std::mt19937 rng(15);
    int checked = 0;
    for (GgmlType type : kQ8_0Family) {
        const VecDotRowsFn dotw = vec_dot_rows_kernel(type);
        if (!dotw) continue;
        for (int64_t n : kFamilyLengths) {
            const Rows r = random_rows(type, n, 1, rng);
            std::vector<uint8_t> rows;
            std::vector<std::vector<uint8_t>> w;
            for (int v = 0; v < kDotWeightRows; ++v) {
                w.push_back(v == 0 ? r.w : random_rows(type, n, 0, rng).w);
                rows.insert(rows.end(), w.back().begin(), w.back().end());
            }
            for (int n_w = 1; n_w <= kDotWeightRows; ++n_w) {
                std::vector<float> out(static_cast<size_t>(n_w), -1.0f);
                dotw(rows.data(), r.w.size(), n_w, r.act.data(), out.data(), n);
                for (int v = 0; v < n_w; ++v)
                    EXPECT_EQ(out[v], vec_dot(type, w[v].data(), r.act.data(), n))
                        << ggml_type_name(type) << " n=" << n << " rows " << n_w << " row " << v;
            }
            ++checked;
        }
    }
#if defined(__AVX2__) && defined(__FMA__)
    EXPECT_EQ(checked, static_cast<int>(4 * std::size(kFamilyLengths)));
#endif
}

// The weight-rows kernel against 2 to 4 activation rows at once: every
// (weight row, activation row) the single-row kernel's bits.
TEST(QuantVecDotRows, weight_rows_kernel_for_two_to_four_tokens_equals_single_row_dots_exactly) {
    std::mt19937 rng(16);
    int checked = 0;
    for (GgmlType type : kQ8_0Family) {
        const VecDotRowsFewFn rows_few = vec_dot_rows_few_kernel(type);
        if (!rows_few) continue;
        for (int64_t n : kFamilyLengths) {
            const Rows r = random_rows(type, n, 4, rng);
            std::vector<uint8_t> rows;
            std::vector<std::vector<uint8_t>> w;
            for (int v = 0; v < kDotWeightRows; ++v) {
                w.push_back(v == 0 ? r.w : random_rows(type, n, 0, rng).w);
                rows.insert(rows.end(), w.back().begin(), w.back().end());
            }
            for (int n_act : {2, 3, 4})
                for (int n_w = 1; n_w <= kDotWeightRows; ++n_w) {
                    std::vector<std::vector<float>> out(4, std::vector<float>(kDotWeightRows, -1.0f));
                    const void* a[4];
                    float* o[4];
                    for (int k = 0; k < 4; ++k) {
                        a[k] = r.act.data() + k * r.act_row;
                        o[k] = out[k].data();
                    }
                    rows_few(rows.data(), r.w.size(), n_w, a, n_act, o, n);
                    for (int k = 0; k < n_act; ++k)
                        for (int v = 0; v < n_w; ++v)
                            EXPECT_EQ(out[k][v], vec_dot(type, w[v].data(), a[k], n))
                                << ggml_type_name(type) << " n=" << n << " tokens " << n_act << " rows " << n_w;
                    for (int v = n_w; v < kDotWeightRows; ++v) EXPECT_EQ(out[0][v], -1.0f);  // rows past n_w untouched
                }
            ++checked;
        }
    }
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
    EXPECT_EQ(checked, static_cast<int>(4 * std::size(kFamilyLengths)));
#endif
}

// The tiles reproduce the AVX2 kernels of the Q8_0 partners, which are the
// single-row kernels of those formats (ggml's order); other formats have none.
TEST(QuantVecDotTile, only_the_q8_0_and_q8_k_partners_have_a_tile_kernel) {
    for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_1, GgmlType::Q5_1})
        EXPECT_EQ(vec_dot_tile_kernel(type, 4096), nullptr) << ggml_type_name(type);
    for (GgmlType type : kQ8_0Family) {
        EXPECT_EQ(vec_dot_kernel(type, SimdLevel::avx512), nullptr) << ggml_type_name(type);
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
        EXPECT_NE(vec_dot_tile_kernel(type, 4096), nullptr) << ggml_type_name(type);
        EXPECT_NE(vec_dot_tile_kernel(type, 128), nullptr) << ggml_type_name(type);
#endif
    }
}

}  // namespace
}  // namespace moeserve
