// The packed 6-bit sub-block scales and mins of Q4_K/Q5_K super-blocks.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace moeserve::detail {

// The 12 scale bytes as bytes: sc[0..7] then m[0..7] (spec §2.10).
inline void unpack_k4_scales(const uint8_t* s, uint8_t out[16]) {
    uint32_t u[3];
    std::memcpy(u, s, 12);
    const uint32_t sc03 = u[0] & 0x3f3f3f3f;
    const uint32_t m03 = u[1] & 0x3f3f3f3f;
    const uint32_t sc47 = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
    const uint32_t m47 = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
    const uint32_t packed[4] = {sc03, sc47, m03, m47};
    std::memcpy(out, packed, 16);
}

#if defined(__AVX2__) && defined(__FMA__)

// Σ_b m_b * (bsums[2b] + bsums[2b+1]): the min term of Q5_K, an integer.
inline int k4_min_term(const int16_t* bsums, const uint8_t* mins) {
    const __m128i pair = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bsums)),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(bsums + 8)));
    const __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mins)));
    __m128i s = _mm_madd_epi16(pair, m);
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// The Q4_K min term as ggml's AVX2 kernel sums it: four lanes of
// m_2p*S_2p + m_2p+1*S_2p+1 (S: sums of 32 activations), each accumulated
// with -d8*dmin per super-block, then reduced (l0 + l2) + (l1 + l3) and added
// to the scale sum; in llama.cpp's order, so near-ties in the next
// quantization fall the same way. Shared by the AVX2 and AVX-512 kernels.
inline __m128 k4_min_lanes(__m128 acc, const int16_t* bsums, const uint8_t* mins, float neg_dmin_d8) {
    const __m128i pair = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bsums)),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(bsums + 8)));
    const __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mins)));
    return _mm_fmadd_ps(_mm_set1_ps(neg_dmin_d8), _mm_cvtepi32_ps(_mm_madd_epi16(pair, m)), acc);
}

inline float k4_min_reduce(__m128 acc) {
    acc = _mm_add_ps(acc, _mm_movehl_ps(acc, acc));
    return _mm_cvtss_f32(_mm_add_ss(acc, _mm_movehdup_ps(acc)));
}

#endif

}  // namespace moeserve::detail
