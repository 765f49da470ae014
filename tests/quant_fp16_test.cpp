// fp16 / bf16 conversions: exhaustive over all half patterns, ties, overflow,
// NaN handling, and the SIMD row paths against the scalar rule.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quant/fp16.h"

namespace moeserve {
namespace {

TEST(QuantFp16, decode_is_exact_and_both_paths_agree_on_all_65536_patterns) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float soft = fp16_to_fp32_soft(static_cast<uint16_t>(h));
        const float fast = fp16_to_fp32(static_cast<uint16_t>(h));
        ASSERT_EQ(f32_bits(soft), f32_bits(fast)) << std::hex << h;
        const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
        if (exp != 0x1F) {
            // value = (-1)^s * 2^(e-15) * (1 + m/1024), or m * 2^-24 for subnormals
            const double expect =
                exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, static_cast<int>(exp) - 25);
            ASSERT_EQ(static_cast<double>(soft), (h & 0x8000) ? -expect : expect) << std::hex << h;
        } else {
            ASSERT_EQ(std::isnan(soft), mant != 0) << std::hex << h;
        }
    }
}

TEST(QuantFp16, encode_round_trips_every_half_and_maps_nan_to_7e00) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_to_fp32_soft(static_cast<uint16_t>(h));
        const bool nan = ((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF);
        const uint16_t expect = nan ? static_cast<uint16_t>((h & 0x8000) | 0x7E00) : static_cast<uint16_t>(h);
        ASSERT_EQ(fp32_to_fp16_soft(f), expect) << std::hex << h;
        ASSERT_EQ(fp32_to_fp16(f), expect) << std::hex << h;
    }
}

TEST(QuantFp16, encode_rounds_ties_to_even_and_overflows_to_infinity) {
    // 1 + 2^-11 is halfway between 1 (even) and 1 + 2^-10: down.
    EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f), 0x3C00);
    // 1 + 3*2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9: up.
    EXPECT_EQ(fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3C02);
    EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    // Subnormal ties: 2^-25 -> 0, 3*2^-25 -> 2*2^-24.
    EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);
    EXPECT_EQ(fp32_to_fp16(3 * 0x1p-25f), 0x0002);
    EXPECT_EQ(fp32_to_fp16(-3 * 0x1p-25f), 0x8002);
    EXPECT_EQ(fp32_to_fp16(0x1p-26f), 0x0000);
    // Largest subnormal rounding up into the smallest normal.
    EXPECT_EQ(fp32_to_fp16(0x1p-14f - 0x1p-26f), 0x0400);
    // 65504 is the largest half; 65520 (the tie with 2^16) goes to infinity.
    EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7BFF);
    EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7BFF);
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);
    EXPECT_EQ(fp32_to_fp16(-1e10f), 0xFC00);
    EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7C00);
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_fp16(f32_from_bits(0xFFC12345u)), 0xFE00);
    EXPECT_EQ(fp32_to_fp16_soft(f32_from_bits(0x7F800001u)), 0x7E00);
}

TEST(QuantBf16, encode_rounds_ties_to_even_and_quiets_nan) {
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x3F808000u)), 0x3F80);  // tie, even stays
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x3F818000u)), 0x3F82);  // tie, odd rounds up
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x3F808001u)), 0x3F81);
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to inf
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x7F800001u)), 0x7FC0);  // signalling NaN made quiet
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0xFFC00001u)), 0xFFC0);
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x00018000u)), 0x0002);  // subnormals are not flushed
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = bf16_to_fp32(static_cast<uint16_t>(h));
        ASSERT_EQ(f32_bits(f), h << 16);
        if (!std::isnan(f)) {
            ASSERT_EQ(fp32_to_bf16(f), h);
        }
    }
}

TEST(QuantFp16, row_conversions_match_the_scalar_rule) {
    std::mt19937 rng(7);
    std::vector<float> x(4099);
    for (auto& v : x) v = f32_from_bits(static_cast<uint32_t>(rng()));  // every class: NaN, inf, subnormal
    for (size_t i = 0; i < 200; ++i) x[i] = 65504.0f + static_cast<float>(i) * 0.25f;
    std::vector<uint16_t> h(x.size()), b(x.size());
    fp32_to_fp16_row(x.data(), h.data(), static_cast<int64_t>(x.size()));
    fp32_to_bf16_row(x.data(), b.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(h[i], fp32_to_fp16_soft(x[i])) << i;
        ASSERT_EQ(b[i], fp32_to_bf16(x[i])) << i;
    }
    std::vector<uint16_t> all(65536);
    for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
    std::vector<float> f(65536), g(65536);
    fp16_to_fp32_row(all.data(), f.data(), 65536);
    bf16_to_fp32_row(all.data(), g.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        ASSERT_EQ(f32_bits(f[i]), f32_bits(fp16_to_fp32_soft(static_cast<uint16_t>(i))));
        ASSERT_EQ(f32_bits(g[i]), i << 16);
    }
}

}  // namespace
}  // namespace moeserve
