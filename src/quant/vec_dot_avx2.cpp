// AVX2 + FMA dot-product kernels (256-bit). Each block's integer sum is exact
// (byte products summed with VPMADDUBSW/VPMADDWD, or VPDPBUSD when the build
// has AVX-512 VNNI), and block scales are applied with one FMA per block into
// float lanes, as ggml's AVX2 kernels do.
//
// Signed x signed byte products use the sign trick: x*y = |x| * (y*sign(x)),
// which VPMADDUBSW (unsigned x signed) can take. It is exact while no operand
// is -128, which holds for every value ggml's quantizers produce (Q8 codes
// are within ±127, codebooks within -127..113).
#include "quant/vec_dot_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)

#include <immintrin.h>

#include <cmath>

#include <cstring>

#include "quant/block_formats.h"
#include "quant/fp16.h"
#include "quant/hsum.h"
#include "quant/k4_scales.h"

namespace moeserve::detail {
namespace {

inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Eight int32 lanes, each the sum of 4 adjacent products u[k]*s[k] (u unsigned, s signed).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

inline __m256i dot_s8s8(__m256i x, __m256i y) {
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// Sixteen int16 pair sums of u*s, then scaled by a 16-bit factor into 8 int32 lanes.
inline __m256i dot_u8s8_scaled(__m256i u, __m256i s, __m256i scale16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}

// acc + dot_u8s8_scaled(u, s, scale16): with VNNI the scaling multiply and
// the add are one VPDPWSSD (the same exact integers; a port-0/1 uop less).
inline __m256i dot_u8s8_scaled_add(__m256i acc, __m256i u, __m256i s, __m256i scale16) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), scale16);
#else
    return _mm256_add_epi32(acc, dot_u8s8_scaled(u, s, scale16));
#endif
}

// A dword from memory in all eight lanes: VBROADCASTSS, a load-port uop only.
inline __m256i broadcast_dword(const uint32_t* p) {
    return _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(p)));
}

inline __m256i load256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m128i load128(const void* p) {
    return _mm_loadu_si128(static_cast<const __m128i*>(p));
}

// 16 packed nibbles -> 32 bytes: the low nibbles (elements 0..15) then the high ones (16..31).
inline __m256i unpack_nibbles16(const uint8_t* qs) {
    const __m128i q = load128(qs);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Byte j = 0xFF where bit j of the 32-bit mask is set.
inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
    const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// ---------------------------------------------------------------- float types

float dot_f32(const void* vw, const void* va, int64_t n) {
    const float* w = static_cast<const float*>(vw);
    const float* a = static_cast<const float*>(va);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8 * k), _mm256_loadu_ps(a + i + 8 * k), acc[k]);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += w[i] * a[i];
    return sum;
}

float dot_f16(const void* vw, const void* va, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(vw);
    const uint16_t* a = static_cast<const uint16_t*>(va);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(w + i + 8 * k)), _mm256_cvtph_ps(load128(a + i + 8 * k)),
                                     acc[k]);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += fp16_to_fp32(w[i]) * fp16_to_fp32(a[i]);
    return sum;
}

inline __m256 bf16x8(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}

float dot_bf16(const void* vw, const void* va, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(vw);
    const uint16_t* a = static_cast<const uint16_t*>(va);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(bf16x8(w + i + 8 * k), bf16x8(a + i + 8 * k), acc[k]);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += bf16_to_fp32(w[i]) * bf16_to_fp32(a[i]);
    return sum;
}

// ---------------------------------------------------------------- 32-element blocks

// Σ_blocks d_w*d_a * isum(block), for weight formats whose 32 codes unpack to
// signed bytes (so the activation partner is Q8_0), in ggml's x86 order: the
// eight int32 partial sums of a block (lane l: elements 4l..4l+3) are
// converted and multiply-added into one eight-lane accumulator, block after
// block, and summed by hsum8. (A second accumulator for odd blocks would hide
// FMA latency, but changes the last bits against llama.cpp, and a last bit
// can move a quantization code downstream.)
// R weight-row x activation-row dots at once (R = 1 is the plain kernel):
// each weight block is unpacked once, and every row's result is computed
// with the same operations in the same order as for R = 1.
template <int R, typename Block, typename Unpack>
inline void q8_0_family_rows(const Block* x, const void* const va[], float out[], int64_t nb, Unpack unpack) {
    const BlockQ8_0* y[R];
    for (int k = 0; k < R; ++k) y[k] = static_cast<const BlockQ8_0*>(va[k]);
    __m256 acc[R];
    for (int k = 0; k < R; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m256i w = unpack(x[ib]);
        const float dw = fp16_to_fp32(x[ib].d);
        for (int k = 0; k < R; ++k) {
            const __m256i p = dot_s8s8(w, load256(y[k][ib].qs));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16_to_fp32(y[k][ib].d)), _mm256_cvtepi32_ps(p), acc[k]);
        }
    }
    for (int k = 0; k < R; ++k) out[k] = hsum8(acc[k]);
}

// R weight rows against one activation row: per row the operations of
// q8_0_family_rows<1>, the activation block loaded once for all of them.
template <int R, typename Block, typename Unpack>
inline void q8_0_family_weight_rows(const uint8_t* w, size_t w_row_bytes, const BlockQ8_0* y, float out[], int64_t nb,
                                    Unpack unpack) {
    const Block* x[R];
    for (int r = 0; r < R; ++r) x[r] = reinterpret_cast<const Block*>(w + r * w_row_bytes);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m256i a = load256(y[ib].qs);
        const float da = fp16_to_fp32(y[ib].d);
        for (int r = 0; r < R; ++r) {
            const __m256i p = dot_s8s8(unpack(x[r][ib]), a);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[r][ib].d) * da), _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = hsum8(acc[r]);
}

template <typename Block, typename Unpack>
void q8_0_family_weight_rows_n(const void* w, size_t w_row_bytes, int n_rows, const void* act, float* out, int64_t n,
                               Unpack unpack) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(act);
    switch (n_rows) {
        case 4:
            return q8_0_family_weight_rows<4, Block>(wb, w_row_bytes, y, out, n / kQK, unpack);
        case 3:
            return q8_0_family_weight_rows<3, Block>(wb, w_row_bytes, y, out, n / kQK, unpack);
        case 2:
            return q8_0_family_weight_rows<2, Block>(wb, w_row_bytes, y, out, n / kQK, unpack);
        default:
            return q8_0_family_weight_rows<1, Block>(wb, w_row_bytes, y, out, n / kQK, unpack);
    }
}

// The single-row, four-row and weight-rows kernels of one Q8_0-partner format.
#define MOESERVE_Q8_0_FAMILY(name, Block, make_unpack)                                                        \
    float dot_##name(const void* vw, const void* va, int64_t n) {                                             \
        const void* rows[1] = {va};                                                                           \
        float out;                                                                                            \
        q8_0_family_rows<1>(static_cast<const Block*>(vw), rows, &out, n / kQK, make_unpack());               \
        return out;                                                                                           \
    }                                                                                                         \
    void dot4_##name(const void* vw, const void* const va[4], float out[4], int64_t n) {                      \
        q8_0_family_rows<4>(static_cast<const Block*>(vw), va, out, n / kQK, make_unpack());                  \
    }                                                                                                         \
    void dotw_##name(const void* vw, size_t w_row_bytes, int n_rows, const void* va, float* out, int64_t n) { \
        q8_0_family_weight_rows_n<Block>(vw, w_row_bytes, n_rows, va, out, n, make_unpack());                 \
    }

auto unpack_q8_0() {
    return [](const BlockQ8_0& b) { return load256(b.qs); };
}

// Q4_0 codes: nibble - 8, in -8..7.
auto unpack_q4_0() {
    return [eight = _mm256_set1_epi8(8)](const BlockQ4_0& b) { return _mm256_sub_epi8(unpack_nibbles16(b.qs), eight); };
}

// Q5_0 codes: nibble + 16*bit - 16. With the bit clear that is nibble - 16,
// which as a signed byte is nibble | 0xF0.
auto unpack_q5_0() {
    return [hi = _mm256_set1_epi8(static_cast<char>(0xF0))](const BlockQ5_0& b) {
        const __m256i bit_set = bits_to_bytes(load_u32(b.qh));
        return _mm256_or_si256(unpack_nibbles16(b.qs), _mm256_andnot_si256(bit_set, hi));
    };
}

// IQ4_NL codes: the codebook value of each nibble (a 16-entry byte shuffle).
auto unpack_iq4_nl() {
    return [values = _mm256_broadcastsi128_si256(load128(kIq4nlValues))](const BlockIQ4_NL& b) {
        return _mm256_shuffle_epi8(values, unpack_nibbles16(b.qs));
    };
}

MOESERVE_Q8_0_FAMILY(q8_0, BlockQ8_0, unpack_q8_0)
MOESERVE_Q8_0_FAMILY(q4_0, BlockQ4_0, unpack_q4_0)
MOESERVE_Q8_0_FAMILY(q5_0, BlockQ5_0, unpack_q5_0)
MOESERVE_Q8_0_FAMILY(iq4_nl, BlockIQ4_NL, unpack_iq4_nl)
#undef MOESERVE_Q8_0_FAMILY

// Q4_1 / Q5_1 with Q8_1: unsigned codes, Σ = d_w*d_a*Σ q*q_a + m_w*s_a.
template <typename Block, typename Unpack>
inline float dot_q8_1_family(const Block* x, const BlockQ8_1* y, int64_t nb, Unpack unpack) {
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m256i p = dot_u8s8(unpack(x[ib]), load256(y[ib].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)), _mm256_cvtepi32_ps(p), acc);
        summs += fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
    }
    return hsum8(acc) + summs;
}

float dot_q4_1(const void* vw, const void* va, int64_t n) {
    return dot_q8_1_family(static_cast<const BlockQ4_1*>(vw), static_cast<const BlockQ8_1*>(va), n / kQK,
                           [](const BlockQ4_1& b) { return unpack_nibbles16(b.qs); });
}

float dot_q5_1(const void* vw, const void* va, int64_t n) {
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    return dot_q8_1_family(static_cast<const BlockQ5_1*>(vw), static_cast<const BlockQ8_1*>(va), n / kQK,
                           [&](const BlockQ5_1& b) {
                               const __m256i bit_set = bits_to_bytes(load_u32(b.qh));
                               return _mm256_or_si256(unpack_nibbles16(b.qs), _mm256_and_si256(bit_set, bit4));
                           });
}

// ---------------------------------------------------------------- super-blocks of 256

// Q4_K: qs[32c + l] holds sub-block 2c (low nibble) and 2c+1 (high nibble) at position l.
float dot_q4_k(const void* vw, const void* va, int64_t n) {
    const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_min = _mm_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sm[16];
        unpack_k4_scales(x[i].scales, sm);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i q = load256(x[i].qs + 32 * c);
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            sumi = dot_u8s8_scaled_add(sumi, lo, load256(y[i].qs + 64 * c), _mm256_set1_epi16(sm[2 * c]));
            sumi = dot_u8s8_scaled_add(sumi, hi, load256(y[i].qs + 64 * c + 32), _mm256_set1_epi16(sm[2 * c + 1]));
        }
        const float d8 = y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d8 * fp16_to_fp32(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        acc_min = k4_min_lanes(acc_min, y[i].bsums, sm + 8, -d8 * fp16_to_fp32(x[i].dmin));
    }
    return hsum8(acc) + k4_min_reduce(acc_min);
}

// dot_q4_k against four activation rows: the nibbles and scales of each
// weight block are unpacked once; per row, the operations and their order
// are those of dot_q4_k, so each result is bit-identical to it.
void dot4_q4_k(const void* vw, const void* const va[4], float out[4], int64_t n) {
    const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vw);
    const BlockQ8_K* y[4];
    for (int k = 0; k < 4; ++k) y[k] = static_cast<const BlockQ8_K*>(va[k]);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m128 acc_min[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sm[16];
        unpack_k4_scales(x[i].scales, sm);
        // Each scale as two int16 halves of a dword, so that a broadcast is a
        // plain load (a register broadcast would compete for the shuffle port).
        alignas(32) uint32_t sc2[8];
        const __m256i sc32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(sc2), _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16)));
        __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256()};
        for (int c = 0; c < 4; ++c) {
            const __m256i q = load256(x[i].qs + 32 * c);
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i sc_lo = broadcast_dword(sc2 + 2 * c), sc_hi = broadcast_dword(sc2 + 2 * c + 1);
            for (int k = 0; k < 4; ++k) {
                sumi[k] = dot_u8s8_scaled_add(sumi[k], lo, load256(y[k][i].qs + 64 * c), sc_lo);
                sumi[k] = dot_u8s8_scaled_add(sumi[k], hi, load256(y[k][i].qs + 64 * c + 32), sc_hi);
            }
        }
        const float dw = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int k = 0; k < 4; ++k) {
            const float d8 = y[k][i].d;
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d8 * dw), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
            acc_min[k] = k4_min_lanes(acc_min[k], y[k][i].bsums, sm + 8, -d8 * dmin);
        }
    }
    for (int k = 0; k < 4; ++k) out[k] = hsum8(acc[k]) + k4_min_reduce(acc_min[k]);
}

// Q5_K: as Q4_K, plus bit b of qh[l] = 5th bit of sub-block b at position l.
float dot_q5_k(const void* vw, const void* va, int64_t n) {
    const BlockQ5_K* x = static_cast<const BlockQ5_K*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;  // ggml's name: the min term, negative, summed in float
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sm[16];
        unpack_k4_scales(x[i].scales, sm);
        const __m256i qh = load256(x[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i q = load256(x[i].qs + 32 * c);
            // Bit 2c (2c+1) of each qh byte moved to bit 4; 16-bit shifts are fine
            // because only bit 0 of each byte survives the mask before the left shift.
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            sumi = dot_u8s8_scaled_add(sumi, lo, load256(y[i].qs + 64 * c), _mm256_set1_epi16(sm[2 * c]));
            sumi = dot_u8s8_scaled_add(sumi, hi, load256(y[i].qs + 64 * c + 32), _mm256_set1_epi16(sm[2 * c + 1]));
        }
        const float d8 = y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[i].d) * d8), _mm256_cvtepi32_ps(sumi), acc);
        // As ggml writes it (summs += dmin * isum with dmin = -d8 * dmin_x, which C compilers fuse).
        summs = std::fma(-d8 * fp16_to_fp32(x[i].dmin), static_cast<float>(k4_min_term(y[i].bsums, sm + 8)), summs);
    }
    return hsum8(acc) + summs;
}

// Q6_K: codes taken unsigned (0..63); the -32 offset is applied once per
// super-block as 32 * Σ_k sc_k * bsums[k], into lane k/2: the lanes (and so
// the float rounding) that reproduce llama.cpp's logits bit for bit on the
// fixtures (a per-lane int16 subtraction, as ggml's current AVX2 source
// reads, does not).
float dot_q6_k(const void* vw, const void* va, int64_t n) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const int8_t* sc = x[i].scales;
        const __m256i sc16 = _mm256_cvtepi8_epi16(load128(sc));
        // Offset term: Σ_k sc_k * bsum_k, 16 products summed pairwise.
        const __m256i offset = _mm256_madd_epi16(load256(y[i].bsums), sc16);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load256(x[i].ql + 64 * h);
            const __m256i ql1 = load256(x[i].ql + 64 * h + 32);
            const __m256i qh = load256(x[i].qh + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)),
            };
            for (int g = 0; g < 4; ++g) {
                // Elements l < 16 of this group use scale 8h+2g, l >= 16 use 8h+2g+1.
                const int k = 8 * h + 2 * g;
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[k + 1]), _mm_set1_epi16(sc[k]));
                sumi = dot_u8s8_scaled_add(sumi, q[g], load256(y[i].qs + 128 * h + 32 * g), s);
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(offset, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8(acc);
}

// IQ4_XS: two 32-element sub-blocks per step; their 16+16 code bytes unpack
// to codebook values and the integer scale (ls - 32) is applied by VPMADDWD.
float dot_iq4_xs(const void* vw, const void* va, int64_t n) {
    const BlockIQ4_XS* x = static_cast<const BlockIQ4_XS*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    const __m256i values = _mm256_broadcastsi128_si256(load128(kIq4nlValues));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint32_t sh = x[i].scales_h;
        __m256i sumi = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib += 2, sh >>= 4) {
            const int ls0 = (x[i].scales_l[ib / 2] & 0xF) | ((sh & 3) << 4);
            const int ls1 = (x[i].scales_l[ib / 2] >> 4) | (((sh >> 2) & 3) << 4);
            const __m256i q = load256(x[i].qs + 16 * ib);
            const __m256i lo = _mm256_and_si256(q, m4);                        // [sub ib 0..15 | sub ib+1 0..15]
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);  // [sub ib 16..31 | sub ib+1 16..31]
            const __m256i v0 = _mm256_shuffle_epi8(values, _mm256_permute2x128_si256(lo, hi, 0x20));
            const __m256i v1 = _mm256_shuffle_epi8(values, _mm256_permute2x128_si256(lo, hi, 0x31));
            const __m256i a0 = load256(y[i].qs + 32 * ib);
            const __m256i a1 = load256(y[i].qs + 32 * ib + 32);
            const __m256i p0 = dot_u8s8_scaled(_mm256_sign_epi8(v0, v0), _mm256_sign_epi8(a0, v0),
                                               _mm256_set1_epi16(static_cast<int16_t>(ls0 - 32)));
            const __m256i p1 = dot_u8s8_scaled(_mm256_sign_epi8(v1, v1), _mm256_sign_epi8(a1, v1),
                                               _mm256_set1_epi16(static_cast<int16_t>(ls1 - 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8(acc);
}

}  // namespace

VecDotRowsFn vec_dot_rows_avx2_kernel(GgmlType type) {
    switch (type) {
        case GgmlType::Q8_0:
            return dotw_q8_0;
        case GgmlType::Q4_0:
            return dotw_q4_0;
        case GgmlType::Q5_0:
            return dotw_q5_0;
        case GgmlType::IQ4_NL:
            return dotw_iq4_nl;
        default:
            return nullptr;
    }
}

VecDot4Fn vec_dot4_avx2_kernel(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_K:
            return dot4_q4_k;
        case GgmlType::Q8_0:
            return dot4_q8_0;
        case GgmlType::Q4_0:
            return dot4_q4_0;
        case GgmlType::Q5_0:
            return dot4_q5_0;
        case GgmlType::IQ4_NL:
            return dot4_iq4_nl;
        default:
            return nullptr;
    }
}

VecDotFn vec_dot_avx2_kernel(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return dot_f32;
        case GgmlType::F16:
            return dot_f16;
        case GgmlType::BF16:
            return dot_bf16;
        case GgmlType::Q4_0:
            return dot_q4_0;
        case GgmlType::Q4_1:
            return dot_q4_1;
        case GgmlType::Q5_0:
            return dot_q5_0;
        case GgmlType::Q5_1:
            return dot_q5_1;
        case GgmlType::Q8_0:
            return dot_q8_0;
        case GgmlType::IQ4_NL:
            return dot_iq4_nl;
        case GgmlType::Q4_K:
            return dot_q4_k;
        case GgmlType::Q5_K:
            return dot_q5_k;
        case GgmlType::Q6_K:
            return dot_q6_k;
        case GgmlType::IQ4_XS:
            return dot_iq4_xs;
        default:
            return nullptr;
    }
}

}  // namespace moeserve::detail

#endif  // __AVX2__ && __FMA__
