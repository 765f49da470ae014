// Prompt batches against Q4_K, Q5_K, Q6_K and IQ4_XS weights on AVX-512
// VNNI: the 16-token tile forms (vec_dot.h VecDotTile) of the AVX2 dot_q4_k,
// dot_q5_k, dot_q6_k and dot_iq4_xs, bit for bit.
//
// The AVX2 kernels multiply 32 activation bytes by 32 weight codes per
// instruction and keep each super-block's sums in eight int32 lanes (lane j:
// bytes 4j..4j+3 of every 32-value group, times the group's scale). Here the
// 16 tokens of a tile sit in the lanes of a register instead: one
// instruction multiplies a weight dword (broadcast) by that dword of all 16
// tokens, and one more adds it times the scale into lane j's register. So
// each weight super-block is unpacked once per 16 tokens, and the 512-bit
// multiplies do twice the work of the 256-bit ones per instruction (this CPU
// issues both at two per cycle). The integer lanes are the AVX2 kernels'
// exactly, and the float steps after them (one FMA per lane and super-block,
// the K-quants' min and offset terms as each kernel sums them, ggml's sum
// trees) are taken in their order, so every result equals the single-row
// kernel's.
//
// These formats dot with Q8_K activations and share one tile layout, so a
// layer's K-quant and IQ4_XS projections of one input share its tiles.

// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_*()
// placeholders behind _mm512_set1_*); the warnings are false.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "quant/vec_dot_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#include <immintrin.h>

#include <cstring>

#include "quant/block_formats.h"
#include "quant/fp16.h"
#include "quant/k4_scales.h"

namespace moeserve::detail {
namespace {

// A packed tile, per super-block:
//   64 rows of 64 bytes: row q holds dword q of the 256 activation codes
//   (bytes 4q..4q+3) for tokens 0..15;
//   8 rows: row j holds each token's bsums[2j] and bsums[2j+1] (sums of 16
//   codes) as an int16 pair;
//   the 16 tokens' scales d as float.
constexpr int64_t kCodeBytes = 64 * 64;
constexpr int64_t kSumBytes = 8 * 64;
constexpr int64_t kTileBlockBytes = kCodeBytes + kSumBytes + 16 * 4;

size_t tile_bytes(int64_t n) {
    return static_cast<size_t>(n / kQK_K * kTileBlockBytes);
}

void pack_tile(const void* act, size_t act_row_bytes, int n_rows, void* vtile, int64_t n) {
    uint8_t* tile = static_cast<uint8_t*>(vtile);
    const int64_t nb = n / kQK_K;
    if (n_rows < kDotTileRows) std::memset(tile, 0, tile_bytes(n));
    for (int t = 0; t < n_rows; ++t) {
        const auto* y = reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(act) + t * act_row_bytes);
        for (int64_t ib = 0; ib < nb; ++ib) {
            uint8_t* tb = tile + ib * kTileBlockBytes;
            for (int q = 0; q < 64; ++q) std::memcpy(tb + q * 64 + 4 * t, y[ib].qs + 4 * q, 4);
            for (int j = 0; j < 8; ++j) std::memcpy(tb + kCodeBytes + j * 64 + 4 * t, y[ib].bsums + 2 * j, 4);
            std::memcpy(tb + kCodeBytes + kSumBytes + 4 * t, &y[ib].d, 4);
        }
    }
}

// The bsum pairs of row j of a tile block.
inline __m512i bsum_pairs(const uint8_t* tb, int j) {
    return _mm512_loadu_si512(tb + kCodeBytes + j * 64);
}
inline __m512 token_scales(const uint8_t* tb) {
    return _mm512_loadu_ps(tb + kCodeBytes + kSumBytes);
}

// lane += scale · (weight dword · activation dword), for each token: the
// products in int16 pairs (VPMADDUBSW: unsigned codes, signed activations;
// at most 2·127·127 with IQ4_XS's largest value, so no saturation), then
// VPDPWSSD adds scale·(pair + pair),
// exactly the AVX2 kernels' VPMADDUBSW and VPMADDWD by the scale.
// scale16: the scale in every int16.
inline __m512i add_scaled(__m512i lane, uint32_t codes, const uint8_t* act_row, __m512i scale16) {
    const __m512i pairs = _mm512_maddubs_epi16(_mm512_set1_epi32(static_cast<int>(codes)), _mm512_loadu_si512(act_row));
    return _mm512_dpwssd_epi32(lane, pairs, scale16);
}

// ggml's hsum tree over eight lane registers: (l + l+4), then (+2), then (+1).
inline __m512 sum_lanes(const __m512 a[8]) {
    const __m512 t04 = _mm512_add_ps(a[0], a[4]), t26 = _mm512_add_ps(a[2], a[6]);
    const __m512 t15 = _mm512_add_ps(a[1], a[5]), t37 = _mm512_add_ps(a[3], a[7]);
    return _mm512_add_ps(_mm512_add_ps(t04, t26), _mm512_add_ps(t15, t37));
}

// ---------------------------------------------------------------- Q4_K

// A Q4_K/Q5_K super-block's eight lanes against a tile block: lane j =
// Σ_sub sc_sub · (dword j of sub-block sub · that dword of each token). lo/hi
// hold the codes' dwords: qs dword 8c + j carries sub-block 2c in its low
// nibbles (lo) and 2c+1 in its high ones (hi); sm[0..7] the sub-block scales.
inline void k4_lane_sums(const uint32_t* lo, const uint32_t* hi, const uint8_t* sm, const uint8_t* tb,
                         __m512i sumi[8]) {
    for (int j = 0; j < 8; ++j) sumi[j] = _mm512_setzero_si512();
    for (int sub = 0; sub < 8; ++sub) {
        const uint32_t* codes = (sub & 1 ? hi : lo) + 8 * (sub >> 1);
        const __m512i sc = _mm512_set1_epi16(sm[sub]);
        for (int j = 0; j < 8; ++j) sumi[j] = add_scaled(sumi[j], codes[j], tb + (8 * sub + j) * 64, sc);
    }
}

// One weight row against a packed tile: out[k] for tokens k = 0..15.
void q4_k_tile_row(const BlockQ4_K* x, const uint8_t* tile, float* out, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    __m512 acc[8], acc_min[4];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (auto& a : acc_min) a = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* tb = tile + ib * kTileBlockBytes;
        uint8_t sm[16];
        unpack_k4_scales(x[ib].scales, sm);
        // The codes as dwords: qs dword q holds sub-block 2(q/8) in its low
        // nibbles and 2(q/8)+1 in its high ones, lane q%8 of both.
        alignas(64) uint32_t lo[32], hi[32];
        for (int z = 0; z < 2; ++z) {
            const __m512i q = _mm512_loadu_si512(x[ib].qs + 64 * z);
            _mm512_store_si512(lo + 16 * z, _mm512_and_si512(q, m4));
            _mm512_store_si512(hi + 16 * z, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
        }
        __m512i sumi[8];
        k4_lane_sums(lo, hi, sm, tb, sumi);
        const __m512 d8 = token_scales(tb);
        const __m512 scale = _mm512_mul_ps(d8, _mm512_set1_ps(fp16_to_fp32(x[ib].d)));
        for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[j]), acc[j]);
        // The min term: -d8 (a sign flip, as C's unary minus) times dmin, and
        // lane p = m_2p·S_2p + m_2p+1·S_2p+1 with S_b = bsums[2b] + bsums[2b+1].
        const __m512 neg_d8 = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(d8), sign));
        const __m512 neg_dmin = _mm512_mul_ps(neg_d8, _mm512_set1_ps(fp16_to_fp32(x[ib].dmin)));
        for (int p = 0; p < 4; ++p) {
            __m512i lane =
                _mm512_dpwssd_epi32(_mm512_setzero_si512(), bsum_pairs(tb, 2 * p), _mm512_set1_epi16(sm[8 + 2 * p]));
            lane = _mm512_dpwssd_epi32(lane, bsum_pairs(tb, 2 * p + 1), _mm512_set1_epi16(sm[9 + 2 * p]));
            acc_min[p] = _mm512_fmadd_ps(neg_dmin, _mm512_cvtepi32_ps(lane), acc_min[p]);
        }
    }
    // The lanes' tree, plus the min lanes' (l0 + l2) + (l1 + l3): dot_q4_k's last steps.
    const __m512 mins = _mm512_add_ps(_mm512_add_ps(acc_min[0], acc_min[2]), _mm512_add_ps(acc_min[1], acc_min[3]));
    _mm512_storeu_ps(out, _mm512_add_ps(sum_lanes(acc), mins));
}

// ---------------------------------------------------------------- Q5_K

// As Q4_K, with each code's fifth bit from qh (bit 2c of qh[l] for the low
// nibbles of qs chunk c, bit 2c+1 for the high ones), and the min term summed
// as dot_q5_k does: one integer Σ_b m_b·S_b per super-block, fused into a
// float running sum with -d8·dmin.
void q5_k_tile_row(const BlockQ5_K* x, const uint8_t* tile, float* out, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    __m512 acc[8];
    for (auto& a : acc) a = _mm512_setzero_ps();
    __m512 summs = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* tb = tile + ib * kTileBlockBytes;
        uint8_t sm[16];
        unpack_k4_scales(x[ib].scales, sm);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qh)));
        alignas(64) uint32_t lo[32], hi[32];
        for (int z = 0; z < 2; ++z) {  // chunks c = 2z (bytes 0-31) and 2z+1 (32-63)
            const __m512i q = _mm512_loadu_si512(x[ib].qs + 64 * z);
            const __m512i shift_lo =
                _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(static_cast<int16_t>(4 * z)),
                                        _mm512_set1_epi16(static_cast<int16_t>(4 * z + 2)));
            const __m512i shift_hi = _mm512_add_epi16(shift_lo, _mm512_set1_epi16(1));
            const __m512i h_lo = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), one), 4);
            const __m512i h_hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), one), 4);
            _mm512_store_si512(lo + 16 * z, _mm512_or_si512(_mm512_and_si512(q, m4), h_lo));
            _mm512_store_si512(hi + 16 * z, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4), h_hi));
        }
        __m512i sumi[8];
        k4_lane_sums(lo, hi, sm, tb, sumi);
        const __m512 d8 = token_scales(tb);
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(fp16_to_fp32(x[ib].d)), d8);
        for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[j]), acc[j]);
        __m512i term = _mm512_setzero_si512();
        for (int b = 0; b < 8; ++b) term = _mm512_dpwssd_epi32(term, bsum_pairs(tb, b), _mm512_set1_epi16(sm[8 + b]));
        const __m512 neg_d8 = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(d8), sign));
        summs = _mm512_fmadd_ps(_mm512_mul_ps(neg_d8, _mm512_set1_ps(fp16_to_fp32(x[ib].dmin))),
                                _mm512_cvtepi32_ps(term), summs);
    }
    _mm512_storeu_ps(out, _mm512_add_ps(sum_lanes(acc), summs));
}

// ---------------------------------------------------------------- Q6_K

// One weight row against a packed tile. Codes are unsigned (0..63); the -32
// is taken off once per super-block as 32·Σ_k sc_k·bsums_k in lane k/2, as
// the AVX2 kernel does.
void q6_k_tile_row(const BlockQ6_K* x, const uint8_t* tile, float* out, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m3 = _mm512_set1_epi8(3);
    // Per 256-bit half: the shifts that bring qh's bit pair for groups 0|1 and 2|3 down.
    const __m512i shift01 = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i shift23 = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(6));
    __m512 acc[8];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* tb = tile + ib * kTileBlockBytes;
        const int8_t* sc = x[ib].scales;
        // codes[32h + 8g + j]: dword j of group g (elements 128h + 32g + ..) of half h.
        alignas(64) uint32_t codes[64];
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512(x[ib].ql + 64 * h);
            const __m512i qh =
                _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qh + 32 * h)));
            const __m512i hb01 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift01), m3), 4);
            const __m512i hb23 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift23), m3), 4);
            _mm512_store_si512(codes + 32 * h, _mm512_or_si512(_mm512_and_si512(ql, m4), hb01));
            _mm512_store_si512(codes + 32 * h + 16,
                               _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hb23));
        }
        __m512i sumi[8];
        // The offset first: lane j = -32·(bsums[2j]·sc[2j] + bsums[2j+1]·sc[2j+1]).
        for (int j = 0; j < 8; ++j) {
            const uint32_t pair =
                static_cast<uint16_t>(sc[2 * j]) | static_cast<uint32_t>(static_cast<uint16_t>(sc[2 * j + 1])) << 16;
            const __m512i offset = _mm512_dpwssd_epi32(_mm512_setzero_si512(), bsum_pairs(tb, j),
                                                       _mm512_set1_epi32(static_cast<int>(pair)));
            sumi[j] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(offset, 5));
        }
        for (int hg = 0; hg < 8; ++hg) {  // group g of half h: 32 codes, scales 2hg (lanes 0-3) and 2hg+1 (4-7)
            const __m512i s0 = _mm512_set1_epi16(sc[2 * hg]), s1 = _mm512_set1_epi16(sc[2 * hg + 1]);
            for (int j = 0; j < 8; ++j)
                sumi[j] = add_scaled(sumi[j], codes[8 * hg + j], tb + (8 * hg + j) * 64, j < 4 ? s0 : s1);
        }
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(fp16_to_fp32(x[ib].d)), token_scales(tb));
        for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[j]), acc[j]);
    }
    _mm512_storeu_ps(out, sum_lanes(acc));
}

// ---------------------------------------------------------------- IQ4_XS

// One weight row against a packed tile. The codebook values are signed, and
// VPMADDUBSW wants unsigned codes, so each value v goes in as its positive
// part max(v, 0) and its negative part max(-v, 0): two pair sums per dword,
// added with the scale and its negative (exact integers; lane j then holds
// (ls - 32)·Σ v·a as the AVX2 kernel's, whose sign trick computes the same).
void iq4_xs_tile_row(const BlockIQ4_XS* x, const uint8_t* tile, float* out, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i values = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
    const __m512i zero = _mm512_setzero_si512();
    const __m512i plus = _mm512_max_epi8(values, zero), minus = _mm512_max_epi8(_mm512_sub_epi8(zero, values), zero);
    // Sub-block ib's 32 values in order are [low nibbles of its 16 bytes | high nibbles].
    const __m512i idx0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i idx1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    __m512 acc[8];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* tb = tile + ib * kTileBlockBytes;
        // pos/neg[8 sub + j]: dword j (values 4j..4j+3) of sub-block sub.
        alignas(64) uint32_t pos[64], neg[64];
        for (int z = 0; z < 2; ++z) {  // sub-blocks 4z..4z+3
            const __m512i q = _mm512_loadu_si512(x[ib].qs + 64 * z);
            const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            const __m512i first = _mm512_permutex2var_epi64(lo, idx0, hi),
                          second = _mm512_permutex2var_epi64(lo, idx1, hi);
            _mm512_store_si512(pos + 32 * z, _mm512_shuffle_epi8(plus, first));
            _mm512_store_si512(pos + 32 * z + 16, _mm512_shuffle_epi8(plus, second));
            _mm512_store_si512(neg + 32 * z, _mm512_shuffle_epi8(minus, first));
            _mm512_store_si512(neg + 32 * z + 16, _mm512_shuffle_epi8(minus, second));
        }
        __m512i sumi[8];
        for (auto& s : sumi) s = _mm512_setzero_si512();
        for (int sub = 0; sub < 8; ++sub) {
            const int ls =
                ((x[ib].scales_l[sub / 2] >> (4 * (sub % 2))) & 0xF) | (((x[ib].scales_h >> (2 * sub)) & 3) << 4);
            const __m512i sp = _mm512_set1_epi16(static_cast<int16_t>(ls - 32));
            const __m512i sn = _mm512_set1_epi16(static_cast<int16_t>(32 - ls));
            for (int j = 0; j < 8; ++j) {
                const uint8_t* a = tb + (8 * sub + j) * 64;
                sumi[j] = add_scaled(sumi[j], pos[8 * sub + j], a, sp);
                sumi[j] = add_scaled(sumi[j], neg[8 * sub + j], a, sn);
            }
        }
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(fp16_to_fp32(x[ib].d)), token_scales(tb));
        for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[j]), acc[j]);
    }
    _mm512_storeu_ps(out, sum_lanes(acc));
}

template <typename Block, void (*Row)(const Block*, const uint8_t*, float*, int64_t)>
void tile_dot(const void* w, size_t w_row_bytes, int n_rows, const void* tile, float* out, int64_t n) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    for (int v = 0; v < n_rows; ++v)
        Row(reinterpret_cast<const Block*>(wb + v * w_row_bytes), static_cast<const uint8_t*>(tile),
            out + v * kDotTileRows, n / kQK_K);
}

// min_partial: the fewest tokens for which a zero-padded tile is no slower
// than the four-row kernel (then single rows for the last 1-3 tokens), from
// a one-thread microbenchmark (a 2048 x 256 matrix in L2 against 16 tokens;
// Zen 5, 2026-11-29, two runs, GMAC/s tile / four-row / single row): Q4_K
// 101-134 / 71-89 / 34-50 -> 10, Q5_K 95-126 / 64-76 / 28-39 -> 7, Q6_K
// 104-141 / 89-108 / 43-57 -> 11, IQ4_XS 79-90 / 66-82 / 26-40 -> 11-14.
constexpr VecDotTile kTileQ4_K{tile_bytes, pack_tile, tile_dot<BlockQ4_K, q4_k_tile_row>, 10};
constexpr VecDotTile kTileQ5_K{tile_bytes, pack_tile, tile_dot<BlockQ5_K, q5_k_tile_row>, 7};
constexpr VecDotTile kTileQ6_K{tile_bytes, pack_tile, tile_dot<BlockQ6_K, q6_k_tile_row>, 11};
constexpr VecDotTile kTileIQ4_XS{tile_bytes, pack_tile, tile_dot<BlockIQ4_XS, iq4_xs_tile_row>, 12};

}  // namespace

const VecDotTile* vec_dot_tile_q8_k_avx512_kernel(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_K:
            return &kTileQ4_K;
        case GgmlType::Q5_K:
            return &kTileQ5_K;
        case GgmlType::Q6_K:
            return &kTileQ6_K;
        case GgmlType::IQ4_XS:
            return &kTileIQ4_XS;
        default:
            return nullptr;
    }
}

}  // namespace moeserve::detail

#endif  // AVX-512 F/BW/VL + VNNI
