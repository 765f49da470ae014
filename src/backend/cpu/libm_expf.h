// expf with the results of the C library's expf (glibc 2.28 and later), 16
// lanes at a time, for the arguments softmax gives it (x ≤ 0).
//
// Why: llama.cpp's flash-attention path for quantized caches takes e^(s - M)
// with the scalar expf once per score; an attention that is to give the
// same bits needs the same exponentials, and one expf call per score costs
// more than the rest of the softmax. The library's algorithm (ARM's
// optimized-routines expf) is: k = round(x·32/ln2), r = x·32/ln2 - k in
// double, 2^(k/32) from a 32-entry table of 2^(i/32), 2^(r/32) by a cubic, the
// product rounded to float once. Done in the same double operations here (the
// FMA build of the library fuses the same three multiply-adds), it rounds to
// the same float; libm_expf_test checks every float in [-104, 0].
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moeserve {

namespace libm_expf_detail {

inline constexpr int kTableBits = 5;
inline constexpr int kN = 1 << kTableBits;
inline constexpr double kInvLn2N = 0x1.71547652b82fep+0 * kN;  // 32/ln 2
inline constexpr double kShift = 0x1.8p+52;                    // adding it rounds to an integer
// 2^(r/32) ≈ 1 + C2·r + C1·r² + C0·r³ for |r| ≤ 1/2.
inline constexpr double kC0 = 0x1.c6af84b912394p-5 / kN / kN / kN;
inline constexpr double kC1 = 0x1.ebfce50fac4f3p-3 / kN / kN;
inline constexpr double kC2 = 0x1.62e42ff0c52d6p-1 / kN;
inline constexpr float kUnderflow = -0x1.9fe368p6f;  // below: e^x < 2^-150, rounds to 0

// bits(2^(i/32)) - (i << 47): adding k << 47 for k ≡ i (mod 32) gives 2^(k/32).
struct Table {
    uint64_t bits[kN];
    Table() {
        for (int i = 0; i < kN; ++i) {
            const double v = static_cast<double>(std::exp2l(static_cast<long double>(i) / kN));
            uint64_t b;
            std::memcpy(&b, &v, sizeof b);
            bits[i] = b - (static_cast<uint64_t>(i) << (52 - kTableBits));
        }
    }
};
inline const Table& table() {
    static const Table t;
    return t;
}

}  // namespace libm_expf_detail

// One value, operation for operation as the vector form.
inline float libm_expf(float x) {
    using namespace libm_expf_detail;
    if (!(x >= kUnderflow)) return 0.0f;  // also -inf
    const double z = kInvLn2N * static_cast<double>(x);
    double kd = z + kShift;
    uint64_t ki;
    std::memcpy(&ki, &kd, sizeof ki);
    kd -= kShift;
    const double r = z - kd;
    const uint64_t t = table().bits[ki % kN] + (ki << (52 - kTableBits));
    double s;
    std::memcpy(&s, &t, sizeof s);
    const double p = std::fma(kC0, r, kC1);
    const double r2 = r * r;
    double y = std::fma(kC2, r, 1.0);
    y = std::fma(p, r2, y);
    return static_cast<float>(y * s);
}

#if defined(__AVX512F__)
namespace libm_expf_detail {
// Eight lanes in double.
inline __m256 expf8(__m256 xf) {
    const Table& tab = table();
    const __m512d x = _mm512_cvtps_pd(xf);
    const __m512d z = _mm512_mul_pd(_mm512_set1_pd(kInvLn2N), x);
    const __m512d kd_shifted = _mm512_add_pd(z, _mm512_set1_pd(kShift));
    const __m512i ki = _mm512_castpd_si512(kd_shifted);
    const __m512d r = _mm512_sub_pd(z, _mm512_sub_pd(kd_shifted, _mm512_set1_pd(kShift)));
    // table[ki % 32]: two 16-entry lookups, chosen by bit 4.
    const __m512i lo = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab.bits), ki, _mm512_loadu_si512(tab.bits + 8));
    const __m512i hi =
        _mm512_permutex2var_epi64(_mm512_loadu_si512(tab.bits + 16), ki, _mm512_loadu_si512(tab.bits + 24));
    const __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    const __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, lo, hi), _mm512_slli_epi64(ki, 52 - kTableBits));
    const __m512d p = _mm512_fmadd_pd(_mm512_set1_pd(kC0), r, _mm512_set1_pd(kC1));
    const __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(_mm512_set1_pd(kC2), r, _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(p, r2, y);
    return _mm512_cvtpd_ps(_mm512_mul_pd(y, _mm512_castsi512_pd(t)));
}
}  // namespace libm_expf_detail

// Sixteen values, each libm_expf(x[i]).
inline __m512 libm_expf16(__m512 x) {
    using namespace libm_expf_detail;
    const __m256 lo = expf8(_mm512_castps512_ps256(x));
    const __m256 hi = expf8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    const __m512 y =
        _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
    // Below the underflow bound (and -inf, and NaN) the result is 0.
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(kUnderflow), _CMP_GE_OQ), y);
}
#endif

}  // namespace moeserve
