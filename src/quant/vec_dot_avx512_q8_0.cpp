// The AVX-512 VNNI tile kernel for the weight formats dotted with Q8_0
// activations: Q8_0, Q4_0, Q5_0 and IQ4_NL (32-element blocks, one fp16
// scale each), for prompt batches: 16 tokens in the vector lanes.
//
// Its results are bit-identical to the single-row AVX2 kernel
// (q8_0_family_rows in vec_dot_avx2.cpp), which follows ggml's x86 order:
// per block, eight int32 partial sums (lane l: elements 4l..4l+3), each
// converted to float and multiply-added with d_w * d_a into lane l of one
// accumulator, block after block; the eight lanes summed at the end as
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). Here lane l becomes
// register l: per weight row, eight accumulator registers whose lane t is
// token t's lane l, and the final sum is the same tree of vertical adds.
//
// Integer part. VPDPBUSD multiplies unsigned by signed bytes. Q4_0 and Q5_0
// store unsigned codes (value = code - 8 or - 16): they are multiplied as they
// are into the signed activations, and -offset * Σ a, which depends on the
// activations only, is where each partial sum starts. Q8_0 and IQ4_NL codes
// are signed, so there the activations are offset to a + 128 (an XOR with
// 0x80, exact for every int8): Σ (a + 128) w = Σ a w + 128 Σ w, and -128 Σ w
// is where each partial sum starts. Every partial sum is exact.
//
// (Single-row and four-row kernels of these formats are the AVX2 ones: in a
// 512-bit form they were no faster, and they would have to keep ggml's
// eight-lane order too.)
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
#include "quant/hsum.h"

namespace moeserve::detail {
namespace {

#if defined(__AVX512VNNI__)

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

// Q4_0 and Q5_0 codes as stored, unsigned (value = code - offset): the
// weight-rows kernel multiplies them straight into the signed activations
// and subtracts offset * Σ a, which depends on the activations only and so
// is computed once for all the rows.
template <typename Block>
struct UnsignedCodes {
    static constexpr int kOffset = 0;  // none: the codes are signed (Q8_0, IQ4_NL)
};
template <>
struct UnsignedCodes<BlockQ4_0> {
    static constexpr int kOffset = 8;
    static __m512i pair(const BlockQ4_0& b0, const BlockQ4_0& b1) { return nibbles_pair(b0.qs, b1.qs); }
};
template <>
struct UnsignedCodes<BlockQ5_0> {
    static constexpr int kOffset = 16;
    static __m512i pair(const BlockQ5_0& b0, const BlockQ5_0& b1) {
        const __m512i nib = nibbles_pair(b0.qs, b1.qs);
        const uint64_t bits = load_u32(b0.qh) | (static_cast<uint64_t>(load_u32(b1.qh)) << 32);
        return _mm512_mask_add_epi8(nib, _cvtu64_mask64(bits), nib, _mm512_set1_epi8(16));
    }
};

// Stands in for the missing second block of an odd tail; its products are
// zero because the matching activations are zero.
template <typename Block>
const Block& zero_block() {
    static const Block zero{};
    return zero;
}

// Lines of `bytes` bytes from p prefetched `per_step` bytes a call (at
// *done so far): the weight-rows kernel fetches the next call's rows, which
// follow its own in memory, spread over its steps.
inline void prefetch_ahead(const uint8_t* p, size_t bytes, size_t per_step, size_t* done) {
    for (size_t k = 0; k < per_step && *done < bytes; k += 64, *done += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + *done), _MM_HINT_T0);
}

// ---------------------------------------------------------------- tile of 16 rows

// Packed tile, per block: eight 64-byte rows, row r holding int32 dword r of
// the block's activations (bytes 4r..4r+3) for tokens 0..15; for weights with
// signed codes (kOffset 0) offset by 128, for the unsigned Q4_0/Q5_0 codes as
// they are and followed by eight rows of the tokens' -kOffset * Σ of each
// dword (where each partial sum starts, the same for every weight row); then
// the 16 tokens' scales as float.
template <int kOffset>
constexpr int64_t tile_block_bytes() {
    return (kOffset > 0 ? 16 : 8) * 64 + 16 * 4;
}

template <int kOffset>
size_t tile_bytes(int64_t n) {
    return static_cast<size_t>(n / kQK * tile_block_bytes<kOffset>());
}

template <int kOffset>
void pack_tile(const void* act, size_t act_row_bytes, int n_rows, void* vtile, int64_t n) {
    constexpr int64_t kScales = (kOffset > 0 ? 16 : 8) * 64;
    uint8_t* tile = static_cast<uint8_t*>(vtile);
    const int64_t nb = n / kQK;
    if (n_rows < kDotTileRows) std::memset(tile, 0, tile_bytes<kOffset>(n));
    for (int t = 0; t < n_rows; ++t) {
        const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(act) + t * act_row_bytes);
        for (int64_t ib = 0; ib < nb; ++ib) {
            uint8_t* tb = tile + ib * tile_block_bytes<kOffset>();
            for (int r = 0; r < 8; ++r) {
                const uint32_t v = load_u32(y[ib].qs + 4 * r) ^ (kOffset > 0 ? 0u : 0x80808080u);
                std::memcpy(tb + (16 * r + t) * 4, &v, 4);
                if constexpr (kOffset > 0) {
                    const int8_t* q = y[ib].qs + 4 * r;
                    const int32_t start = -kOffset * (q[0] + q[1] + q[2] + q[3]);
                    std::memcpy(tb + 8 * 64 + (16 * r + t) * 4, &start, 4);
                }
            }
            const float d = fp16_to_fp32(y[ib].d);
            std::memcpy(tb + kScales + 4 * t, &d, 4);
        }
    }
}

// W weight rows (W <= 2: eight accumulators each) against a packed tile.
template <int W, typename Block>
void family_tile_rows(const uint8_t* w, size_t w_row_bytes, const uint8_t* tile, float* out, int64_t nb) {
    constexpr int kOffset = UnsignedCodes<Block>::kOffset;
    constexpr int64_t kBlockBytes = tile_block_bytes<kOffset>();
    constexpr int64_t kScales = kBlockBytes - 16 * 4;
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    __m512 acc[W][8];
    for (int v = 0; v < W; ++v)
        for (int l = 0; l < 8; ++l) acc[v][l] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib += 2) {
        const bool pair = ib + 1 < nb;
        alignas(64) int32_t codes[W][2][8];  // the weight codes' dwords, block by block
        alignas(64) int32_t start[W][2][8];  // signed codes: -128 * Σ of each dword's codes
        float dw[W][2];
        for (int v = 0; v < W; ++v) {
            const Block* x = reinterpret_cast<const Block*>(w + v * w_row_bytes) + ib;
            const Block& second = pair ? x[1] : zero_block<Block>();
            if constexpr (kOffset > 0) {
                _mm512_store_si512(codes[v], UnsignedCodes<Block>::pair(x[0], second));
            } else {
                const __m512i c = codes_pair(x[0], second);
                _mm512_store_si512(codes[v], c);
                for (int h = 0; h < 2; ++h) {
                    const __m256i half = h == 0 ? _mm512_castsi512_si256(c) : _mm512_extracti64x4_epi64(c, 1);
                    const __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, half);
                    _mm256_store_si256(reinterpret_cast<__m256i*>(start[v][h]),
                                       _mm256_sub_epi32(_mm256_setzero_si256(), sum));
                }
            }
            dw[v][0] = fp16_to_fp32(x[0].d);
            dw[v][1] = pair ? fp16_to_fp32(x[1].d) : 0.0f;
        }
        for (int h = 0; h < (pair ? 2 : 1); ++h) {
            const uint8_t* tb = tile + (ib + h) * kBlockBytes;
            const __m512 da = _mm512_loadu_ps(tb + kScales);
            __m512 scale[W];
            for (int v = 0; v < W; ++v) scale[v] = _mm512_mul_ps(_mm512_set1_ps(dw[v][h]), da);
            for (int l = 0; l < 8; ++l) {
                const __m512i a = _mm512_loadu_si512(tb + 64 * l);
                for (int v = 0; v < W; ++v) {
                    __m512i part;
                    if constexpr (kOffset > 0)  // unsigned codes times signed activations
                        part = _mm512_dpbusd_epi32(_mm512_loadu_si512(tb + 8 * 64 + 64 * l),
                                                   _mm512_set1_epi32(codes[v][h][l]), a);
                    else  // activations offset to unsigned times signed codes
                        part = _mm512_dpbusd_epi32(_mm512_set1_epi32(start[v][h][l]), a,
                                                   _mm512_set1_epi32(codes[v][h][l]));
                    acc[v][l] = _mm512_fmadd_ps(scale[v], _mm512_cvtepi32_ps(part), acc[v][l]);
                }
            }
        }
    }
    for (int v = 0; v < W; ++v) {  // hsum's tree, register by register
        const __m512 t04 = _mm512_add_ps(acc[v][0], acc[v][4]), t26 = _mm512_add_ps(acc[v][2], acc[v][6]);
        const __m512 t15 = _mm512_add_ps(acc[v][1], acc[v][5]), t37 = _mm512_add_ps(acc[v][3], acc[v][7]);
        _mm512_storeu_ps(out + v * kDotTileRows, _mm512_add_ps(_mm512_add_ps(t04, t26), _mm512_add_ps(t15, t37)));
    }
}

template <typename Block>
void family_tile(const void* w, size_t w_row_bytes, int n_rows, const void* tile, float* out, int64_t n) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const uint8_t* tb = static_cast<const uint8_t*>(tile);
    for (int v = 0; v < n_rows; v += 2) {
        if (n_rows - v >= 2)
            family_tile_rows<2, Block>(wb + v * w_row_bytes, w_row_bytes, tb, out + v * kDotTileRows, n / kQK);
        else
            family_tile_rows<1, Block>(wb + v * w_row_bytes, w_row_bytes, tb, out + v * kDotTileRows, n / kQK);
    }
}

// ---------------------------------------------------------------- weight rows, one activation row

// R weight rows against T activation rows (a decoded token, or the tokens
// of 2-4 slots' decode step), two blocks per 512-bit register: the integer
// lanes of block 2p in lanes 0..7 and of 2p+1 in 8..15 are the AVX2 kernel's
// lanes, and the two halves go into its eight-lane accumulator one after the
// other, so each result is the AVX2 single-row kernel's, bit for bit. A
// weight block is unpacked once for all T tokens.
template <int R, int T, typename Block>
void family_weight_rows(const uint8_t* w, size_t w_row_bytes, const BlockQ8_0* const y[], float* const out[],
                        int64_t nb) {
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    const Block* x[R];
    for (int r = 0; r < R; ++r) x[r] = reinterpret_cast<const Block*>(w + r * w_row_bytes);
    __m256 acc[T][R];
    for (int t = 0; t < T; ++t)
        for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
    constexpr int kOffset = UnsignedCodes<Block>::kOffset;
    // The R rows are contiguous, and so (a matrix's rows in order) are the
    // next call's: those are prefetched, a share a step, while these are
    // summed. Streamed side by side, R rows from memory came at 9-16 GB/s a
    // thread on Zen 5 with a line prefetched 512 bytes ahead in each (the
    // single-row kernel: 9-23); this way 15-31 GB/s (quant_bench vec_dot_rows, DRAM).
    const uint8_t* next = w + R * w_row_bytes;
    const size_t next_bytes = R * w_row_bytes;
    const size_t per_step = (next_bytes / static_cast<size_t>((nb + 1) / 2) + 63) & ~size_t{63};
    size_t fetched = 0;
    for (int64_t ib = 0; ib < nb; ib += 2) {
        prefetch_ahead(next, next_bytes, per_step, &fetched);
        const bool pair = ib + 1 < nb;
        __m512i a[T], a_start[T];
        float da0[T], da1[T];
        for (int t = 0; t < T; ++t) {
            const __m512i a8 = pair ? two_halves(load256(y[t][ib].qs), load256(y[t][ib + 1].qs))
                                    : _mm512_zextsi256_si512(load256(y[t][ib].qs));
            // Unsigned codes: -offset * Σ a per lane, for every row.
            a_start[t] = _mm512_setzero_si512();
            if constexpr (kOffset > 0)
                a_start[t] = _mm512_sub_epi32(
                    _mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(kOffset), a8));
            a[t] = kOffset > 0 ? a8 : _mm512_xor_si512(a8, bias);
            da0[t] = fp16_to_fp32(y[t][ib].d);
            da1[t] = pair ? fp16_to_fp32(y[t][ib + 1].d) : 0.0f;
        }
        for (int r = 0; r < R; ++r) {
            const Block& second = pair ? x[r][ib + 1] : zero_block<Block>();
            __m512i codes, start;
            if constexpr (kOffset > 0) {
                codes = UnsignedCodes<Block>::pair(x[r][ib], second);
            } else {  // signed codes: the activations offset to unsigned instead, -128 * Σ codes per lane
                codes = codes_pair(x[r][ib], second);
                start =
                    _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, codes));
            }
            const float dw0 = fp16_to_fp32(x[r][ib].d), dw1 = fp16_to_fp32(second.d);
            for (int t = 0; t < T; ++t) {
                const __m512i sums = kOffset > 0 ? _mm512_dpbusd_epi32(a_start[t], codes, a[t])
                                                 : _mm512_dpbusd_epi32(start, a[t], codes);
                const __m512 f = _mm512_cvtepi32_ps(sums);
                acc[t][r] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * da0[t]), _mm512_castps512_ps256(f), acc[t][r]);
                if (pair)
                    acc[t][r] = _mm256_fmadd_ps(_mm256_set1_ps(dw1 * da1[t]), _mm512_extractf32x8_ps(f, 1), acc[t][r]);
            }
        }
    }
    for (int t = 0; t < T; ++t)
        for (int r = 0; r < R; ++r) out[t][r] = hsum8(acc[t][r]);
}

template <int T, typename Block>
void family_weight_rows_t(const uint8_t* w, size_t w_row_bytes, int n_rows, const BlockQ8_0* const y[],
                          float* const out[], int64_t nb) {
    switch (n_rows) {
        case 4:
            return family_weight_rows<4, T, Block>(w, w_row_bytes, y, out, nb);
        case 3:
            return family_weight_rows<3, T, Block>(w, w_row_bytes, y, out, nb);
        case 2:
            return family_weight_rows<2, T, Block>(w, w_row_bytes, y, out, nb);
        default:
            return family_weight_rows<1, T, Block>(w, w_row_bytes, y, out, nb);
    }
}

template <typename Block>
void family_weight_rows_n(const void* w, size_t w_row_bytes, int n_rows, const void* act, float* out, int64_t n) {
    const BlockQ8_0* y[1] = {static_cast<const BlockQ8_0*>(act)};
    float* o[1] = {out};
    family_weight_rows_t<1, Block>(static_cast<const uint8_t*>(w), w_row_bytes, n_rows, y, o, n / kQK);
}

template <typename Block>
void family_weight_rows_few(const void* w, size_t w_row_bytes, int n_rows, const void* const act[], int n_act,
                            float* const out[], int64_t n) {
    const BlockQ8_0* y[4];
    for (int t = 0; t < n_act; ++t) y[t] = static_cast<const BlockQ8_0*>(act[t]);
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    switch (n_act) {
        case 4:
            return family_weight_rows_t<4, Block>(wb, w_row_bytes, n_rows, y, out, n / kQK);
        case 3:
            return family_weight_rows_t<3, Block>(wb, w_row_bytes, n_rows, y, out, n / kQK);
        default:
            return family_weight_rows_t<2, Block>(wb, w_row_bytes, n_rows, y, out, n / kQK);
    }
}

// ---------------------------------------------------------------- per format

// min_partial: the fewest tokens for which a zero-padded tile is no slower
// than the weight-rows kernel taking them four (then 2-3, 1) at a time; one
// thread, a 2048-wide matrix, Zen 5 (2026-11-29), GMAC/s tile / rows x4 / x1,
// in L2 and from DRAM: Q8_0 91 / 60 / 40 and 84 / 53 / 32 -> 10-11; Q5_0 70 /
// 50 / 31 and 55 / 47 / 28 -> 12-14; Q4_0 73 / 57 / 36 and 39 / 55 / 33 ->
// 13-16; IQ4_NL 80 / 44 / 31 and 75 / 40 / 28 -> 9.
template <typename Block>
constexpr VecDotTile tile_kernel(int min_partial) {
    constexpr int kOffset = UnsignedCodes<Block>::kOffset;
    return VecDotTile{tile_bytes<kOffset>, pack_tile<kOffset>, family_tile<Block>, min_partial};
}
constexpr VecDotTile kTileQ8_0 = tile_kernel<BlockQ8_0>(11);
constexpr VecDotTile kTileQ4_0 = tile_kernel<BlockQ4_0>(13);
constexpr VecDotTile kTileQ5_0 = tile_kernel<BlockQ5_0>(12);
constexpr VecDotTile kTileIQ4_NL = tile_kernel<BlockIQ4_NL>(9);

#endif  // __AVX512VNNI__

}  // namespace

VecDotRowsFn vec_dot_rows_avx512_kernel(GgmlType type) {
    switch (type) {
#if defined(__AVX512VNNI__) && defined(__AVX512DQ__)
        case GgmlType::Q8_0:
            return family_weight_rows_n<BlockQ8_0>;
        case GgmlType::Q4_0:
            return family_weight_rows_n<BlockQ4_0>;
        case GgmlType::Q5_0:
            return family_weight_rows_n<BlockQ5_0>;
        case GgmlType::IQ4_NL:
            return family_weight_rows_n<BlockIQ4_NL>;
#endif
        default:
            return nullptr;
    }
}

VecDotRowsFewFn vec_dot_rows_few_avx512_kernel(GgmlType type) {
    switch (type) {
#if defined(__AVX512VNNI__) && defined(__AVX512DQ__)
        case GgmlType::Q8_0:
            return family_weight_rows_few<BlockQ8_0>;
        case GgmlType::Q4_0:
            return family_weight_rows_few<BlockQ4_0>;
        case GgmlType::Q5_0:
            return family_weight_rows_few<BlockQ5_0>;
        case GgmlType::IQ4_NL:
            return family_weight_rows_few<BlockIQ4_NL>;
#endif
        default:
            return nullptr;
    }
}

const VecDotTile* vec_dot_tile_avx512_kernel(GgmlType type, int64_t n) {
    (void)n;  // any whole number of blocks
    switch (type) {
#if defined(__AVX512VNNI__)
        case GgmlType::Q8_0:
            return &kTileQ8_0;
        case GgmlType::Q4_0:
            return &kTileQ4_0;
        case GgmlType::Q5_0:
            return &kTileQ5_0;
        case GgmlType::IQ4_NL:
            return &kTileIQ4_NL;
#endif
        default:
            return nullptr;
    }
}

}  // namespace moeserve::detail

#endif  // AVX-512 F/BW/VL
