// Integer scores of quantized latent rows (see latent_scores.h).
#include "backend/cpu/latent_scores.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/x86_intrinsics.h"
#include "quant/block_formats.h"
#include "quant/fp16.h"
#include "quant/quantize.h"

namespace moeserve {
namespace {

constexpr int kMaxRowBlocks = 24;  // blocks per row the stack buffers hold (a 768-value row)

// A cached block: its fp16 scale, then the codes (Q4_0: 16 bytes, element j
// the low nibble of byte j and element j+16 the high one; Q8_0: 32 signed bytes).
constexpr size_t block_bytes(GgmlType type) {
    return type == GgmlType::Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
}

// The codes are used unsigned (vpdpbusd multiplies unsigned by signed bytes):
// Q4_0 stores value+8 already; Q8_0's signed code c is read as c+128.
constexpr int32_t code_offset(GgmlType type) {
    return type == GgmlType::Q4_0 ? 8 : 128;
}

// Unsigned code k (0..31) of a cached block, in q's element order.
inline int32_t unsigned_code(GgmlType type, const uint8_t* block, int k) {
    if (type == GgmlType::Q4_0) {
        const uint8_t byte = block[2 + (k & 15)];
        return k < 16 ? (byte & 0x0F) : (byte >> 4);
    }
    return static_cast<int32_t>(static_cast<uint8_t>(block[2 + k] ^ 0x80));
}

uint16_t block_scale_bits(const uint8_t* block) {
    uint16_t d;
    std::memcpy(&d, block, sizeof d);
    return d;
}

// ggml's sum tree of its eight lanes (hsum_float_8): (0+4, 1+5, 2+6, 3+7),
// then pairs 0+2 and 1+3 of those, then the two.
inline float sum_lanes(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// The same numbers as the vector kernel, one row and query at a time: lane
// w of block b is the exact integer Σ over elements 4w..4w+3 of code·q
// (less the offset), fused into lane w's float accumulator with the rounded
// product of the two block scales; the lanes are summed in ggml's tree.
[[maybe_unused]] void score_portable(const LatentQueries& q, int first, int count, const uint8_t* const* rows,
                                     int n_rows, float scale, float* s, int ld) {
    const size_t bb = block_bytes(q.type);
    for (int j = 0; j < n_rows; ++j) {
        for (int i = first; i < first + count; ++i) {
            float acc[8] = {};
            for (int b = 0; b < q.n_blocks; ++b) {
                const uint8_t* block = rows[j] + b * bb;
                const LatentQueries::Block& qb = q.blocks[static_cast<size_t>(i) * q.n_blocks + b];
                const auto* qbytes = reinterpret_cast<const int8_t*>(qb.q);
                const float dd = fp16_to_fp32(block_scale_bits(block)) * qb.d;
                for (int w = 0; w < 8; ++w) {
                    int32_t lane = qb.init[w];
                    for (int k = 4 * w; k < 4 * w + 4; ++k) lane += unsigned_code(q.type, block, k) * qbytes[k];
                    acc[w] = std::fma(dd, static_cast<float>(lane), acc[w]);
                }
            }
            s[static_cast<size_t>(i - first) * ld + j] = sum_lanes(acc) * scale;
        }
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)

constexpr int kLanes = 16;     // rows per group: one per lane
constexpr int kQueryPass = 3;  // queries scored per pass over a group's codes (24 accumulators)

// One group of 16 rows transposed: codes[b * 8 + w] holds, in lane r, the
// four unsigned codes of row r that pair with dword w of q's block b;
// scales[b] the rows' block scales.
struct RowGroup {
    __m512i codes[kMaxRowBlocks * 8];
    __m512 scales[kMaxRowBlocks];
};

// Four dwords (16 bytes at `offset` of each row) of 16 rows, transposed:
// out[w] lane r = dword w of row r. Rows a, a+4, a+8, a+12 share a vector
// (one per 128-bit lane), then a 4×4 dword transpose within each lane puts
// row 4L+a at dword 4L+a.
inline void transpose_16x4(const uint8_t* const* rows, size_t offset, __m512i out[4]) {
    __m512i z[4];
    for (int a = 0; a < 4; ++a) {
        z[a] = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a] + offset)));
        z[a] = _mm512_inserti32x4(z[a], _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a + 4] + offset)), 1);
        z[a] = _mm512_inserti32x4(z[a], _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a + 8] + offset)), 2);
        z[a] = _mm512_inserti32x4(z[a], _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[a + 12] + offset)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t2);
    out[1] = _mm512_unpackhi_epi64(t0, t2);
    out[2] = _mm512_unpacklo_epi64(t1, t3);
    out[3] = _mm512_unpackhi_epi64(t1, t3);
}

void transpose_group(GgmlType type, const uint8_t* const* rows, int n_blocks, RowGroup& g) {
    const size_t bb = block_bytes(type);
    for (int b = 0; b < n_blocks; ++b) {
        const size_t at = b * bb;
        __m512i t[4];
        if (type == GgmlType::Q4_0) {
            // Dword w of the 16 code bytes: low nibbles are elements 4w..4w+3,
            // high nibbles 16+4w..16+4w+3, which pair with q's dwords w and 4+w.
            const __m512i low = _mm512_set1_epi8(0x0F);
            transpose_16x4(rows, at + 2, t);
            for (int w = 0; w < 4; ++w) {
                g.codes[b * 8 + w] = _mm512_and_si512(t[w], low);
                g.codes[b * 8 + 4 + w] = _mm512_and_si512(_mm512_srli_epi16(t[w], 4), low);
            }
        } else {
            const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
            for (int half = 0; half < 2; ++half) {
                transpose_16x4(rows, at + 2 + 16 * half, t);
                for (int w = 0; w < 4; ++w) g.codes[b * 8 + 4 * half + w] = _mm512_xor_si512(t[w], flip);
            }
        }
        alignas(32) uint16_t d[kLanes];
        for (int r = 0; r < kLanes; ++r) d[r] = block_scale_bits(rows[r] + at);
        g.scales[b] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d)));
    }
}

// QB queries from `first` against a transposed group: per query eight
// accumulators of 16 rows (ggml's eight lanes, one vector per lane), each
// block's lane w one vpdpbusd from the lane's offset term, converted and
// fused in; then ggml's sum tree across the eight vectors.
template <int QB>
inline void score_pass(const LatentQueries& q, int first, const RowGroup& g, float scale, float* s, int ld,
                       __mmask16 valid) {
    __m512 acc[QB][8];
    for (auto& a : acc)
        for (auto& lane : a) lane = _mm512_setzero_ps();
    const LatentQueries::Block* qb = q.blocks.data() + static_cast<size_t>(first) * q.n_blocks;
    for (int b = 0; b < q.n_blocks; ++b) {
        __m512 dd[QB];
        for (int i = 0; i < QB; ++i)
            dd[i] = _mm512_mul_ps(g.scales[b], _mm512_set1_ps(qb[static_cast<size_t>(i) * q.n_blocks + b].d));
        for (int w = 0; w < 8; ++w) {
            const __m512i c = g.codes[b * 8 + w];
            for (int i = 0; i < QB; ++i) {
                const LatentQueries::Block& x = qb[static_cast<size_t>(i) * q.n_blocks + b];
                const __m512i lane = _mm512_dpbusd_epi32(_mm512_set1_epi32(x.init[w]), c, _mm512_set1_epi32(x.q[w]));
                acc[i][w] = _mm512_fmadd_ps(dd[i], _mm512_cvtepi32_ps(lane), acc[i][w]);
            }
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int i = 0; i < QB; ++i) {
        const __m512 total =
            _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][4]), _mm512_add_ps(acc[i][2], acc[i][6])),
                          _mm512_add_ps(_mm512_add_ps(acc[i][1], acc[i][5]), _mm512_add_ps(acc[i][3], acc[i][7])));
        _mm512_mask_storeu_ps(s + static_cast<size_t>(i) * ld, valid, _mm512_mul_ps(total, sc));
    }
}

void score_avx512(const LatentQueries& q, int first, int count, const uint8_t* const* rows, int n_rows, float scale,
                  float* s, int ld) {
    // Lanes past n_rows read an all-zero row (scale 0), and are not stored.
    static const uint8_t zero_row[kMaxRowBlocks * sizeof(BlockQ8_0)] = {};
    alignas(64) RowGroup g;
    for (int j0 = 0; j0 < n_rows; j0 += kLanes) {
        const int n = std::min(kLanes, n_rows - j0);
        const uint8_t* group_rows[kLanes];
        for (int r = 0; r < kLanes; ++r) group_rows[r] = r < n ? rows[j0 + r] : zero_row;
        transpose_group(q.type, group_rows, q.n_blocks, g);
        const __mmask16 valid = static_cast<__mmask16>((1u << n) - 1);
        int i = 0;
        for (; i + kQueryPass <= count; i += kQueryPass)
            score_pass<kQueryPass>(q, first + i, g, scale, s + static_cast<size_t>(i) * ld + j0, ld, valid);
        for (; i < count; ++i) score_pass<1>(q, first + i, g, scale, s + static_cast<size_t>(i) * ld + j0, ld, valid);
    }
}

#endif

}  // namespace

bool has_latent_int_scores(GgmlType type, int width) {
    return (type == GgmlType::Q4_0 || type == GgmlType::Q8_0) && width > 0 && width % kQK == 0 &&
           width / kQK <= kMaxRowBlocks;
}

void LatentQueries::reset(GgmlType cache_type, int queries, int width) {
    type = cache_type;
    n_queries = queries;
    n_blocks = width / kQK;
    blocks.resize(static_cast<size_t>(queries) * n_blocks);
}

void LatentQueries::pack(int i, const float* q) {
    BlockQ8_0 q8[kMaxRowBlocks];
    quantize_row_activation(GgmlType::Q8_0, q, q8, static_cast<int64_t>(n_blocks) * kQK);
    for (int b = 0; b < n_blocks; ++b) {
        Block& x = blocks[static_cast<size_t>(i) * n_blocks + b];
        std::memcpy(x.q, q8[b].qs, sizeof x.q);
        for (int w = 0; w < 8; ++w) {
            int32_t sum = 0;
            for (int k = 4 * w; k < 4 * w + 4; ++k) sum += q8[b].qs[k];
            x.init[w] = -code_offset(type) * sum;
        }
        x.d = fp16_to_fp32(q8[b].d);
    }
}

void score_latent_rows(const LatentQueries& q, int first, int count, const uint8_t* const* rows, int n_rows,
                       float scale, float* s, int ld) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
    score_avx512(q, first, count, rows, n_rows, scale, s, ld);
#else
    score_portable(q, first, count, rows, n_rows, scale, s, ld);
#endif
}

}  // namespace moeserve
