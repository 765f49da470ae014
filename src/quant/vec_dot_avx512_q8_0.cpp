// AVX-512 VNNI kernels for the weight formats dotted with Q8_0 activations:
// Q8_0, Q4_0, Q5_0 and IQ4_NL (32-element blocks, one fp16 scale each).
//
// Integer part. A 512-bit register holds two blocks. VPDPBUSD multiplies
// unsigned by signed bytes, so the activations are offset to a + 128 (an XOR
// with 0x80, exact for every int8) and the weight codes stay signed:
// Σ (a + 128) w = Σ a w + 128 Σ w, and -128 Σ w, which depends on the weights
// only, is where each sum starts. Every block sum is exact.
//
// Float part. The sums of a group of 16 blocks are reduced to one int32 lane
// each (block j in lane 4 * (j % 4) + j / 4, a fixed transpose), converted
// once and multiplied by their 16 scale products d_w * d_a, gathered from the
// blocks' fp16 fields, instead of a scalar fp16 conversion and broadcast per
// block. The four 128-bit quarters are then added into a 4-lane accumulator
// by four FMAs, so accumulator lane L receives blocks 4L..4L+3 of every
// group in order; the 4 lanes are summed in a fixed tree at the end.
//
// The tile kernel (16 tokens in the vector lanes, 4 weight rows per call)
// keeps 4 accumulator registers per weight row, register L receiving
// exactly the FMAs that lane L receives in the single-row kernel, in the
// same order, and sums them in the same tree, so every path (one row, four
// rows, a tile) gives bit-identical results. Rows under one group (512
// elements) use the AVX2 kernels and have no tile kernel.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "quant/vec_dot_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "quant/block_formats.h"
#include "quant/fp16.h"

namespace moeserve::detail {
namespace {

#if defined(__AVX512VNNI__)

constexpr int kGroup = 16;  // blocks per group: one float lane each

// The reduction below leaves block j of a group in lane 4 * (j % 4) + j / 4;
// the map is a transpose, so it is its own inverse.
constexpr int lane_of_block(int j) {
    return 4 * (j % 4) + j / 4;
}

inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline __m128i load128(const void* p) {
    return _mm_loadu_si128(static_cast<const __m128i*>(p));
}
inline __m256i load256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m512i two_halves(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// ---------------------------------------------------------------- weight codes of two blocks

// The nibbles of two 16-byte qs fields as bytes: [qs0 & 15 | qs0 >> 4 | qs1 & 15 | qs1 >> 4],
// i.e. elements 0..31 of the first block, then of the second.
inline __m512i nibbles_pair(const uint8_t* qs0, const uint8_t* qs1) {
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(qs0)), load128(qs1), 1);
    const __m512i z = _mm512_shuffle_i64x2(_mm512_castsi256_si512(q), _mm512_castsi256_si512(q), 0x50);
    const __m512i shifted = _mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4);  // 128-bit lanes 1 and 3
    return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

inline __m512i codes_pair(const BlockQ8_0& b0, const BlockQ8_0& b1) {
    return two_halves(load256(b0.qs), load256(b1.qs));
}

// Q4_0: nibble - 8.
inline __m512i codes_pair(const BlockQ4_0& b0, const BlockQ4_0& b1) {
    return _mm512_sub_epi8(nibbles_pair(b0.qs, b1.qs), _mm512_set1_epi8(8));
}

// Q5_0: nibble + 16 * bit - 16, i.e. the nibble where the bit is set and nibble - 16 where not.
inline __m512i codes_pair(const BlockQ5_0& b0, const BlockQ5_0& b1) {
    const __m512i nib = nibbles_pair(b0.qs, b1.qs);
    const uint64_t bits = load_u32(b0.qh) | (static_cast<uint64_t>(load_u32(b1.qh)) << 32);
    return _mm512_mask_sub_epi8(nib, _cvtu64_mask64(~bits), nib, _mm512_set1_epi8(16));
}

// IQ4_NL: the codebook value of each nibble.
inline __m512i codes_pair(const BlockIQ4_NL& b0, const BlockIQ4_NL& b1) {
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(load128(kIq4nlValues)), nibbles_pair(b0.qs, b1.qs));
}

// Stands in for the missing second block of an odd tail; its products are
// zero because the matching activations are zero.
template <typename Block>
const Block& zero_block() {
    static const Block zero{};
    return zero;
}

// Activations of blocks ib, ib+1 (or ib alone, the rest zero) offset to unsigned: a ^ 0x80.
inline __m512i act_pair(const BlockQ8_0* y, int64_t ib, bool both) {
    const __m512i a =
        both ? two_halves(load256(y[ib].qs), load256(y[ib + 1].qs)) : _mm512_zextsi256_si512(load256(y[ib].qs));
    return _mm512_xor_si512(a, _mm512_set1_epi8(static_cast<char>(0x80)));
}

// -128 * Σ codes per int32 lane: where each lane's VPDPBUSD sum starts.
inline __m512i offset_correction(__m512i codes) {
    const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), codes);
    return _mm512_sub_epi32(_mm512_setzero_si512(), sum);
}

// ---------------------------------------------------------------- reduction and scales

// Eight registers of two blocks (lanes 0..7 block 2p, 8..15 block 2p+1) ->
// one register with the total of block j in lane lane_of_block(j).
inline __m512i reduce_blocks(const __m512i p[8]) {
    __m512i r[4];  // r[q]: blocks 4q..4q+3, one per 128-bit lane, 4 partial sums each
    for (int q = 0; q < 4; ++q)
        r[q] = _mm512_add_epi32(_mm512_shuffle_i32x4(p[2 * q], p[2 * q + 1], 0x88),
                                _mm512_shuffle_i32x4(p[2 * q], p[2 * q + 1], 0xDD));
    __m512i s[2];  // 128-bit lane c of s[h]: [block c, c, c + 4, c + 4] (+ 8h), 2 partial sums each
    for (int h = 0; h < 2; ++h)
        s[h] = _mm512_add_epi32(_mm512_unpacklo_epi64(r[2 * h], r[2 * h + 1]),
                                _mm512_unpackhi_epi64(r[2 * h], r[2 * h + 1]));
    const __m512 s0 = _mm512_castsi512_ps(s[0]), s1 = _mm512_castsi512_ps(s[1]);
    // 128-bit lane c: [block c, c + 4, c + 8, c + 12]
    return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(s0, s1, _MM_SHUFFLE(2, 0, 2, 0))),
                            _mm512_castps_si512(_mm512_shuffle_ps(s0, s1, _MM_SHUFFLE(3, 1, 3, 1))));
}

// The same for a group of at most four blocks (only p[0], p[1] used): block j
// lands in lane 4j, and the other lanes are zero, as reduce_blocks gives them.
inline __m512i reduce_blocks4(const __m512i p[2]) {
    const __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(p[0], p[1], 0x88), _mm512_shuffle_i32x4(p[0], p[1], 0xDD));
    const __m512i h = _mm512_add_epi32(r, _mm512_shuffle_epi32(r, _MM_PERM_BADC));
    return _mm512_maskz_add_epi32(0x1111, h, _mm512_shuffle_epi32(h, _MM_PERM_CDAB));
}

// The fp16 scales of the blocks of a group as floats, lane L for block
// lane_of_block(L); lanes of blocks past the m that exist are zero.
inline __m512 group_scales(const void* first_block, int64_t block_bytes, int m) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i block = _mm512_add_epi32(_mm512_slli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(3)), 2),
                                           _mm512_srli_epi32(lane, 2));
    const __mmask16 present = _mm512_cmplt_epi32_mask(block, _mm512_set1_epi32(m));
    const __m512i offset = _mm512_mullo_epi32(block, _mm512_set1_epi32(static_cast<int>(block_bytes)));
    // Each 32-bit load starts at a block's d field and stays inside the block.
    const __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, offset, first_block, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
}

// Σ of the 4 lanes in the fixed tree (L + L+2) + (L+1) that the tile kernel repeats.
inline float sum_lanes(__m128 v) {
    const __m128 t2 = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

// ---------------------------------------------------------------- R rows at once

// R activation rows against one weight row (R = 1: the single-row kernel).
// The weight codes of a group are unpacked once; per row the operations are
// those of R = 1, so each result is bit-identical to the single-row kernel.
template <int R, typename Block>
void family_rows(const Block* x, const void* const va[], float out[], int64_t nb) {
    const BlockQ8_0* y[R];
    for (int k = 0; k < R; ++k) y[k] = static_cast<const BlockQ8_0*>(va[k]);
    __m128 acc[R];
    for (int k = 0; k < R; ++k) acc[k] = _mm_setzero_ps();
    for (int64_t g = 0; g < nb; g += kGroup) {
        const int m = static_cast<int>(std::min<int64_t>(kGroup, nb - g));
        const int pairs = (m + 1) / 2;
        __m512i codes[8], start[8];
        for (int p = 0; p < pairs; ++p) {
            const int64_t ib = g + 2 * p;
            codes[p] = codes_pair(x[ib], 2 * p + 1 < m ? x[ib + 1] : zero_block<Block>());
            start[p] = offset_correction(codes[p]);
        }
        const __m512 dw = group_scales(x + g, sizeof(Block), m);
        for (int k = 0; k < R; ++k) {
            __m512i sums[8];
            for (int p = 0; p < pairs; ++p)
                sums[p] = _mm512_dpbusd_epi32(start[p], act_pair(y[k], g + 2 * p, 2 * p + 1 < m), codes[p]);
            __m512i block_sums;
            if (m <= 4) {
                if (pairs < 2) sums[1] = _mm512_setzero_si512();
                block_sums = reduce_blocks4(sums);
            } else {
                for (int p = pairs; p < 8; ++p) sums[p] = _mm512_setzero_si512();
                block_sums = reduce_blocks(sums);
            }
            const __m512 scale = _mm512_mul_ps(dw, group_scales(y[k] + g, sizeof(BlockQ8_0), m));
            const __m512 sums_f = _mm512_cvtepi32_ps(block_sums);
            acc[k] = _mm_fmadd_ps(_mm512_castps512_ps128(scale), _mm512_castps512_ps128(sums_f), acc[k]);
            acc[k] = _mm_fmadd_ps(_mm512_extractf32x4_ps(scale, 1), _mm512_extractf32x4_ps(sums_f, 1), acc[k]);
            acc[k] = _mm_fmadd_ps(_mm512_extractf32x4_ps(scale, 2), _mm512_extractf32x4_ps(sums_f, 2), acc[k]);
            acc[k] = _mm_fmadd_ps(_mm512_extractf32x4_ps(scale, 3), _mm512_extractf32x4_ps(sums_f, 3), acc[k]);
        }
    }
    for (int k = 0; k < R; ++k) out[k] = sum_lanes(acc[k]);
}

// ---------------------------------------------------------------- tile of 16 rows

// Packed tile, per block: eight 64-byte rows, row r holding int32 dword r of
// the block's codes (bytes 4r..4r+3, offset by 128) for tokens 0..15, then
// the 16 tokens' scales as float.
constexpr int64_t kTileBlockBytes = 8 * 64 + 16 * 4;

size_t tile_bytes(int64_t n) {
    return static_cast<size_t>(n / kQK * kTileBlockBytes);
}

void pack_tile(const void* act, size_t act_row_bytes, int n_rows, void* vtile, int64_t n) {
    uint8_t* tile = static_cast<uint8_t*>(vtile);
    const int64_t nb = n / kQK;
    if (n_rows < kDotTileRows) std::memset(tile, 0, tile_bytes(n));
    for (int t = 0; t < n_rows; ++t) {
        const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(act) + t * act_row_bytes);
        for (int64_t ib = 0; ib < nb; ++ib) {
            uint8_t* tb = tile + ib * kTileBlockBytes;
            for (int r = 0; r < 8; ++r) {
                const uint32_t v = load_u32(y[ib].qs + 4 * r) ^ 0x80808080u;
                std::memcpy(tb + (16 * r + t) * 4, &v, 4);
            }
            const float d = fp16_to_fp32(y[ib].d);
            std::memcpy(tb + 8 * 64 + 4 * t, &d, 4);
        }
    }
}

// W weight rows against a packed tile, tokens in the vector lanes. Token t
// of weight row w gets, in lane t of acc[w][L], exactly the FMAs that lane L
// of the single-row kernel's accumulator gets: blocks 4L..4L+3 of each group
// (their sums sit in lanes L, 4 + L, 8 + L, 12 + L), in that order.
template <int W, typename Block>
void family_tile_rows(const uint8_t* w, size_t w_row_bytes, const uint8_t* tile, float* out, int64_t nb) {
    __m512 acc[W][4];
    for (int v = 0; v < W; ++v)
        for (int l = 0; l < 4; ++l) acc[v][l] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb; g += kGroup) {
        const int m = static_cast<int>(std::min<int64_t>(kGroup, nb - g));
        alignas(64) int8_t codes[W][kGroup][kQK];
        alignas(64) int32_t start[W][kGroup];  // by lane, as the single-row kernel has them
        alignas(64) float dw[W][kGroup];
        for (int v = 0; v < W; ++v) {
            const Block* x = reinterpret_cast<const Block*>(w + v * w_row_bytes) + g;
            __m512i corr[8];
            for (int p = 0; p < 8; ++p) {
                if (2 * p >= m) {
                    corr[p] = _mm512_setzero_si512();
                    continue;
                }
                const __m512i c = codes_pair(x[2 * p], 2 * p + 1 < m ? x[2 * p + 1] : zero_block<Block>());
                _mm512_store_si512(codes[v][2 * p], c);
                corr[p] = offset_correction(c);
            }
            _mm512_store_si512(start[v], reduce_blocks(corr));
            _mm512_store_ps(dw[v], group_scales(x, sizeof(Block), m));
        }
#pragma GCC unroll 16
        for (int j = 0; j < kGroup; ++j) {
            if (j >= m) continue;  // the tail group
            const int lane = lane_of_block(j);
            const uint8_t* tb = tile + (g + j) * kTileBlockBytes;
            __m512i sum[W];
            for (int v = 0; v < W; ++v) sum[v] = _mm512_set1_epi32(start[v][lane]);
            for (int r = 0; r < 8; ++r) {
                const __m512i a = _mm512_loadu_si512(tb + 64 * r);
                for (int v = 0; v < W; ++v)
                    sum[v] = _mm512_dpbusd_epi32(sum[v], a,
                                                 _mm512_set1_epi32(static_cast<int>(load_u32(codes[v][j] + 4 * r))));
            }
            const __m512 da = _mm512_loadu_ps(tb + 8 * 64);
            for (int v = 0; v < W; ++v)
                acc[v][j / 4] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dw[v][lane]), da),
                                                _mm512_cvtepi32_ps(sum[v]), acc[v][j / 4]);
        }
    }
    for (int v = 0; v < W; ++v) {  // the tree of sum_lanes, register by register
        const __m512 t0 = _mm512_add_ps(acc[v][0], acc[v][2]), t1 = _mm512_add_ps(acc[v][1], acc[v][3]);
        _mm512_storeu_ps(out + v * kDotTileRows, _mm512_add_ps(t0, t1));
    }
}

template <typename Block>
void family_tile(const void* w, size_t w_row_bytes, int n_rows, const void* tile, float* out, int64_t n) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const uint8_t* tb = static_cast<const uint8_t*>(tile);
    switch (n_rows) {
        case 4:
            return family_tile_rows<4, Block>(wb, w_row_bytes, tb, out, n / kQK);
        case 3:
            return family_tile_rows<3, Block>(wb, w_row_bytes, tb, out, n / kQK);
        case 2:
            return family_tile_rows<2, Block>(wb, w_row_bytes, tb, out, n / kQK);
        default:
            return family_tile_rows<1, Block>(wb, w_row_bytes, tb, out, n / kQK);
    }
}

// ---------------------------------------------------------------- per format

// Rows shorter than one group (an attention head of 128 is 4 blocks) cost
// more in gathers and reductions than they save, and run the AVX2 kernels
// instead (one-row and four-row alike, so they still agree); there is no
// tile kernel for them.
constexpr int64_t kMinElements = kGroup * kQK;

#define MOESERVE_Q8_0_FAMILY(name, Block, type)                                          \
    float dot_##name(const void* vw, const void* va, int64_t n) {                        \
        if (n < kMinElements) {                                                          \
            static const VecDotFn short_rows = vec_dot_avx2_kernel(type);                \
            return short_rows(vw, va, n);                                                \
        }                                                                                \
        const void* rows[1] = {va};                                                      \
        float out;                                                                       \
        family_rows<1>(static_cast<const Block*>(vw), rows, &out, n / kQK);              \
        return out;                                                                      \
    }                                                                                    \
    void dot4_##name(const void* vw, const void* const va[4], float out[4], int64_t n) { \
        if (n < kMinElements) {                                                          \
            static const VecDot4Fn short_rows = vec_dot4_avx2_kernel(type);              \
            return short_rows(vw, va, out, n);                                           \
        }                                                                                \
        family_rows<4>(static_cast<const Block*>(vw), va, out, n / kQK);                 \
    }                                                                                    \
    constexpr VecDotTile tile_##name{tile_bytes, pack_tile, family_tile<Block>};

MOESERVE_Q8_0_FAMILY(q8_0, BlockQ8_0, GgmlType::Q8_0)
MOESERVE_Q8_0_FAMILY(q4_0, BlockQ4_0, GgmlType::Q4_0)
MOESERVE_Q8_0_FAMILY(q5_0, BlockQ5_0, GgmlType::Q5_0)
MOESERVE_Q8_0_FAMILY(iq4_nl, BlockIQ4_NL, GgmlType::IQ4_NL)
#undef MOESERVE_Q8_0_FAMILY

#endif  // __AVX512VNNI__

}  // namespace

VecDotFn vec_dot_avx512_q8_0_family_kernel(GgmlType type) {
    switch (type) {
#if defined(__AVX512VNNI__)
        case GgmlType::Q8_0:
            return dot_q8_0;
        case GgmlType::Q4_0:
            return dot_q4_0;
        case GgmlType::Q5_0:
            return dot_q5_0;
        case GgmlType::IQ4_NL:
            return dot_iq4_nl;
#endif
        default:
            return nullptr;
    }
}

VecDot4Fn vec_dot4_avx512_q8_0_family_kernel(GgmlType type) {
    switch (type) {
#if defined(__AVX512VNNI__)
        case GgmlType::Q8_0:
            return dot4_q8_0;
        case GgmlType::Q4_0:
            return dot4_q4_0;
        case GgmlType::Q5_0:
            return dot4_q5_0;
        case GgmlType::IQ4_NL:
            return dot4_iq4_nl;
#endif
        default:
            return nullptr;
    }
}

const VecDotTile* vec_dot_tile_avx512_kernel(GgmlType type, int64_t n) {
#if defined(__AVX512VNNI__)
    if (n < kMinElements) return nullptr;
#endif
    switch (type) {
#if defined(__AVX512VNNI__)
        case GgmlType::Q8_0:
            return &tile_q8_0;
        case GgmlType::Q4_0:
            return &tile_q4_0;
        case GgmlType::Q5_0:
            return &tile_q5_0;
        case GgmlType::IQ4_NL:
            return &tile_iq4_nl;
#endif
        default:
            return nullptr;
    }
}

}  // namespace moeserve::detail

#endif  // AVX-512 F/BW/VL
