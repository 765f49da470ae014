// Known-answer vectors (spec Appendix A), quantize -> dequantize round trips,
// SIMD dequantization against the scalar code, and error handling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/block_formats.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

using test::hex_bytes;

// x[j] = ((j*37) mod 64 - 31.5) / 16: exact floats; |x[0]| == |x[19]|, the first (negative) wins.
std::vector<float> appendix_a1_input() {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = (static_cast<float>((j * 37) % 64) - 31.5f) / 16.0f;
    return x;
}

void expect_a1(GgmlType type, const char* hex) {
    const auto x = appendix_a1_input();
    const auto got = test::quantized(type, x, quantize_row);
    EXPECT_EQ(got, hex_bytes(hex)) << ggml_type_name(type);
}

TEST(QuantQ8_0, quantize_matches_known_answer_vector) {
    expect_a1(GgmlType::Q8_0, "f0238116a93ed267fa8d22b54bde7306992ec257ea7f12a53ace63f6891eb147da6f");
}
TEST(QuantQ4_0, quantize_matches_known_answer_vector) {
    expect_a1(GgmlType::Q4_0, "e03340d973fc952ec851ea731da63fc862fb");
}
TEST(QuantQ4_1, quantize_matches_known_answer_vector) {
    expect_a1(GgmlType::Q4_1, "3334e0bf40d962fb952eb751da730c953ec851ea");
}
TEST(QuantQ5_0, quantize_matches_known_answer_vector) {
    expect_a1(GgmlType::Q5_0, "e02f2ab55aa980b3d5f82a5d7fa2c4f7194c6e91b3e6");
}
TEST(QuantQ5_1, quantize_matches_known_answer_vector) {
    expect_a1(GgmlType::Q5_1, "1130e0bf2ab55aa980a2d5f72a4c7f91c4e6193b6e80b3d5");
}
TEST(QuantIQ4_NL, kv_quantize_matches_known_answer_vector) {
    expect_a1(GgmlType::IQ4_NL, "042430ea62fd942fc741eb720da52fd851fc");
}

TEST(QuantQ8_0, activation_variant_rounds_ties_to_even_with_127_over_amax) {
    // amax = 127 makes id exactly 1, so x = 2.5 is a tie: the reference rounds
    // away from zero (3), the x86 SIMD rule to even (2).
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -3.5f;
    BlockQ8_0 ref, act;
    quantize_row(GgmlType::Q8_0, x.data(), &ref, 32);
    quantize_row_activation(GgmlType::Q8_0, x.data(), &act, 32);
    EXPECT_EQ(ref.qs[1], 3);
    EXPECT_EQ(ref.qs[2], -4);
    EXPECT_EQ(act.qs[1], 2);
    EXPECT_EQ(act.qs[2], -4);
    EXPECT_EQ(ref.d, act.d);
}

TEST(QuantQ8_1, sum_field_is_d_times_sum_of_codes) {
    const auto x = test::random_normal(64, 3);
    std::vector<BlockQ8_1> y(2);
    quantize_row(GgmlType::Q8_1, x.data(), y.data(), 64);
    for (int ib = 0; ib < 2; ++ib) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * ib + j]));
        const float d = amax / 127.0f;  // s uses the float32 d, not the stored fp16 one
        int sum = 0;
        for (int8_t q : y[ib].qs) sum += q;
        EXPECT_EQ(y[ib].d, fp32_to_fp16(d));
        EXPECT_EQ(y[ib].s, fp32_to_fp16(static_cast<float>(sum) * d));
    }
}

TEST(QuantQ8_K, quantize_keeps_bsums_and_maps_the_largest_magnitude_to_minus_127) {
    auto x = test::random_normal(256, 4);
    x[77] = -9.0f;
    BlockQ8_K y;
    quantize_row(GgmlType::Q8_K, x.data(), &y, 256);
    EXPECT_EQ(y.qs[77], -127);  // iscale = -127/max with max = -9
    EXPECT_FLOAT_EQ(y.d, 1.0f / (-127.f / -9.0f));
    for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int l = 0; l < 16; ++l) s += y.qs[16 * g + l];
        EXPECT_EQ(y.bsums[g], s);
    }
}

// Every byte of a Q8_K block against the spec's formula written out here
// (ggml's quantize_row_q8_K_ref): the first element of largest magnitude,
// iscale = -127/max, q = min(127, nearest_int(iscale·x)) with ties to even,
// bsums, d = 1/iscale; an all-zero block is all zero.
TEST(QuantQ8_K, quantize_matches_the_reference_formula_byte_for_byte) {
    auto reference = [](const float* x, BlockQ8_K& y) {
        std::memset(&y, 0, sizeof y);
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < 256; ++j)
            if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
        if (amax == 0.0f) return;
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; ++j) {
            const float v = iscale * x[j] + 12582912.f;  // ggml's nearest_int
            int32_t i;
            std::memcpy(&i, &v, 4);
            y.qs[j] = static_cast<int8_t>(std::min(127, (i & 0x007fffff) - 0x00400000));
        }
        for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += y.qs[16 * g + l];
            y.bsums[g] = static_cast<int16_t>(sum);
        }
        y.d = 1 / iscale;
    };
    std::vector<std::vector<float>> blocks;
    for (int seed = 0; seed < 50; ++seed) blocks.push_back(test::random_normal(256, 100 + seed));
    auto tie = test::random_normal(256, 7);  // two elements of the largest magnitude: the first (+3) wins
    for (auto& v : tie) v = std::clamp(v, -2.0f, 2.0f);
    tie[40] = 3.0f, tie[200] = -3.0f;
    blocks.push_back(tie);
    std::vector<float> halves(256, 0.0f);  // max -127 makes iscale 1: x + 0.5 rounds to even
    halves[0] = -127.0f;
    for (int j = 1; j < 256; ++j) halves[j] = static_cast<float>(j % 100) - 50.0f + 0.5f;
    blocks.push_back(halves);
    blocks.push_back(std::vector<float>(256, 0.0f));
    std::vector<float> mostly_zero(256, 0.0f);
    mostly_zero[255] = -1e-30f;
    blocks.push_back(mostly_zero);
    for (size_t b = 0; b < blocks.size(); ++b) {
        BlockQ8_K got, want;
        std::memset(&got, 0xAB, sizeof got);
        quantize_row_activation(GgmlType::Q8_K, blocks[b].data(), &got, 256);
        reference(blocks[b].data(), want);
        EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0) << "block " << b;
    }
}

// ---------------------------------------------------------------- Appendix A.2

struct A2Case {
    GgmlType type;
    std::vector<std::pair<size_t, uint16_t>> fp16_fields;  // offset, value
    std::vector<std::pair<int, double>> outputs;
    double sum;
};

void check_a2(const A2Case& c) {
    const size_t size = static_cast<size_t>(ggml_type_info(c.type).type_size);
    std::vector<uint8_t> block(size);
    for (size_t i = 0; i < size; ++i) block[i] = static_cast<uint8_t>((i * 73 + 41) % 256);
    for (auto [off, v] : c.fp16_fields) test::put_fp16(block.data() + off, v);
    for (auto deq : {dequantize_row, dequantize_row_scalar}) {
        std::vector<float> y(256);
        deq(c.type, block.data(), y.data(), 256);
        for (auto [e, want] : c.outputs)
            EXPECT_NEAR(y[e], want, 1e-6 * std::max(1.0, std::fabs(want))) << "y[" << e << "]";
        double sum = 0;
        for (float v : y) sum += v;
        EXPECT_NEAR(sum, c.sum, 2e-6 * std::max(1.0, std::fabs(c.sum))) << ggml_type_name(c.type);
    }
}

TEST(QuantQ2_K, dequantize_matches_known_answer_vector) {
    check_a2({GgmlType::Q2_K,
              {{80, 0x224C}, {82, 0x1C9C}},
              {{0, 0.10168457}, {1, 0.212371826}, {32, 0.221054077}, {63, 0}, {100, 0.494918823}, {255, -0.0315093994}},
              27.789093});
}
TEST(QuantQ3_K, dequantize_matches_known_answer_vector) {
    check_a2({GgmlType::Q3_K,
              {{108, 0x224C}},
              {{0, -0.0860900879},
               {1, 0.172180176},
               {32, -0.664123535},
               {63, 1.37744141},
               {100, -0.209075928},
               {255, -0.295166016}},
              2.87786865});
}
TEST(QuantQ4_K, dequantize_matches_known_answer_vector) {
    check_a2({GgmlType::Q4_K,
              {{0, 0x224C}, {2, 0x1C9C}},
              {{0, 1.21836853},
               {1, 0.0991973877},
               {32, 2.71517944},
               {64, 3.4178009},
               {100, 7.32513428},
               {255, -0.103530884}},
              667.597412});
}
TEST(QuantQ5_K, dequantize_matches_known_answer_vector) {
    check_a2(
        {GgmlType::Q5_K,
         {{0, 0x224C}, {2, 0x1C9C}},
         {{0, 3.776474}, {1, 0.0991973877}, {32, 3.25631714}, {100, 8.309021}, {128, 6.34422302}, {255, -0.103530884}},
         1365.1731});
}
TEST(QuantQ6_K, dequantize_matches_known_answer_vector) {
    check_a2({GgmlType::Q6_K,
              {{208, 0x224C}},
              {{0, 1.98007202},
               {1, -0.565734863},
               {31, -19.6777344},
               {32, 13.6145325},
               {100, -26.2451782},
               {255, 3.54199219}},
              -182.560181});
}
TEST(QuantIQ4_XS, dequantize_matches_known_answer_vector) {
    check_a2({GgmlType::IQ4_XS,
              {{0, 0x224C}},
              {{0, -37.0925293},
               {1, 8.91647339},
               {32, -5.11621094},
               {64, -28.1391602},
               {128, 21.7438965},
               {255, -9.22393799}},
              -79.3258667});
}

// ---------------------------------------------------------------- round trips

struct Bound {
    GgmlType type;
    double max_nrmse;  // ||x - deq(q(x))|| / ||x|| on N(0,1) data, measured + ~25% margin
};

// Measured on these 64K N(0,1) values (the printout shows them): F16 2.0e-4,
// BF16 1.7e-3, Q8_0/Q8_1 5.4e-3, Q8_K 7.0e-3, Q6_K 1.8e-2, Q5_K 3.6e-2,
// Q5_1 3.8e-2, Q5_0 4.3e-2, Q4_K 7.2e-2, IQ4_NL 7.6e-2 (weights) / 7.9e-2 (KV),
// IQ4_XS 7.7e-2, Q4_1 7.9e-2, Q4_0 8.6e-2. Gaussian data has no structure for
// the scale search to exploit, so 4-bit formats sit near the uniform-quantizer
// limit. Bounds: measured + 25%.
const Bound kBounds[] = {
    {GgmlType::F32, 0.0},     {GgmlType::F16, 2.5e-4}, {GgmlType::BF16, 2.2e-3},   {GgmlType::Q8_0, 7e-3},
    {GgmlType::Q8_1, 7e-3},   {GgmlType::Q8_K, 9e-3},  {GgmlType::Q5_0, 5.4e-2},   {GgmlType::Q5_1, 4.8e-2},
    {GgmlType::Q4_0, 0.108},  {GgmlType::Q4_1, 0.1},   {GgmlType::IQ4_NL, 0.1},    {GgmlType::Q6_K, 2.2e-2},
    {GgmlType::Q5_K, 4.5e-2}, {GgmlType::Q4_K, 9e-2},  {GgmlType::IQ4_XS, 9.6e-2},
};

TEST(QuantRoundTrip, dequantized_values_stay_within_each_formats_error_bound) {
    const auto x = test::random_normal(65536, 11);
    for (const Bound& b : kBounds) {
        for (auto quant : {quantize_row, quantize_weight_row, quantize_row_activation}) {
            const auto q = test::quantized(b.type, x, quant);
            std::vector<float> y(x.size());
            dequantize_row(b.type, q.data(), y.data(), static_cast<int64_t>(x.size()));
            const double e = test::normalized_rms_error(x.data(), y.data(), x.size());
            EXPECT_LE(e, b.max_nrmse) << ggml_type_name(b.type);
            std::printf("  %-7s nrmse %.4f\n", std::string(ggml_type_name(b.type)).c_str(), e);
        }
    }
}

TEST(QuantRoundTrip, all_zero_input_dequantizes_to_zero) {
    const std::vector<float> x(512, 0.0f);
    for (const Bound& b : kBounds) {
        for (auto quant : {quantize_row, quantize_weight_row}) {
            const auto q = test::quantized(b.type, x, quant);
            std::vector<float> y(x.size(), 1.0f);
            dequantize_row(b.type, q.data(), y.data(), 512);
            for (float v : y) ASSERT_EQ(v, 0.0f) << ggml_type_name(b.type);
        }
    }
}

TEST(QuantRoundTrip, outlier_blocks_keep_the_outlier_and_the_small_values) {
    // One huge value per block stresses the scale search; it must survive
    // with the format's relative precision.
    auto x = test::random_normal(1024, 12, 0.01f);
    for (size_t i = 5; i < x.size(); i += 256) x[i] = 50.0f;
    for (const Bound& b : kBounds) {
        const auto q = test::quantized(b.type, x, quantize_weight_row);
        std::vector<float> y(x.size());
        dequantize_row(b.type, q.data(), y.data(), 1024);
        for (size_t i = 5; i < x.size(); i += 256) EXPECT_NEAR(y[i], 50.0f, 50.0f * 0.07f) << ggml_type_name(b.type);
    }
}

TEST(QuantIQ4_NL, weight_variant_is_no_worse_than_the_kv_variant) {
    const auto x = test::random_normal(8192, 13);
    std::vector<float> y(x.size());
    const auto kv = test::quantized(GgmlType::IQ4_NL, x, quantize_row);
    dequantize_row(GgmlType::IQ4_NL, kv.data(), y.data(), 8192);
    const double e_kv = test::normalized_rms_error(x.data(), y.data(), x.size());
    const auto w = test::quantized(GgmlType::IQ4_NL, x, quantize_weight_row);
    dequantize_row(GgmlType::IQ4_NL, w.data(), y.data(), 8192);
    const double e_w = test::normalized_rms_error(x.data(), y.data(), x.size());
    EXPECT_NE(kv, w);
    EXPECT_LE(e_w, e_kv);
}

// ---------------------------------------------------------------- SIMD vs scalar dequantization

TEST(QuantDequantize, simd_path_is_bit_identical_to_scalar_on_random_blocks) {
    std::mt19937 rng(21);
    const GgmlType types[] = {GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,   GgmlType::Q4_1,
                              GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,   GgmlType::Q8_1,
                              GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,   GgmlType::Q5_K,
                              GgmlType::Q6_K, GgmlType::Q8_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};
    for (GgmlType t : types) {
        const int64_t n = 2048;
        std::vector<uint8_t> raw(ggml_row_bytes(t, n));
        for (auto& b : raw) b = static_cast<uint8_t>(rng());
        if (t == GgmlType::Q8_K)  // its scale is a float32: keep it finite
            for (size_t off = 0; off < raw.size(); off += sizeof(BlockQ8_K)) {
                const float d = 0.01f;
                std::memcpy(raw.data() + off, &d, 4);
            }
        std::vector<float> a(n), b(n);
        dequantize_row(t, raw.data(), a.data(), n);
        dequantize_row_scalar(t, raw.data(), b.data(), n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(f32_bits(a[i]), f32_bits(b[i])) << ggml_type_name(t) << " element " << i;
    }
}

// ---------------------------------------------------------------- errors

TEST(QuantErrors, unsupported_types_throw_with_the_type_name) {
    std::vector<uint8_t> buf(4096);
    std::vector<float> f(256);
    auto message = [](auto&& fn) {
        try {
            fn();
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no exception");
    };
    EXPECT_NE(message([&] { dequantize_row(GgmlType::IQ2_XXS, buf.data(), f.data(), 256); }).find("iq2_xxs"),
              std::string::npos);
    EXPECT_NE(message([&] { dequantize_row(GgmlType::MXFP4, buf.data(), f.data(), 32); }).find("mxfp4"),
              std::string::npos);
    EXPECT_NE(message([&] { quantize_row(GgmlType::Q2_K, f.data(), buf.data(), 256); }).find("q2_K"),
              std::string::npos);
    EXPECT_NE(message([&] { quantize_row(GgmlType::I32, f.data(), buf.data(), 256); }).find("i32"), std::string::npos);
    EXPECT_NE(message([&] { dequantize_row(static_cast<GgmlType>(4), buf.data(), f.data(), 32); }).find("id 4"),
              std::string::npos);
}

TEST(QuantErrors, row_length_not_a_multiple_of_the_block_size_throws) {
    std::vector<uint8_t> buf(4096);
    std::vector<float> f(512);
    EXPECT_THROW(dequantize_row(GgmlType::Q4_K, buf.data(), f.data(), 128), std::invalid_argument);
    EXPECT_THROW(dequantize_row(GgmlType::Q8_0, buf.data(), f.data(), 33), std::invalid_argument);
    EXPECT_THROW(quantize_row(GgmlType::IQ4_XS, f.data(), buf.data(), 32), std::invalid_argument);
    EXPECT_THROW(quantize_row(GgmlType::Q5_0, f.data(), buf.data(), 40), std::invalid_argument);
    EXPECT_NO_THROW(dequantize_row(GgmlType::F16, buf.data(), f.data(), 7));
}

}  // namespace
}  // namespace moeserve
