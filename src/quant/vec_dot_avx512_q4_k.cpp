// Prompt batches against Q4_K weights on AVX-512 VNNI: the 16-token tile
// form (vec_dot.h VecDotTile) of the AVX2 dot_q4_k, bit for bit.
//
// The AVX2 kernel multiplies 32 activation bytes by 32 weight codes per
// instruction and keeps each super-block's sums in eight int32 lanes (lane j:
// bytes 4j..4j+3 of every 32-value sub-block, times the sub-block's scale).
// Here the 16 tokens of a tile sit in the lanes of a register instead: one
// VPDPBUSD multiplies a weight dword (broadcast) by that dword of all 16
// tokens, and VPDPWSSD adds it times the sub-block scale into lane j's
// register. So each weight super-block is unpacked once per 16 tokens, and
// the 512-bit multiplies do twice the work of the 256-bit ones per
// instruction (this CPU issues both at two per cycle). The integer lanes are
// the AVX2 kernel's exactly, and the float steps after them (one FMA per
// lane and super-block, the min term's four lanes, ggml's sum trees) are
// taken in its order, so every result equals dot_q4_k's.
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
//   4 rows: row p holds each token's int16 pair (S_2p, S_2p+1), where
//   S_b = bsums[2b] + bsums[2b+1] is the sum of sub-block b's 32 codes (the
//   AVX2 kernel's _mm_hadd_epi16 of the bsums, exact);
//   the 16 tokens' scales d as float.
constexpr int64_t kCodeBytes = 64 * 64;
constexpr int64_t kPairBytes = 4 * 64;
constexpr int64_t kTileBlockBytes = kCodeBytes + kPairBytes + 16 * 4;

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
            const int16_t* bs = y[ib].bsums;
            for (int p = 0; p < 4; ++p) {
                const int16_t pair[2] = {static_cast<int16_t>(bs[4 * p] + bs[4 * p + 1]),
                                         static_cast<int16_t>(bs[4 * p + 2] + bs[4 * p + 3])};
                std::memcpy(tb + kCodeBytes + p * 64 + 4 * t, pair, 4);
            }
            std::memcpy(tb + kCodeBytes + kPairBytes + 4 * t, &y[ib].d, 4);
        }
    }
}

// One weight row against a packed tile: out[k] for tokens k = 0..15.
void tile_row(const BlockQ4_K* x, const uint8_t* tile, float* out, int64_t nb) {
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
        for (auto& s : sumi) s = _mm512_setzero_si512();
        for (int sub = 0; sub < 8; ++sub) {
            const uint32_t* codes = (sub & 1 ? hi : lo) + 8 * (sub >> 1);
            // The scale as the low int16 of each dword (the high one 0): a
            // lane's four products sum to at most 4·15·127 < 2^15, its own low
            // int16, so VPDPWSSD adds exactly scale·sum.
            const __m512i sc = _mm512_set1_epi32(sm[sub]);
            for (int j = 0; j < 8; ++j) {
                const __m512i a = _mm512_loadu_si512(tb + (8 * sub + j) * 64);
                const __m512i part = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi32(codes[j]), a);
                sumi[j] = _mm512_dpwssd_epi32(sumi[j], part, sc);
            }
        }
        const __m512 d8 = _mm512_loadu_ps(tb + kCodeBytes + kPairBytes);
        const __m512 scale = _mm512_mul_ps(d8, _mm512_set1_ps(fp16_to_fp32(x[ib].d)));
        for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[j]), acc[j]);
        // The min term: -d8 (a sign flip, as C's unary minus) times dmin, and
        // lane p = S_2p·m_2p + S_2p+1·m_2p+1.
        const __m512 neg_d8 = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(d8), sign));
        const __m512 neg_dmin = _mm512_mul_ps(neg_d8, _mm512_set1_ps(fp16_to_fp32(x[ib].dmin)));
        for (int p = 0; p < 4; ++p) {
            const __m512i mins = _mm512_set1_epi32(sm[8 + 2 * p] | sm[9 + 2 * p] << 16);
            const __m512i pairs = _mm512_loadu_si512(tb + kCodeBytes + p * 64);
            const __m512i lane = _mm512_dpwssd_epi32(_mm512_setzero_si512(), pairs, mins);
            acc_min[p] = _mm512_fmadd_ps(neg_dmin, _mm512_cvtepi32_ps(lane), acc_min[p]);
        }
    }
    // hsum's tree over the eight lanes, plus the min lanes' (l0 + l2) + (l1 + l3): dot_q4_k's last steps.
    const __m512 t04 = _mm512_add_ps(acc[0], acc[4]), t26 = _mm512_add_ps(acc[2], acc[6]);
    const __m512 t15 = _mm512_add_ps(acc[1], acc[5]), t37 = _mm512_add_ps(acc[3], acc[7]);
    const __m512 lanes = _mm512_add_ps(_mm512_add_ps(t04, t26), _mm512_add_ps(t15, t37));
    const __m512 mins = _mm512_add_ps(_mm512_add_ps(acc_min[0], acc_min[2]), _mm512_add_ps(acc_min[1], acc_min[3]));
    _mm512_storeu_ps(out, _mm512_add_ps(lanes, mins));
}

void tile_dot(const void* w, size_t w_row_bytes, int n_rows, const void* tile, float* out, int64_t n) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    for (int v = 0; v < n_rows; ++v)
        tile_row(reinterpret_cast<const BlockQ4_K*>(wb + v * w_row_bytes), static_cast<const uint8_t*>(tile),
                 out + v * kDotTileRows, n / kQK_K);
}

constexpr VecDotTile kTileQ4_K{tile_bytes, pack_tile, tile_dot};

}  // namespace

const VecDotTile* vec_dot_tile_q4_k_avx512_kernel() {
    return &kTileQ4_K;
}

}  // namespace moeserve::detail

#endif  // AVX-512 F/BW/VL + VNNI
