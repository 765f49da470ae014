// Vectorized f32 math for the attention softmax. A depth-8192 decode step
// of a 32-head, 4-layer model takes a million exponentials: scalar expf
// alone costs more than reading the q4_0 cache they weight.
//
// The AVX-512 exp is about one ulp from expf for results that are normal
// floats and 0 below that (shared by the attention and MLA kernels); builds
// without AVX-512 run the same operations one value at a time, so softmax
// weights do not depend on the vector width.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moeserve {

#if defined(__AVX512F__)
// exp(x) = 2^n · e^r, n = round(x·log2 e), r = x - n·ln2 (ln2 split in two
// for exactness), e^r from its degree-7 Taylor polynomial. Results that
// would not be a normal float (x < -87, -inf included) are 0: denormal
// weights would make every later multiply-add take a slow microcode path.
inline __m512 exp_ps(__m512 x) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.7f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(p, n));
}
#endif

// exp_ps for one value, operation for operation (an FMA is an FMA, rounding
// to nearest even is rounding to nearest even, scalef is an exact power of
// two for the normal results kept), for builds without AVX-512.
inline float exp_ps_lane(float x) {
    if (!(x >= -87.0f)) return 0.0f;  // below -87 (and NaN, as the mask leaves it) is 0
    x = std::min(x, 88.7f);
    const float n = std::nearbyint(x * 1.44269504088896341f);
    float r = std::fma(-n, 0.693359375f, x);
    r = std::fma(-n, -2.12194440e-4f, r);
    float p = 1.0f / 5040;
    p = std::fma(p, r, 1.0f / 720);
    p = std::fma(p, r, 1.0f / 120);
    p = std::fma(p, r, 1.0f / 24);
    p = std::fma(p, r, 1.0f / 6);
    p = std::fma(p, r, 0.5f);
    p = std::fma(p, r, 1.0f);
    p = std::fma(p, r, 1.0f);
    return std::ldexp(p, static_cast<int>(n));
}

// Σ of 16 lanes in _mm512_reduce_add_ps's tree (GCC's): halves, quarters,
// then (0 + 2) + (1 + 3).
inline float reduce_add_16(const float v[16]) {
    float h[8], q[4];
    for (int i = 0; i < 8; ++i) h[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; ++i) q[i] = h[i + 4] + h[i];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

// x[i] := exp(x[i] - m) for i < n; returns their sum.
inline float exp_shifted_sum(float* x, int64_t n, float m) {
    int64_t i = 0;
    float sum = 0.0f;
#if defined(__AVX512F__)
    const __m512 vm = _mm512_set1_ps(m);
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {  // the tail under a mask
        const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
        i = n;
    }
    sum = _mm512_reduce_add_ps(acc);
#else
    // The same values and the same sums lane by lane, in the same tree.
    float lane[16] = {};
    for (; i < n; ++i) {
        x[i] = exp_ps_lane(x[i] - m);
        lane[i % 16] += x[i];
    }
    sum = reduce_add_16(lane);
#endif
    return sum;
}

inline float max_of(const float* x, int64_t n) {
    float mx = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512 v = _mm512_set1_ps(mx);
    for (; i + 16 <= n; i += 16) v = _mm512_max_ps(v, _mm512_loadu_ps(x + i));
    mx = _mm512_reduce_max_ps(v);
#endif
    for (; i < n; ++i) mx = std::max(mx, x[i]);
    return mx;
}

// x := softmax(x) over n values (all zero when the sum is zero).
inline void softmax_inplace(float* x, int64_t n) {
    if (n <= 0) return;
    const float sum = exp_shifted_sum(x, n, max_of(x, n));
    const float inv = sum > 0 ? 1.0f / sum : 0.0f;
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace moeserve
