// AVX-512 (F/BW/VL + VNNI) dot-product kernels for the formats that carry
// most of the weight bytes in K-quant and IQ4_XS files: Q4_K, Q5_K, Q6_K, IQ4_XS,
// plus F16; the Q8_0-partner formats (Q8_0, Q4_0, Q5_0, IQ4_NL) are in
// vec_dot_avx512_q8_0.cpp. Every other type uses its AVX2 kernel. (An earlier
// Q4_K form that re-paired lanes with shuffles measured slower than AVX2 on
// the Xeon; the one below needs none.)
//
// A 512-bit register holds two 32-element sub-blocks; lanes 0..7 of an int32
// result belong to the first, lanes 8..15 to the second.
// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_*()
// placeholders of intrinsics such as _mm512_cvtph_ps); the warnings are false.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "quant/vec_dot_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "quant/block_formats.h"
#include "quant/fp16.h"
#include "quant/hsum.h"
#include "quant/k4_scales.h"

namespace moeserve::detail {
namespace {

inline __m512i load512(const void* p) {
    return _mm512_loadu_si512(p);
}
inline __m256i load256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m128i load128(const void* p) {
    return _mm_loadu_si128(static_cast<const __m128i*>(p));
}

// The two 256-bit halves of 16 int32 lanes added: lane l + lane l + 8 (exact).
inline __m256i fold_halves(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// 16 int32 lanes, each Σ of 4 adjacent products u*s (u unsigned, s signed).
inline __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
#if defined(__AVX512VNNI__)
    return _mm512_dpbusd_epi32(acc, u, s);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}

// ---------------------------------------------------------------- float types

float dot_f16(const void* vw, const void* va, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(vw);
    const uint16_t* a = static_cast<const uint16_t*>(va);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(w + i)), _mm512_cvtph_ps(load256(a + i)), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(w + i + 16)), _mm512_cvtph_ps(load256(a + i + 16)), acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; ++i) sum += fp16_to_fp32(w[i]) * fp16_to_fp32(a[i]);
    return sum;
}

// Four activation rows against one weight row: each weight slice converted
// once, every row's sums exactly dot_f16's (the same two lane accumulators,
// the same tree, the same tail).
void dot4_f16(const void* vw, const void* const va[4], float out[4], int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(vw);
    const uint16_t* a[4];
    __m512 acc0[4], acc1[4];
    for (int k = 0; k < 4; ++k) {
        a[k] = static_cast<const uint16_t*>(va[k]);
        acc0[k] = acc1[k] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 w0 = _mm512_cvtph_ps(load256(w + i)), w1 = _mm512_cvtph_ps(load256(w + i + 16));
        for (int k = 0; k < 4; ++k) {
            acc0[k] = _mm512_fmadd_ps(w0, _mm512_cvtph_ps(load256(a[k] + i)), acc0[k]);
            acc1[k] = _mm512_fmadd_ps(w1, _mm512_cvtph_ps(load256(a[k] + i + 16)), acc1[k]);
        }
    }
    for (int k = 0; k < 4; ++k) {
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0[k], acc1[k]));
        for (int64_t j = i; j < n; ++j) sum += fp16_to_fp32(w[j]) * fp16_to_fp32(a[k][j]);
        out[k] = sum;
    }
}

#if defined(__AVX512VNNI__)

// A 512-bit int16 vector: a in the low 256 bits, b in the high 256 bits.
inline __m512i halves_i16(int a, int b) {
    return _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(static_cast<int16_t>(a)),
                                   _mm512_set1_epi16(static_cast<int16_t>(b)));
}

// ---------------------------------------------------------------- Q4_K and Q5_K

// VPSHUFB selectors that turn the 8 sub-block scales as int16 (in every
// 128-bit lane) into [scale 2c x 16 | scale 2c + 1 x 16].
inline __m512i k4_scale_pick(int c) {
    alignas(64) uint8_t sel[64];
    for (int b = 0; b < 64; ++b) sel[b] = static_cast<uint8_t>(2 * (2 * c + (b >= 32)) + (b & 1));
    return _mm512_load_si512(sel);
}

// qs[32c + l] holds sub-block 2c (low nibble) and 2c+1 (high nibble) at
// position l: the 32 bytes broadcast to both 256-bit halves, the high half
// shifted, are [sub-block 2c | 2c+1], the order of their 64 activations, so
// one VPMADDUBSW and one VPDPWSSD (the pairs times [sc_2c | sc_2c+1]) do the
// AVX2 kernel's two of each. Q5_K adds qh: bit b of qh[l] is the 5th bit of
// sub-block b at position l, and with qh broadcast to both halves one 16-bit
// variable shift by [2c | 2c + 1] brings both sub-blocks' bits down at once.
// Lanes l and l + 8 added as integers (exact) are the AVX2 kernel's lane l;
// the float work after them is its own (Q4_K: the lanes' FMAs, four min
// lanes and the tree; Q5_K: the lanes and one scalar chain of min terms), so
// the result is the AVX2 kernel's bit for bit. R activation rows against one
// weight row, the weight unpacked once (R = 4: dot4; 2, 3: a few slots).
template <int R, typename Block>
void k4_rows(const void* vw, const void* const va[], float out[], int64_t n) {
    constexpr bool kFifthBit = std::is_same_v<Block, BlockQ5_K>;
    const Block* x = static_cast<const Block*>(vw);
    const BlockQ8_K* y[R];
    for (int k = 0; k < R; ++k) y[k] = static_cast<const BlockQ8_K*>(va[k]);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i one = _mm512_set1_epi8(1);
    __m512i pick[4], shift[4];
    for (int c = 0; c < 4; ++c) {
        pick[c] = k4_scale_pick(c);
        shift[c] = halves_i16(2 * c, 2 * c + 1);
    }
    __m256 acc[R];
    __m128 acc_min[R];  // Q4_K
    float summs[R];     // Q5_K
    for (int k = 0; k < R; ++k) {
        acc[k] = _mm256_setzero_ps();
        acc_min[k] = _mm_setzero_ps();
        summs[k] = 0.0f;
    }
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        alignas(16) uint8_t sm[16];
        unpack_k4_scales(x[i].scales, sm);
        const __m512i sc16 =
            _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm))));
        __m512i qh;
        if constexpr (kFifthBit) qh = _mm512_broadcast_i64x4(load256(x[i].qh));
        __m512i sumi[R];
        for (int k = 0; k < R; ++k) sumi[k] = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
            const __m512i q = _mm512_broadcast_i64x4(load256(x[i].qs + 32 * c));
            __m512i u = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4), m4);
            if constexpr (kFifthBit)
                u = _mm512_or_si512(u, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift[c]), one), 4));
            const __m512i sc = _mm512_shuffle_epi8(sc16, pick[c]);
            for (int k = 0; k < R; ++k)
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(u, load512(y[k][i].qs + 64 * c)), sc);
        }
        const float dw = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int k = 0; k < R; ++k) {
            const float d8 = y[k][i].d;
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d8 * dw), _mm256_cvtepi32_ps(fold_halves(sumi[k])), acc[k]);
            if constexpr (kFifthBit)  // as ggml writes it: summs += dmin * isum, dmin = -d8 * dmin_x, fused
                summs[k] = std::fma(-d8 * dmin, static_cast<float>(k4_min_term(y[k][i].bsums, sm + 8)), summs[k]);
            else
                acc_min[k] = k4_min_lanes(acc_min[k], y[k][i].bsums, sm + 8, -d8 * dmin);
        }
    }
    for (int k = 0; k < R; ++k) out[k] = hsum8(acc[k]) + (kFifthBit ? summs[k] : k4_min_reduce(acc_min[k]));
}

template <typename Block>
float dot_k4(const void* vw, const void* va, int64_t n) {
    const void* rows[1] = {va};
    float out;
    k4_rows<1, Block>(vw, rows, &out, n);
    return out;
}

template <typename Block>
void dot4_k4(const void* vw, const void* const va[4], float out[4], int64_t n) {
    k4_rows<4, Block>(vw, va, out, n);
}

// ---------------------------------------------------------------- Q6_K

// Per 128-element half: ql (64 bytes) and qh broadcast to both 256-bit halves.
// Low nibbles + qh bit pairs (0 | 2) are groups 0,1; high nibbles + pairs (4 | 6)
// are groups 2,3. Codes are unsigned 0..63; the -32 is applied via bsums, in
// the AVX2 kernel's lanes (see there).
// R weight-row x activation-row dots at once: the weight block is unpacked
// once, and every row's result is computed with the same operations in the
// same order as for R = 1, so the four-row kernel equals four single dots.
template <int R>
void q6_k_rows(const void* vw, const void* const va[], float out[], int64_t n) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vw);
    const BlockQ8_K* y[R];
    for (int k = 0; k < R; ++k) y[k] = static_cast<const BlockQ8_K*>(va[k]);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i shift_lo = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i shift_hi = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(6));
    // 16 elements per scale = 4 int32 lanes per scale: lane k of the result
    // for groups (0,1) of half h uses scale 8h + k/4, for groups (2,3) 8h + 4 + k/4.
    __m512i scale_idx[4];
    for (int j = 0; j < 4; ++j) {
        alignas(64) int32_t idx[16];
        for (int k = 0; k < 16; ++k) idx[k] = 4 * j + k / 4;
        scale_idx[j] = _mm512_load_si512(idx);
    }
    __m256 acc[R];
    for (int k = 0; k < R; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const __m128i sc8 = load128(x[i].scales);
        const __m512i sc32 = _mm512_cvtepi8_epi32(sc8);
        __m512i sumi[R];
        for (int k = 0; k < R; ++k) {
            // Offset term Σ_k sc_k * bsum_k (times 32 below), 8 int32 lanes.
            const __m256i offset = _mm256_madd_epi16(load256(y[k][i].bsums), _mm256_cvtepi8_epi16(sc8));
            sumi[k] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(_mm256_slli_epi32(offset, 5)));
        }
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = load512(x[i].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(load256(x[i].qh + 32 * h));
            const __m512i hb_lo = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), m3), 4);
            const __m512i hb_hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), m3), 4);
            const __m512i q01 = _mm512_or_si512(_mm512_and_si512(ql, m4), hb_lo);
            const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hb_hi);
            // Each lane's scale as an int16 with a zero high half: a lane's
            // 4-product sum (|p| <= 4·63·127 < 2^15) is its own low int16, so
            // VPDPWSSD adds p·scale exactly (one uop for VPMULLD's two and the add).
            const __m512i low16 = _mm512_set1_epi32(0xFFFF);
            const __m512i s01 = _mm512_and_si512(_mm512_permutexvar_epi32(scale_idx[2 * h], sc32), low16);
            const __m512i s23 = _mm512_and_si512(_mm512_permutexvar_epi32(scale_idx[2 * h + 1], sc32), low16);
            for (int k = 0; k < R; ++k) {
                const __m512i p01 = dot_u8s8(_mm512_setzero_si512(), q01, load512(y[k][i].qs + 128 * h));
                const __m512i p23 = dot_u8s8(_mm512_setzero_si512(), q23, load512(y[k][i].qs + 128 * h + 64));
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], p01, s01);
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], p23, s23);
            }
        }
        // Lanes l and l + 8 hold the same elements of the two groups: added as integers
        // (exact) they are the AVX2 kernel's lane l, and the float work is its.
        const float dw = fp16_to_fp32(x[i].d);
        for (int k = 0; k < R; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y[k][i].d), _mm256_cvtepi32_ps(fold_halves(sumi[k])), acc[k]);
    }
    for (int k = 0; k < R; ++k) out[k] = hsum8(acc[k]);
}

float dot_q6_k(const void* vw, const void* va, int64_t n) {
    const void* rows[1] = {va};
    float out;
    q6_k_rows<1>(vw, rows, &out, n);
    return out;
}

void dot4_q6_k(const void* vw, const void* const va[4], float out[4], int64_t n) {
    q6_k_rows<4>(vw, va, out, n);
}

// ---------------------------------------------------------------- IQ4_XS

// 64 bytes of qs = sub-blocks 4k..4k+3, 16 bytes each. Interleaving the
// 128-bit lanes of the low and high nibbles gives [lo ib | hi ib] per
// sub-block, matching the activations. The looked-up codebook values are
// signed, so the products use the sign trick (|v| * ±a, exact since a != -128);
// pair sums fit int16 (2*127*127) and VPMADDWD applies (ls - 32).
template <int R>
void iq4_xs_rows(const void* vw, const void* const va[], float out[], int64_t n) {
    const BlockIQ4_XS* x = static_cast<const BlockIQ4_XS*>(vw);
    const BlockQ8_K* y[R];
    for (int k = 0; k < R; ++k) y[k] = static_cast<const BlockQ8_K*>(va[k]);
    const __m512i values = _mm512_broadcast_i32x4(load128(kIq4nlValues));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i idx0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i idx1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    auto signed_pairs = [](__m512i v, __m512i a) {
        const __mmask64 neg = _mm512_movepi8_mask(v);
        return _mm512_maddubs_epi16(_mm512_abs_epi8(v), _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a));
    };
    __m256 acc[R];
    for (int k = 0; k < R; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int ls[8];
        for (int ib = 0; ib < 8; ++ib)
            ls[ib] =
                (((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4)) - 32;
        __m512i sumi[R];
        for (int k = 0; k < R; ++k) sumi[k] = _mm512_setzero_si512();
        for (int half = 0; half < 2; ++half) {
            const __m512i q = load512(x[i].qs + 64 * half);
            const __m512i lo = _mm512_and_si512(q, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            const __m512i v0 = _mm512_shuffle_epi8(values, _mm512_permutex2var_epi64(lo, idx0, hi));
            const __m512i v1 = _mm512_shuffle_epi8(values, _mm512_permutex2var_epi64(lo, idx1, hi));
            const int b = 4 * half;
            const __m512i s0 = halves_i16(ls[b], ls[b + 1]), s1 = halves_i16(ls[b + 2], ls[b + 3]);
            for (int k = 0; k < R; ++k) {
                const __m512i p0 = signed_pairs(v0, load512(y[k][i].qs + 32 * b));
                const __m512i p1 = signed_pairs(v1, load512(y[k][i].qs + 32 * b + 64));
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], p0, s0);  // += madd(p0, s0), exact
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], p1, s1);
            }
        }
        // ggml's order: the even and odd sub-blocks' lanes added as integers (exact), then
        // one eight-lane accumulator and hsum, as the AVX2 kernel.
        const float dw = fp16_to_fp32(x[i].d);
        for (int k = 0; k < R; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y[k][i].d), _mm256_cvtepi32_ps(fold_halves(sumi[k])), acc[k]);
    }
    for (int k = 0; k < R; ++k) out[k] = hsum8(acc[k]);
}

float dot_iq4_xs(const void* vw, const void* va, int64_t n) {
    const void* rows[1] = {va};
    float out;
    iq4_xs_rows<1>(vw, rows, &out, n);
    return out;
}

void dot4_iq4_xs(const void* vw, const void* const va[4], float out[4], int64_t n) {
    iq4_xs_rows<4>(vw, va, out, n);
}

#endif  // __AVX512VNNI__

}  // namespace

VecDot4Fn vec_dot4_avx512_kernel(GgmlType type) {
    switch (type) {
        case GgmlType::F16:
            return dot4_f16;
#if defined(__AVX512VNNI__)
        case GgmlType::Q4_K:
            return dot4_k4<BlockQ4_K>;
        case GgmlType::Q5_K:
            return dot4_k4<BlockQ5_K>;
        case GgmlType::Q6_K:
            return dot4_q6_k;
        case GgmlType::IQ4_XS:
            return dot4_iq4_xs;
#endif
        default:  // the Q8_0 partners use the AVX2 kernels (vec_dot_avx512_q8_0.cpp says why)
            return nullptr;
    }
}

VecDotFewFn vec_dot_few_avx512_kernel(GgmlType type, int count) {
#if defined(__AVX512VNNI__)
    const bool two = count == 2;
    if (count != 2 && count != 3) return nullptr;
    switch (type) {
        case GgmlType::Q4_K:
            return two ? k4_rows<2, BlockQ4_K> : k4_rows<3, BlockQ4_K>;
        case GgmlType::Q5_K:
            return two ? k4_rows<2, BlockQ5_K> : k4_rows<3, BlockQ5_K>;
        case GgmlType::Q6_K:
            return two ? q6_k_rows<2> : q6_k_rows<3>;
        case GgmlType::IQ4_XS:
            return two ? iq4_xs_rows<2> : iq4_xs_rows<3>;
        default:
            break;
    }
#endif
    (void)type, (void)count;
    return nullptr;
}

VecDotFn vec_dot_avx512_kernel(GgmlType type) {
    switch (type) {
        case GgmlType::F16:
            return dot_f16;
#if defined(__AVX512VNNI__)
        case GgmlType::Q4_K:
            return dot_k4<BlockQ4_K>;
        case GgmlType::Q5_K:
            return dot_k4<BlockQ5_K>;
        case GgmlType::Q6_K:
            return dot_q6_k;
        case GgmlType::IQ4_XS:
            return dot_iq4_xs;
#endif
        default:
            return nullptr;
    }
}

}  // namespace moeserve::detail

#endif  // AVX-512 F/BW/VL
