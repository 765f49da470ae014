// The sum of 8 float lanes in ggml's hsum_float_8 tree: (l + l+4), then
// (+2), then (+1). Every x86 dot-product kernel ends with it, so that its
// last float additions are llama.cpp's (see vec_dot_avx2.cpp).
#pragma once

#if defined(__AVX__)
#include <immintrin.h>

namespace moeserve::detail {

inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

}  // namespace moeserve::detail

#endif  // __AVX__
