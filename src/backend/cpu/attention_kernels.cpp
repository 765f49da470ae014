// AVX-512 kernels for one KV head's rows against a group of query rows; see
// attention_kernels.h for what they compute and which results they match.
//
// Quantized K (VNNI). A 512-bit register holds one 32-element block of two
// query rows (row A in bytes 0..31, row B in 32..63) and VPDPBUSD multiplies
// it by the K block's codes, broadcast to both halves, as unsigned bytes:
// Q4_0 nibbles n (value n - 8) and Q8_0 codes k ^ 0x80 (value k = u - 128).
// With offset o (8 or 128), Σ (u_j) q_j - o Σ q_j is the exact integer sum
// of each group of 4 products, so each int32 lane equals the lane of the
// AVX2 kernel's dot_s8s8 (lane i: elements 4i..4i+3); -o Σ q_j depends on
// the query only and is packed once per call as the lanes' start values.
// Per block and lane, the float work is the AVX2 kernel's (ggml's order):
// d_k * d_q times the converted lane into one accumulator, block after
// block, and the 8 lanes are summed in its tree (i + i+4, i + i+2, 0 + 1),
// done here for 8 rows at once with shuffles across registers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's intrinsics headers, not this code
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/attention_kernels.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/block_formats.h"
#include "quant/fp16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MOESERVE_GROUP_KERNELS 1
#include <immintrin.h>
#endif
#if defined(MOESERVE_GROUP_KERNELS) && defined(__AVX512VNNI__)
#define MOESERVE_GROUP_VNNI 1
#endif

namespace moeserve {
namespace {

bool is_group_quantized_k(GgmlType t) {
    return t == GgmlType::Q4_0 || t == GgmlType::Q8_0;
}

// Quantized K: per chunk of 8 query rows, per block, per pair of rows:
// the two rows' codes (64 bytes), the lanes' start values (16 int32) and the
// two rows' scales (16 floats, 8 each).
constexpr int kChunkRows = 8;
constexpr int kPairs = kChunkRows / 2;
constexpr size_t kPairBlockBytes = 3 * 64;

int chunks_of(int n_rows) {
    return (n_rows + kChunkRows - 1) / kChunkRows;
}

// F16 K: the f32 query rows, padded with zero rows to a multiple of 8.
int padded_rows(int n_rows) {
    return chunks_of(n_rows) * kChunkRows;
}

// F16 K, groups of 16 query rows scored with the rows in the lanes of a
// register (score_f16_lanes): every 16-row step of score_f16 (one while more
// than 8 rows remain) for heads up to kLaneMaxDim wide; packed after the
// slice-major rows, element i of row 16g + r at (g * head_dim + i) * 16 + r.
constexpr int kLaneMaxDim = 256;
constexpr int kLaneCells = 4;  // cells per score_f16_lanes pass

int lane_groups(int n_rows, int head_dim) {
    if (head_dim > kLaneMaxDim || n_rows <= 4) return 0;  // 1..4 rows: score_f16_few
    int r0 = 0;
    while (n_rows - r0 > kChunkRows) r0 += 16;
    return r0 / 16;
}

#if defined(MOESERVE_GROUP_KERNELS)

constexpr int64_t kPrefetchAhead = 8;  // cached rows ahead of the one in use
constexpr int64_t kValueChunk = 64;    // V rows kept in L1 while every slice sums them (a prompt's rows)
// A decoded token's group of query rows (up to 16) sums V rows in chunks of
// 16: the next chunk's prefetches go out 64 lines at a time instead of 256,
// which the core's miss queue takes without stalling (GQA at 32K cells,
// f16: 133 -> 106 ns a row with 2 threads; a prompt's 64 rows keep 64 for
// the fewer reloads of their accumulators).
constexpr int64_t kValueChunkFewRows = 16;

inline void prefetch_row(const uint8_t* p, size_t n) {
    for (size_t off = 0; off < n; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
}

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

// Per 128-bit lane: x (i + i+4 of an 8-lane row in each 256-bit half) for
// the rows of a and b: [a.lo, a.hi | b.lo, b.hi] -> lane k: row k of (a0, a1, b0, b1).
inline __m512 sum_halves_of_quads(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
}
// Per 128-bit lane of four partial sums s: [a: s0+s2, s1+s3 | b: s0+s2, s1+s3].
inline __m512 sum_pairs(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
// Per 128-bit lane: [a0+a1, a2+a3, b0+b1, b2+b3].
inline __m512 sum_adjacent(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Four registers [row 2m (8 lanes) | row 2m+1 (8 lanes)] -> rows 0..7 in
// lanes 0..7, each the 8-lane sum in the tree (i + i+4), (i + i+2), (0 + 1).
inline __m256 reduce_8_rows_of_8(const __m512 p[4]) {
    const __m512 u0 = sum_halves_of_quads(p[0], p[1]);  // lane k: row k
    const __m512 u1 = sum_halves_of_quads(p[2], p[3]);  // lane k: row 4 + k
    const __m512 v = sum_pairs(u0, u1);
    const __m512 w = sum_adjacent(v, v);  // lane 4k: row k, lane 4k + 1: row 4 + k
    const __m512i to_rows = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(to_rows, w));
}

// 16 x 16 floats: rows of a become columns.
inline void transpose_16x16(__m512 a[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {  // 32-bit interleave of row pairs, per 128-bit lane
        t[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // 64-bit interleave: each 128-bit lane holds one column of 4 rows
        a[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        a[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        a[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        a[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int i = 0; i < 4; ++i) {  // 128-bit lanes of row groups (0, 1) and (2, 3)
        t[i] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(a[i + 8], a[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(a[i + 8], a[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; ++i) {
        a[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        a[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

// The scores of up to 16 query rows for up to 16 consecutive cells, put in
// cell by cell and written to the row-major score matrix as whole runs of
// cells: 16 scattered stores per cell went to rows a score row apart, which
// the L1 cache holds in one set.
struct ScoreTile {
    alignas(64) float cell[16][16];  // [cell][row]

    void put(int c, __m512 rows) { _mm512_store_ps(cell[c], rows); }
    void put(int c, __m256 rows) { _mm256_store_ps(cell[c], rows); }
    // scores[r * stride + j] = row r of cell j, for r < n_rows, j < n_cells.
    void write(int n_rows, int n_cells, float* scores, int64_t stride) {
        __m512 a[16];
        for (int j = 0; j < 16; ++j) a[j] = j < n_cells ? _mm512_load_ps(cell[j]) : _mm512_setzero_ps();
        transpose_16x16(a);
        const __mmask16 m = static_cast<__mmask16>((1u << n_cells) - 1);
        for (int r = 0; r < n_rows; ++r) _mm512_mask_storeu_ps(scores + r * stride, m, a[r]);
    }
};

#if defined(MOESERVE_GROUP_VNNI)

// The unsigned codes of one K block, the same 32 bytes in both 256-bit halves.
struct Q4_0Codes {
    static constexpr int kOffset = 8;
    static constexpr size_t kBlockBytes = sizeof(BlockQ4_0);
    __m512i operator()(const uint8_t* block) const {  // [lo nibbles | hi nibbles] = elements 0..31
        const __m512i q = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2)));
        return _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFF00FF00u, q, 4), _mm512_set1_epi8(0x0F));
    }
};
struct Q8_0Codes {
    static constexpr int kOffset = 128;
    static constexpr size_t kBlockBytes = sizeof(BlockQ8_0);
    __m512i operator()(const uint8_t* block) const {
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2)));
        return _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)));
    }
};

void pack_q8_0_rows(const uint8_t* q, size_t row_bytes, int n_rows, int nb, int offset, uint8_t* packed) {
    std::memset(packed, 0, static_cast<size_t>(chunks_of(n_rows)) * nb * kPairs * kPairBlockBytes);
    for (int r = 0; r < n_rows; ++r) {
        const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(q + r * row_bytes);
        const int chunk = r / kChunkRows, pair = (r % kChunkRows) / 2, half = r % 2;
        for (int b = 0; b < nb; ++b) {
            uint8_t* e = packed + ((static_cast<size_t>(chunk) * nb + b) * kPairs + pair) * kPairBlockBytes;
            std::memcpy(e + 32 * half, y[b].qs, 32);
            int32_t start[8];
            for (int i = 0; i < 8; ++i)
                start[i] = -offset * (y[b].qs[4 * i] + y[b].qs[4 * i + 1] + y[b].qs[4 * i + 2] + y[b].qs[4 * i + 3]);
            std::memcpy(e + 64 + 32 * half, start, 32);
            const float d = fp16_to_fp32(y[b].d);
            for (int i = 0; i < 8; ++i) std::memcpy(e + 128 + 32 * half + 4 * i, &d, 4);
        }
    }
}

// The scores of one chunk of 8 query rows for NC consecutive cells, put in
// the chunk's tile at column j. Per K block and pair of rows: the exact
// integer lanes (VPDPBUSD from the start values), d_q * d_k (the AVX2 kernel
// multiplies the same two floats, in the other order) and one FMA of the
// converted lanes into the pair's accumulator. Cell after cell, a cell's
// chain of nb FMAs and its reduction left the core too little independent
// work, and every cell loaded the packed queries again, when this core loads
// one 512-bit vector a cycle. Four cells side by side, the queries loaded
// once for them (Zen 5, a decoded token's 8 rows, K rows in L2: 73 -> 53
// -> 34 cycles a cell).
template <int NC, int kNb, typename Codes>
inline void score_cells(const Codes& codes, const uint8_t* const* k, const uint8_t* pq, int nb, size_t block_step,
                        __m256 vscale, ScoreTile& tile, int j) {
    if (kNb > 0) nb = kNb;
    __m512 acc[NC][kPairs];
    for (int i = 0; i < NC; ++i)
        for (int p = 0; p < kPairs; ++p) acc[i][p] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b) {
        __m512i u[NC];
        __m512 dk[NC];
        for (int i = 0; i < NC; ++i) {
            const uint8_t* block = k[i] + b * Codes::kBlockBytes;
            u[i] = codes(block);
            dk[i] = _mm512_set1_ps(fp16_to_fp32(load_u16(block)));
        }
        const uint8_t* e = pq + b * block_step;
        for (int p = 0; p < kPairs; ++p, e += kPairBlockBytes) {
            __m512i q = _mm512_loadu_si512(e), start = _mm512_loadu_si512(e + 64);
            __m512 dq = _mm512_loadu_ps(reinterpret_cast<const float*>(e + 128));
            asm("" : "+v"(q), "+v"(start), "+v"(dq));  // kept in registers, not folded into each use
            for (int i = 0; i < NC; ++i) {
                const __m512i s = _mm512_dpbusd_epi32(start, u[i], q);  // exact integer lanes
                acc[i][p] = _mm512_fmadd_ps(_mm512_mul_ps(dq, dk[i]), _mm512_cvtepi32_ps(s), acc[i][p]);
            }
        }
    }
    for (int i = 0; i < NC; ++i) tile.put(j + i, _mm256_mul_ps(reduce_8_rows_of_8(acc[i]), vscale));
}

template <typename Codes>
void score_quantized(const uint8_t* const* k_rows, int64_t n_cells, const uint8_t* packed, int n_rows, int nb,
                     float scale, float* scores, int64_t stride) {
    const Codes codes;
    const int n_chunks = chunks_of(n_rows);
    const size_t row_bytes = nb * Codes::kBlockBytes;
    const size_t block_step = kPairs * kPairBlockBytes;
    const __m256 vscale = _mm256_set1_ps(scale);
    std::vector<ScoreTile> tiles(n_chunks);
    for (int64_t c0 = 0; c0 < n_cells; c0 += 16) {
        const int nc = static_cast<int>(std::min<int64_t>(16, n_cells - c0));
        for (int j = 0; j < nc;) {
            const int64_t c = c0 + j;
            const int step = nc - j >= 4 ? 4 : 1;
            for (int64_t a = c + kPrefetchAhead; a < std::min(c + kPrefetchAhead + step, n_cells); ++a)
                prefetch_row(k_rows[a], row_bytes);
            for (int ch = 0; ch < n_chunks; ++ch) {
                const uint8_t* pq = packed + static_cast<size_t>(ch) * nb * block_step;
                if (step == 4 && nb == 4)  // heads of 128: the block loop unrolled
                    score_cells<4, 4>(codes, k_rows + c, pq, nb, block_step, vscale, tiles[ch], j);
                else if (step == 4)
                    score_cells<4, 0>(codes, k_rows + c, pq, nb, block_step, vscale, tiles[ch], j);
                else
                    score_cells<1, 0>(codes, k_rows + c, pq, nb, block_step, vscale, tiles[ch], j);
            }
            j += step;
        }
        for (int ch = 0; ch < n_chunks; ++ch)
            tiles[ch].write(std::min(kChunkRows, n_rows - ch * kChunkRows), nc, scores + ch * kChunkRows * stride + c0,
                            stride);
    }
}

#endif  // MOESERVE_GROUP_VNNI

// Sixteen registers -> their 16 sums in lanes 0..15, each in
// _mm512_reduce_add_ps's tree (i + i+8, i + i+4, i + i+2, 0 + 1).
inline __m512 reduce_16_rows(const __m512 a[16]) {
    __m512 t[8], u[4], v[2];
    for (int j = 0; j < 8; ++j)  // lanes 0..7: row 2j, 8..15: row 2j + 1
        t[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], 0xEE));
    for (int m = 0; m < 4; ++m) u[m] = sum_halves_of_quads(t[2 * m], t[2 * m + 1]);  // lane k: row 4m + k
    for (int n = 0; n < 2; ++n) v[n] = sum_pairs(u[2 * n], u[2 * n + 1]);
    const __m512 w = sum_adjacent(v[0], v[1]);  // lane 4k + j: row 4j + k
    const __m512i to_rows = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(to_rows, w);
}

// Eight registers -> their 8 sums in lanes 0..7, in the same tree.
inline __m256 reduce_8_rows(const __m512 a[8]) {
    __m512 t[4];
    for (int j = 0; j < 4; ++j)
        t[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], 0xEE));
    return reduce_8_rows_of_8(t);
}

// R f32 query rows against one f16 K row: per row the FMA chain of the
// AVX-512 f32 dot (16 lanes, in element order). q is slice-major (see
// pack_group_queries): slice i of row r at q[(i * rows_pad + r) * 16].
template <int R>
inline void f16_dots(const uint16_t* k, const float* q, int rows_pad, int head_dim, __m512 acc[R]) {
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int i = 0; i < head_dim; i += 16, q += rows_pad * 16) {
        const __m512 kv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k + i)));
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * 16), kv, acc[r]);
    }
}

// f16_dots for two cells at once: each query slice loaded once for both. On
// Zen 5 (this VM) a core loads one 512-bit vector a cycle, so one cell's 8
// FMAs per K slice, each with its own query load, ran at one FMA a cycle;
// shared, two (8 query rows, heads of 128, from L2: 95 -> 61 cycles a cell).
// Per cell the same FMAs in the same order.
template <int R>
inline void f16_dots_two_cells(const uint16_t* k0, const uint16_t* k1, const float* q, int rows_pad, int head_dim,
                               __m512 acc[2][R]) {
    for (int r = 0; r < R; ++r) acc[0][r] = acc[1][r] = _mm512_setzero_ps();
    for (int i = 0; i < head_dim; i += 16, q += rows_pad * 16) {
        const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k0 + i)));
        const __m512 b = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k1 + i)));
        for (int r = 0; r < R; ++r) {
            __m512 qr = _mm512_loadu_ps(q + r * 16);
            asm("" : "+v"(qr));  // one load for both cells: GCC would fold it into each FMA
            acc[0][r] = _mm512_fmadd_ps(qr, a, acc[0][r]);
            acc[1][r] = _mm512_fmadd_ps(qr, b, acc[1][r]);
        }
    }
}

// Few query rows (small GQA groups): only the real rows, each summed in
// reduce_add's tree, one instance per count.
template <int R>
void score_f16_few(const uint8_t* const* k_rows, int64_t n_cells, const float* q, int rows_pad, int head_dim,
                   float scale, float* scores, int64_t stride) {
    const size_t row_bytes = static_cast<size_t>(head_dim) * 2;
    for (int64_t c0 = 0; c0 < n_cells; c0 += 16) {
        const int nc = static_cast<int>(std::min<int64_t>(16, n_cells - c0));
        ScoreTile tile;
        for (int j = 0; j < nc; ++j) {
            if (c0 + j + kPrefetchAhead < n_cells) prefetch_row(k_rows[c0 + j + kPrefetchAhead], row_bytes);
            __m512 acc[R];
            f16_dots<R>(reinterpret_cast<const uint16_t*>(k_rows[c0 + j]), q, rows_pad, head_dim, acc);
            for (int r = 0; r < R; ++r) tile.cell[j][r] = _mm512_reduce_add_ps(acc[r]) * scale;
        }
        tile.write(R, nc, scores + c0, stride);
    }
}

// Lane p + lane p+8 of NC cells' dots (see score_f16_lanes): two chains of
// FMAs over the slices.
template <int NC, int kHd>
__attribute__((always_inline)) inline void lane_pair_sum(const float* qt, const float* kf, int head_dim, int p,
                                                         __m512 (&a)[NC]) {
    if (kHd > 0) head_dim = kHd;
    __m512 lo[NC], hi[NC];
    for (int c = 0; c < NC; ++c) lo[c] = hi[c] = _mm512_setzero_ps();
    for (int i = 0; i < head_dim; i += 16) {
        const __m512 q_lo = _mm512_loadu_ps(qt + (i + p) * 16), q_hi = _mm512_loadu_ps(qt + (i + p + 8) * 16);
        for (int c = 0; c < NC; ++c) {
            lo[c] = _mm512_fmadd_ps(q_lo, _mm512_set1_ps(kf[c * head_dim + i + p]), lo[c]);
            hi[c] = _mm512_fmadd_ps(q_hi, _mm512_set1_ps(kf[c * head_dim + i + p + 8]), hi[c]);
        }
    }
    for (int c = 0; c < NC; ++c) a[c] = _mm512_add_ps(lo[c], hi[c]);
}

// (A_p + A_p+4) + (A_p+2 + A_p+6) of the pair sums A: the tree's half for p = 0 or 1.
template <int NC, int kHd>
__attribute__((always_inline)) inline void lane_quad_sum(const float* qt, const float* kf, int head_dim, int p,
                                                         __m512 (&b)[NC]) {
    __m512 x[NC], y[NC], z[NC];
    lane_pair_sum<NC, kHd>(qt, kf, head_dim, p, x);
    lane_pair_sum<NC, kHd>(qt, kf, head_dim, p + 4, y);
    for (int c = 0; c < NC; ++c) z[c] = _mm512_add_ps(x[c], y[c]);
    lane_pair_sum<NC, kHd>(qt, kf, head_dim, p + 2, x);
    lane_pair_sum<NC, kHd>(qt, kf, head_dim, p + 6, y);
    for (int c = 0; c < NC; ++c) b[c] = _mm512_add_ps(z[c], _mm512_add_ps(x[c], y[c]));
}

// Sixteen query rows in the 16 lanes of one register, NC cells at a time:
// qt[i * 16 + r] is element i of row r, and each K element, converted to f32
// once, is broadcast from memory into the FMAs of all 16 rows. A row's score
// is still its dot in the order f16_dots + reduce_16_rows give it: the lane
// l partial sums (elements l, l+16, ...) as separate registers, combined in
// reduce_add's tree (l + l+8, then + l+4, + l+2, 0 + 1) by vertical adds,
// so no horizontal reduction is left. k_rows are the NC cells' rows; kHd > 0
// fixes head_dim at compile time (the common sizes: the loops unroll).
template <int NC, int kHd>
inline void score_f16_lanes(const uint8_t* const* k_rows, const float* qt, int head_dim, float* kf, __m512 out[NC]) {
    if (kHd > 0) head_dim = kHd;
    for (int c = 0; c < NC; ++c) {
        const uint16_t* k = reinterpret_cast<const uint16_t*>(k_rows[c]);
        for (int i = 0; i < head_dim; i += 16)
            _mm512_store_ps(kf + c * head_dim + i,
                            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k + i))));
    }
    // Without this the compiler forwards the stores above into registers and
    // broadcasts with permutes, on the port the FMAs need.
    asm volatile("" ::: "memory");
    __m512 even[NC], odd[NC];
    lane_quad_sum<NC, kHd>(qt, kf, head_dim, 0, even);
    lane_quad_sum<NC, kHd>(qt, kf, head_dim, 1, odd);
    for (int c = 0; c < NC; ++c) out[c] = _mm512_add_ps(even[c], odd[c]);
}

// Up to 16 cells' scores of one lane group (rows of the score matrix, stride apart).
template <int kHd>
void score_f16_lane_tile(const uint8_t* const* k_rows, int nc, const float* qt, int head_dim, __m512 vscale, float* kf,
                         int n_rows, float* scores, int64_t stride) {
    ScoreTile tile;
    int j = 0;
    for (; j + kLaneCells <= nc; j += kLaneCells) {
        __m512 s[kLaneCells];
        score_f16_lanes<kLaneCells, kHd>(k_rows + j, qt, head_dim, kf, s);
        for (int c = 0; c < kLaneCells; ++c) tile.put(j + c, _mm512_mul_ps(s[c], vscale));
    }
    for (; j < nc; ++j) {
        __m512 s[1];
        score_f16_lanes<1, kHd>(k_rows + j, qt, head_dim, kf, s);
        tile.put(j, _mm512_mul_ps(s[0], vscale));
    }
    tile.write(n_rows, nc, scores, stride);
}

void score_f16(const uint8_t* const* k_rows, int64_t n_cells, const float* q, int n_rows, int head_dim, float scale,
               float* scores, int64_t stride) {
    const int rows_pad = padded_rows(n_rows);
    switch (n_rows) {
        case 1:
            return score_f16_few<1>(k_rows, n_cells, q, rows_pad, head_dim, scale, scores, stride);
        case 2:
            return score_f16_few<2>(k_rows, n_cells, q, rows_pad, head_dim, scale, scores, stride);
        case 3:
            return score_f16_few<3>(k_rows, n_cells, q, rows_pad, head_dim, scale, scores, stride);
        case 4:
            return score_f16_few<4>(k_rows, n_cells, q, rows_pad, head_dim, scale, scores, stride);
        default:
            break;
    }
    const size_t row_bytes = static_cast<size_t>(head_dim) * 2;
    const __m512 vscale = _mm512_set1_ps(scale);
    const int groups = lane_groups(n_rows, head_dim);
    const float* qt = q + static_cast<size_t>(rows_pad) * head_dim;  // the lane groups, after the slice-major rows
    alignas(64) float kf[kLaneCells * kLaneMaxDim];
    for (int64_t c0 = 0; c0 < n_cells; c0 += 16) {
        const int nc = static_cast<int>(std::min<int64_t>(16, n_cells - c0));
        // Every row is prefetched, also rows at a constant stride (a sequence's
        // cells in order): one KV head's slice of each row, 4 lines of every
        // 16 for Qwen3's 4 heads, is a stride the hardware prefetcher follows
        // too slowly on Zen 5 (decode at 32K cells: 26 -> 42 tokens/s with
        // the prefetches; on the earlier Xeon leaving them out was 12% faster).
        for (int j = 0; j < nc; ++j)
            if (c0 + j + kPrefetchAhead < n_cells) prefetch_row(k_rows[c0 + j + kPrefetchAhead], row_bytes);
        for (int g = 0; g < groups; ++g) {
            const float* qg = qt + static_cast<size_t>(g) * head_dim * 16;
            float* sg = scores + 16 * g * stride + c0;
            const int rows = std::min(16, n_rows - 16 * g);
            if (head_dim == 128)
                score_f16_lane_tile<128>(k_rows + c0, nc, qg, head_dim, vscale, kf, rows, sg, stride);
            else if (head_dim == 64)
                score_f16_lane_tile<64>(k_rows + c0, nc, qg, head_dim, vscale, kf, rows, sg, stride);
            else
                score_f16_lane_tile<0>(k_rows + c0, nc, qg, head_dim, vscale, kf, rows, sg, stride);
        }
        // The rows left (wide heads; the last 8 or fewer): 16 at a time while
        // more than 8 remain (the packed rows are a multiple of 8), then 8,
        // each row's lanes summed by reduce_16_rows / reduce_8_rows.
        for (int r0 = 16 * groups; r0 < n_rows;) {
            ScoreTile tile;
            const int step = n_rows - r0 > kChunkRows ? 16 : 8;
            for (int j = 0; j < nc; ++j) {
                const uint16_t* k = reinterpret_cast<const uint16_t*>(k_rows[c0 + j]);
                if (step == 16) {
                    __m512 acc[16];
                    f16_dots<16>(k, q + r0 * 16, rows_pad, head_dim, acc);
                    tile.put(j, _mm512_mul_ps(reduce_16_rows(acc), vscale));
                } else if (j + 1 < nc) {  // two cells side by side (see f16_dots_two_cells)
                    __m512 acc[2][8];
                    f16_dots_two_cells<8>(k, reinterpret_cast<const uint16_t*>(k_rows[c0 + j + 1]), q + r0 * 16,
                                          rows_pad, head_dim, acc);
                    tile.put(j, _mm256_mul_ps(reduce_8_rows(acc[0]), _mm512_castps512_ps256(vscale)));
                    tile.put(++j, _mm256_mul_ps(reduce_8_rows(acc[1]), _mm512_castps512_ps256(vscale)));
                } else {
                    __m512 acc[8];
                    f16_dots<8>(k, q + r0 * 16, rows_pad, head_dim, acc);
                    tile.put(j, _mm256_mul_ps(reduce_8_rows(acc), _mm512_castps512_ps256(vscale)));
                }
            }
            tile.write(std::min(step, n_rows - r0), nc, scores + r0 * stride + c0, stride);
            r0 += step;
        }
    }
}

// ---------------------------------------------------------------- V sums

// Elements 16s..16s+15 of a cached V row as f32, exactly as dequantize_row gives them.
struct F16Values {
    __m512 operator()(const uint8_t* row, int s) const {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * s)));
    }
};
struct Q4_0Values {  // (nibble - 8) * d; low nibbles are elements 0..15 of a block, high ones 16..31
    __m512 operator()(const uint8_t* row, int s) const {
        const uint8_t* block = row + (s >> 1) * sizeof(BlockQ4_0);
        __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
        if (s & 1) q = _mm_srli_epi16(q, 4);
        const __m512i n = _mm512_cvtepu8_epi32(_mm_and_si128(q, _mm_set1_epi8(0x0F)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(n, _mm512_set1_epi32(8))),
                             _mm512_set1_ps(fp16_to_fp32(load_u16(block))));
    }
};
struct Q8_0Values {  // q * d
    __m512 operator()(const uint8_t* row, int s) const {
        const uint8_t* block = row + (s >> 1) * sizeof(BlockQ8_0);
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * (s & 1)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)),
                             _mm512_set1_ps(fp16_to_fp32(load_u16(block))));
    }
};

// R query rows, one 16-element slice of V at a time: the R accumulators of
// the slice stay in registers while the chunk's cells stream past, and each
// V element is converted once for all R rows. The weight of row r for cell
// c is w[r * row_stride + c * cell_stride].
template <int R, typename Values>
void accumulate_rows(const uint8_t* const* v_rows, int64_t n_cells, const float* w, int64_t row_stride,
                     int64_t cell_stride, int head_dim, float* acc, Values values) {
    for (int s = 0; s < head_dim / 16; ++s) {
        __m512 a[R];
        for (int r = 0; r < R; ++r) a[r] = _mm512_loadu_ps(acc + r * head_dim + 16 * s);
        const float* wc = w;
        for (int64_t c = 0; c < n_cells; ++c, wc += cell_stride) {
            const __m512 v = values(v_rows[c], s);
            for (int r = 0; r < R; ++r) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(wc[r * row_stride]), v, a[r]);
        }
        for (int r = 0; r < R; ++r) _mm512_storeu_ps(acc + r * head_dim + 16 * s, a[r]);
    }
}

template <typename Values>
void accumulate(const uint8_t* const* v_rows, int64_t n_cells, const float* p, int64_t stride, int n_rows, int head_dim,
                size_t row_bytes, float* acc) {
    const Values values;
    alignas(64) float pt[kValueChunk * 16];  // one chunk's weights of up to 16 rows, cell by cell
    const int64_t chunk = n_rows <= 16 ? kValueChunkFewRows : kValueChunk;
    for (int64_t c0 = 0; c0 < n_cells; c0 += chunk) {
        const int64_t n = std::min(chunk, n_cells - c0);
        for (int64_t c = 0; c < n; ++c)  // the chunk after this one, while this one is summed from L1
            if (c0 + chunk + c < n_cells) prefetch_row(v_rows[c0 + chunk + c], row_bytes);
        const uint8_t* const* rows = v_rows + c0;
        if (n_rows <= 4) {  // few rows (small GQA groups): their weights straight from the score rows
            const float* w = p + c0;
            if (n_rows == 4) accumulate_rows<4>(rows, n, w, stride, 1, head_dim, acc, values);
            if (n_rows == 3) accumulate_rows<3>(rows, n, w, stride, 1, head_dim, acc, values);
            if (n_rows == 2) accumulate_rows<2>(rows, n, w, stride, 1, head_dim, acc, values);
            if (n_rows == 1) accumulate_rows<1>(rows, n, w, stride, 1, head_dim, acc, values);
            continue;
        }
        // More rows: 16 at a time, their weights for the chunk transposed to
        // pt[c * 16 + r] first; read from the score rows, the weights of 16
        // rows a score row apart took more registers than there are.
        for (int g = 0; g < n_rows; g += 16) {
            const int ng = std::min(16, n_rows - g);
            for (int64_t j0 = 0; j0 < n; j0 += 16) {
                const int nj = static_cast<int>(std::min<int64_t>(16, n - j0));
                const __mmask16 m = static_cast<__mmask16>((1u << nj) - 1);
                __m512 a[16];
                for (int r = 0; r < 16; ++r)
                    a[r] = r < ng ? _mm512_maskz_loadu_ps(m, p + (g + r) * stride + c0 + j0) : _mm512_setzero_ps();
                transpose_16x16(a);
                for (int j = 0; j < nj; ++j) _mm512_store_ps(pt + (j0 + j) * 16, a[j]);
            }
            for (int r = 0; r < ng;) {
                const float* w = pt + r;
                float* ar = acc + static_cast<int64_t>(g + r) * head_dim;
                const int left = ng - r;
                if (left >= 16) {
                    accumulate_rows<16>(rows, n, w, 1, 16, head_dim, ar, values);
                    r += 16;
                } else if (left >= 8) {
                    accumulate_rows<8>(rows, n, w, 1, 16, head_dim, ar, values);
                    r += 8;
                } else if (left >= 4) {
                    accumulate_rows<4>(rows, n, w, 1, 16, head_dim, ar, values);
                    r += 4;
                } else if (left >= 2) {
                    accumulate_rows<2>(rows, n, w, 1, 16, head_dim, ar, values);
                    r += 2;
                } else {
                    accumulate_rows<1>(rows, n, w, 1, 16, head_dim, ar, values);
                    r += 1;
                }
            }
        }
    }
}

#endif  // MOESERVE_GROUP_KERNELS

}  // namespace

bool has_group_scores(GgmlType type_k, int head_dim) {
#if defined(MOESERVE_GROUP_KERNELS)
    if (type_k == GgmlType::F16) return head_dim > 0 && head_dim % 16 == 0;
#if defined(MOESERVE_GROUP_VNNI)
    if (is_group_quantized_k(type_k)) return head_dim > 0 && head_dim % kQK == 0;
#endif
#endif
    (void)type_k;
    (void)head_dim;
    return false;
}

bool has_group_values(GgmlType type_v, int head_dim) {
#if defined(MOESERVE_GROUP_KERNELS)
    if (type_v == GgmlType::F16) return head_dim > 0 && head_dim % 16 == 0;
    if (type_v == GgmlType::Q4_0 || type_v == GgmlType::Q8_0) return head_dim > 0 && head_dim % kQK == 0;
#endif
    (void)type_v;
    (void)head_dim;
    return false;
}

size_t group_query_bytes(GgmlType type_k, int n_rows, int head_dim) {
    if (is_group_quantized_k(type_k))
        return static_cast<size_t>(chunks_of(n_rows)) * (head_dim / kQK) * kPairs * kPairBlockBytes;
    const size_t lanes = static_cast<size_t>(lane_groups(n_rows, head_dim)) * 16 * head_dim;
    return (static_cast<size_t>(padded_rows(n_rows)) * head_dim + lanes) * sizeof(float);
}

void pack_group_queries(GgmlType type_k, const void* q_rows, size_t q_row_bytes, int n_rows, int head_dim,
                        void* packed) {
#if defined(MOESERVE_GROUP_VNNI)
    if (is_group_quantized_k(type_k))
        return pack_q8_0_rows(static_cast<const uint8_t*>(q_rows), q_row_bytes, n_rows, head_dim / kQK,
                              type_k == GgmlType::Q4_0 ? Q4_0Codes::kOffset : Q8_0Codes::kOffset,
                              static_cast<uint8_t*>(packed));
#endif
    // F16 K: slice-major, slice i (elements 16i..16i+15) of row r at
    // (i * rows_pad + r) * 16, so a pass over the rows walks one pointer.
    float* out = static_cast<float*>(packed);
    const int rows_pad = padded_rows(n_rows);
    std::fill(out, out + static_cast<size_t>(rows_pad) * head_dim, 0.0f);
    for (int r = 0; r < n_rows; ++r) {
        const float* row = reinterpret_cast<const float*>(static_cast<const uint8_t*>(q_rows) + r * q_row_bytes);
        for (int i = 0; i < head_dim / 16; ++i)
            std::memcpy(out + (static_cast<size_t>(i) * rows_pad + r) * 16, row + 16 * i, 16 * sizeof(float));
    }
    // Then the rows of each lane group transposed (rows past n_rows zero).
    float* lanes = out + static_cast<size_t>(rows_pad) * head_dim;
    const int groups = lane_groups(n_rows, head_dim);
    std::fill(lanes, lanes + static_cast<size_t>(groups) * 16 * head_dim, 0.0f);
    for (int r = 0; r < std::min(n_rows, 16 * groups); ++r) {
        const float* row = reinterpret_cast<const float*>(static_cast<const uint8_t*>(q_rows) + r * q_row_bytes);
        for (int i = 0; i < head_dim; ++i) lanes[(static_cast<size_t>(r / 16) * head_dim + i) * 16 + r % 16] = row[i];
    }
}

void score_group_rows(GgmlType type_k, const uint8_t* const* k_rows, int64_t n_cells, const void* packed, int n_rows,
                      int head_dim, float scale, float* scores, int64_t stride) {
#if defined(MOESERVE_GROUP_KERNELS)
    const uint8_t* pq = static_cast<const uint8_t*>(packed);
    switch (type_k) {
#if defined(MOESERVE_GROUP_VNNI)
        case GgmlType::Q4_0:
            return score_quantized<Q4_0Codes>(k_rows, n_cells, pq, n_rows, head_dim / kQK, scale, scores, stride);
        case GgmlType::Q8_0:
            return score_quantized<Q8_0Codes>(k_rows, n_cells, pq, n_rows, head_dim / kQK, scale, scores, stride);
#endif
        case GgmlType::F16:
            return score_f16(k_rows, n_cells, reinterpret_cast<const float*>(pq), n_rows, head_dim, scale, scores,
                             stride);
        default:
            break;
    }
#endif
    (void)k_rows, (void)n_cells, (void)packed, (void)n_rows, (void)head_dim, (void)scale, (void)scores, (void)stride;
    throw std::invalid_argument(std::string("score_group_rows: no kernel for K type ") +
                                std::string(ggml_type_name(type_k)));
}

void accumulate_group_rows(GgmlType type_v, const uint8_t* const* v_rows, int64_t n_cells, const float* p,
                           int64_t stride, int n_rows, int head_dim, float* acc) {
#if defined(MOESERVE_GROUP_KERNELS)
    switch (type_v) {
        case GgmlType::F16:
            return accumulate<F16Values>(v_rows, n_cells, p, stride, n_rows, head_dim, head_dim * 2, acc);
        case GgmlType::Q4_0:
            return accumulate<Q4_0Values>(v_rows, n_cells, p, stride, n_rows, head_dim,
                                          head_dim / kQK * sizeof(BlockQ4_0), acc);
        case GgmlType::Q8_0:
            return accumulate<Q8_0Values>(v_rows, n_cells, p, stride, n_rows, head_dim,
                                          head_dim / kQK * sizeof(BlockQ8_0), acc);
        default:
            break;
    }
#endif
    (void)v_rows, (void)n_cells, (void)p, (void)stride, (void)n_rows, (void)head_dim, (void)acc;
    throw std::invalid_argument(std::string("accumulate_group_rows: no kernel for V type ") +
                                std::string(ggml_type_name(type_v)));
}

}  // namespace moeserve
