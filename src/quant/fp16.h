// Half-precision conversions, bit-exact with ggml's reference rules
// (../shared/spec/quant-formats.md §0):
//
//   fp16 -> f32   exact (subnormals, ±inf; a NaN stays a NaN, made quiet,
//                 payload kept, exactly as the F16C instruction does)
//   f32 -> fp16   round to nearest, ties to even; overflow gives ±inf;
//                 any NaN becomes sign | 0x7E00 (the software rule; F16C
//                 would keep the payload, so its NaN lanes are patched)
//   bf16 -> f32   bits << 16
//   f32 -> bf16   NaN -> (bits >> 16) | 0x0040, else round to nearest even
//                 (AVX512-BF16's VCVTNEPS2BF16 flushes subnormals, so it is
//                 not used)
//
// The scalar functions are inline; the row functions use F16C/AVX2 where
// the build has them and give the same bits as the scalar path.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace moeserve {

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Portable decode. NaNs get the quiet bit set (as F16C does), so both paths
// agree bit for bit on all 65536 inputs.
inline float fp16_to_fp32_soft(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
    if (exp == 0) {
        // Zero or subnormal: mant * 2^-24, exact in float32.
        const float v = static_cast<float>(mant) * 0x1p-24f;
        return f32_from_bits(sign | f32_bits(v));
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Portable encode: round to nearest even.
inline uint16_t fp32_to_fp16_soft(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return sign | 0x7E00u;  // NaN
    // 65520 is halfway between 65504 (max half, odd mantissa) and 2^16:
    // it and everything above round to infinity.
    if (ax >= 0x477FF000u) return sign | 0x7C00u;
    if (ax < 0x38800000u) {
        // Below the smallest normal half (2^-14): adding 0.5 puts the value's
        // 2^-24 units into the low mantissa bits of a float whose ulp is
        // 2^-24, so the FPU does the ties-to-even rounding. 0x400 (a carry)
        // is the correct encoding of the smallest normal.
        const float t = f32_from_bits(ax) + 0.5f;
        return sign | static_cast<uint16_t>(f32_bits(t) - 0x3F000000u);
    }
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits,
    // ties to even; a carry into the exponent is the right result.
    const uint32_t odd = (ax >> 13) & 1u;
    ax += 0xC8000FFFu + odd;
    return sign | static_cast<uint16_t>(ax >> 13);
}

inline float fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return fp16_to_fp32_soft(h);
#endif
}

inline uint16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
    if ((f32_bits(f) & 0x7FFFFFFFu) > 0x7F800000u)
        return static_cast<uint16_t>(((f32_bits(f) >> 16) & 0x8000u) | 0x7E00u);
    return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
#else
    return fp32_to_fp16_soft(f);
#endif
}

inline float bf16_to_fp32(uint16_t h) {
    return f32_from_bits(static_cast<uint32_t>(h) << 16);
}

inline uint16_t fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Row conversions (the same bits as the scalar functions above).
void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);
void bf16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_bf16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace moeserve
