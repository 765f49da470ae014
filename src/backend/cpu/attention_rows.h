// The per-row pieces of GQA attention over a KV cache that the general
// path (cpu_attention.cpp) and the split path (cpu_attention_split.cpp)
// share: the Hadamard rotation of a quantized cache, the f32 dot, a cached
// row as f32, the V sum over converted rows, and prefetching.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/x86_intrinsics.h"
#include "quant/dequantize.h"
#include "quant/fp16.h"
#include "quant/ggml_type.h"

namespace moeserve {

inline void rotate_chunks(float* x, int64_t n, int chunk) {
    for (int64_t i = 0; i + chunk <= n; i += chunk) hadamard_transform(x + i, chunk);
}

// Σ a[i]*b[i] in f32.
inline float dot_f32(const float* a, const float* b, int n) {
    int i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    s = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__)
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// One head's row of K or V as f32: in place for F32, converted otherwise.
inline const float* row_as_f32(GgmlType type, const uint8_t* src, float* buf, int n) {
    switch (type) {
        case GgmlType::F32:
            return reinterpret_cast<const float*>(src);
        case GgmlType::F16:
            fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), buf, n);
            return buf;
        case GgmlType::BF16:
            bf16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), buf, n);
            return buf;
        default:
            dequantize_row(type, src, buf, n);
            return buf;
    }
}

// a[0..dv) += Σ_c p[c] * v[c][0..dv) over n rows of v (row stride dv).
inline void accumulate_rows(float* a, const float* p, const float* v, int64_t n, int dv) {
#if defined(__AVX512F__)
    if (dv == 128) {  // the whole accumulator in 8 registers
        __m512 r[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_ps(a + 16 * i);
        for (int64_t c = 0; c < n; ++c) {
            const __m512 pc = _mm512_set1_ps(p[c]);
            const float* vc = v + c * 128;
            for (int i = 0; i < 8; ++i) r[i] = _mm512_fmadd_ps(pc, _mm512_loadu_ps(vc + 16 * i), r[i]);
        }
        for (int i = 0; i < 8; ++i) _mm512_storeu_ps(a + 16 * i, r[i]);
        return;
    }
#endif
    for (int64_t c = 0; c < n; ++c)
        for (int i = 0; i < dv; ++i) a[i] += p[c] * v[c * dv + i];
}

inline void prefetch_bytes(const uint8_t* p, size_t n) {
#if defined(__x86_64__)
    for (size_t off = 0; off < n; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
#endif
}

inline bool is_float_type(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

}  // namespace moeserve
