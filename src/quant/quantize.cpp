#include "quant/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/block_formats.h"
#include "quant/fp16.h"

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_*()
// placeholders of the reductions); the warnings are false.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

// Bit-exactness with ggml needs every float operation rounded on its own, in
// the order the spec writes it: no fused multiply-add.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace moeserve {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // below this a group counts as all zero

[[noreturn]] void unsupported(GgmlType type) {
    throw std::invalid_argument("quantize_row: tensor type " + std::string(ggml_type_name(type)) + " (id " +
                                std::to_string(static_cast<uint32_t>(type)) + ") is not supported");
}

int64_t block_count(GgmlType type, int64_t n, int64_t block) {
    if (n < 0 || n % block != 0)
        throw std::invalid_argument("quantize_row: " + std::to_string(n) + " elements of " +
                                    std::string(ggml_type_name(type)) + " is not a multiple of the block size " +
                                    std::to_string(block));
    return n / block;
}

// Round to nearest, ties to even, for |f| <= 4194303 (spec §0): adding
// 1.5*2^23 leaves the integer in the low mantissa bits.
inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    std::memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// The element of largest magnitude, sign kept; the first one wins a tie.
inline float signed_absmax(const float* x, int n, float* amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

inline void min_max(const float* x, int n, float* mn, float* mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

// ------------------------------------------------------------- legacy types

// d = max/-8, q = min(15, trunc(x/d + 8.5)) (spec §3.3).
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax;
        const float max = signed_absmax(x, kQK, &amax);
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < 16; ++j) {
            const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
            const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

// d = (max-min)/15, q = min(15, trunc((x-min)/d + 0.5)) (spec §3.4).
void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float mn, mx;
        min_max(x, kQK, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(mn);
        for (int j = 0; j < 16; ++j) {
            const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - mn) * id + 0.5f)));
            const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - mn) * id + 0.5f)));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

// Low 4 bits to the nibbles, bit 4 of element j to bit j of qh.
inline void pack_q5(const uint8_t q[kQK], uint8_t qs[16], uint8_t qh_bytes[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
        qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
    }
    std::memcpy(qh_bytes, &qh, 4);
}

// d = max/-16, q = min(31, trunc(x/d + 16.5)) (spec §3.5).
void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax;
        const float max = signed_absmax(x, kQK, &amax);
        const float d = max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        uint8_t q[kQK];
        for (int j = 0; j < kQK; ++j)
            q[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

// d = (max-min)/31, q = trunc((x-min)/d + 0.5), no clamp (spec §3.6).
void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float mn, mx;
        min_max(x, kQK, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(mn);
        uint8_t q[kQK];
        for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>((x[j] - mn) * id + 0.5f);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

// Reference Q8_0/Q8_1 block: d = amax/127, q = roundf(x * (1/d)), ties away
// from zero (spec §3.2). Returns d (float32, before fp16 rounding).
inline float q8_block_ref(const float* x, int8_t* qs) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
    return d;
}

// The x86 SIMD variant: id = 127/amax and round half to even.
inline float q8_block_x86(const float* x, int8_t* qs) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int j = 0; j < kQK; ++j) {
        const float r = std::nearbyint(x[j] * id);  // default rounding mode: ties to even
        qs[j] = static_cast<int8_t>(std::clamp(r, -128.0f, 127.0f));
    }
    return d;
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb, bool x86) {
    for (int64_t i = 0; i < nb; ++i, x += kQK)
        y[i].d = fp32_to_fp16(x86 ? q8_block_x86(x, y[i].qs) : q8_block_ref(x, y[i].qs));
}

// As Q8_0, plus s = fp16(d * Σq) with the float32 d.
void quantize_q8_1(const float* x, BlockQ8_1* y, int64_t nb, bool x86) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        const float d = x86 ? q8_block_x86(x, y[i].qs) : q8_block_ref(x, y[i].qs);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) sum += y[i].qs[j];
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
// One Q8_K block with AVX-512, the same bytes as the loop below: the first
// element of largest magnitude found by compare after a max-reduction,
// nearest_int as VCVTPS2DQ (round to nearest even; the same for |v| < 2^22),
// each 16-lane register one bsums group. (NaN inputs give other garbage.)
bool quantize_q8_k_block_avx512(const float* x, BlockQ8_K& y) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    auto magnitude = [&](__m512 v) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask)); };
    __m512 m = _mm512_setzero_ps();
    for (int k = 0; k < kQK_K / 16; ++k) m = _mm512_max_ps(magnitude(_mm512_loadu_ps(x + 16 * k)), m);
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0.0f) return false;
    float max = amax;
    for (int k = 0; k < kQK_K / 16; ++k) {
        const __mmask16 at =
            _mm512_cmp_ps_mask(magnitude(_mm512_loadu_ps(x + 16 * k)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
        if (at) {
            max = x[16 * k + __builtin_ctz(at)];
            break;
        }
    }
    const float iscale = -127.f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int k = 0; k < kQK_K / 16; ++k) {
        const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * k))),
                                           _mm512_set1_epi32(127));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y.qs + 16 * k), _mm512_cvtepi32_epi8(q));
        y.bsums[k] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    y.d = 1 / iscale;
    return true;
}
#endif

// iscale = -127/max, q = min(127, nearest_int(iscale*x)), d = 1/iscale (spec §2.13).
// False for an all-zero block (left to the caller). The portable path.
[[maybe_unused]] bool quantize_q8_k_block(const float* x, BlockQ8_K& y) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    if (amax == 0.0f) return false;
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) y.qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int g = 0; g < kQK_K / 16; ++g) {
        int sum = 0;
        for (int l = 0; l < 16; ++l) sum += y.qs[16 * g + l];
        y.bsums[g] = static_cast<int16_t>(sum);
    }
    y.d = 1 / iscale;
    return true;
}

void quantize_q8_k(const float* x, BlockQ8_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
        const bool nonzero = quantize_q8_k_block_avx512(x, y[i]);
#else
        const bool nonzero = quantize_q8_k_block(x, y[i]);
#endif
        if (!nonzero) std::memset(&y[i], 0, sizeof y[i]);
    }
}

// ------------------------------------------------------------- IQ4_NL / IQ4_XS

// Index of the codebook value nearest to v; a tie goes to the larger value.
inline int iq4_best_index(float v) {
    if (v <= kIq4nlValues[0]) return 0;
    if (v >= kIq4nlValues[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < kIq4nlValues[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - kIq4nlValues[hi - 1] < kIq4nlValues[hi] - v ? hi - 1 : hi;
}

// Weighted least-squares scale of one 32-element group for the chosen
// indices, with weights x^2. search: the weight-file variant, which also
// tries id = (t - 127)/max for t = -7..7 and keeps the best (Σwqx)^2/Σwq^2.
// Returns 0 for an all-zero group. Fills L with the first pass's indices.
float iq4_group_scale(const float* x, uint8_t* L, bool search) {
    float w[32];
    for (int j = 0; j < 32; ++j) w[j] = x[j] * x[j];
    float amax;
    const float max = signed_absmax(x, 32, &amax);
    if (amax < kGroupMaxEps) return 0.0f;
    const float k0 = static_cast<float>(kIq4nlValues[0]);  // -127
    float d = search ? -max / k0 : max / k0;
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const int l = iq4_best_index(id * x[j]);
        L[j] = static_cast<uint8_t>(l);
        const float q = kIq4nlValues[l];
        sumqx += w[j] * q * x[j];
        sumq2 += w[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    if (!search) return d;
    float best = d * sumqx;
    for (int t = -7; t <= 7; ++t) {
        id = static_cast<float>(t + kIq4nlValues[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const float q = kIq4nlValues[iq4_best_index(id * x[j])];
            sumqx += w[j] * q * x[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

inline void pack_nibbles32(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

// KV-cache rule (spec §3.7): scale from one least-squares fit, indices from
// the first guess d0 = max/-127. An all-zero group stores d = 0 and zero nibbles.
void quantize_iq4_nl_ref(const float* x, BlockIQ4_NL* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        uint8_t L[32] = {};
        const float d = iq4_group_scale(x, L, false);
        y[i].d = fp32_to_fp16(d);
        pack_nibbles32(L, y[i].qs);
    }
}

// Weight rule (spec §4): scale from the search, then indices recomputed with 1/d.
void quantize_iq4_nl_weights(const float* x, BlockIQ4_NL* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        uint8_t L[32];
        const float d = iq4_group_scale(x, L, true);
        y[i].d = fp32_to_fp16(d);
        const float id = d != 0.0f ? 1 / d : 0.0f;
        for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(iq4_best_index(id * x[j]));
        pack_nibbles32(L, y[i].qs);
    }
}

// IQ4_XS (spec §4): per-group scales from the weight search, then a 6-bit
// signed scale per group against the super-scale ds = -max_scale/32.
void quantize_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float scales[8];
        uint8_t L[kQK_K];
        float max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            scales[ib] = iq4_group_scale(x + 32 * ib, L + 32 * ib, true);
            if (std::fabs(scales[ib]) > amax_scale) {
                amax_scale = std::fabs(scales[ib]);
                max_scale = scales[ib];
            }
        }
        const float ds = -max_scale / 32;
        y[i].d = fp32_to_fp16(ds);
        const float ids = ds != 0.0f ? 1 / ds : 0.0f;
        uint16_t scales_h = 0;
        std::memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        for (int ib = 0; ib < 8; ++ib) {
            const int l = std::clamp(nearest_int(ids * scales[ib]), -32, 31);
            const float dl = ds * static_cast<float>(l);
            const float idl = dl != 0.0f ? 1 / dl : 0.0f;
            for (int j = 0; j < 32; ++j) L[32 * ib + j] = static_cast<uint8_t>(iq4_best_index(idl * x[32 * ib + j]));
            const int ls = l + 32;
            y[i].scales_l[ib / 2] |= static_cast<uint8_t>((ls & 0xF) << (4 * (ib % 2)));
            scales_h |= static_cast<uint16_t>((ls >> 4) << (2 * ib));
            pack_nibbles32(L + 32 * ib, y[i].qs + 16 * ib);
        }
        y[i].scales_h = scales_h;
    }
}

// ------------------------------------------------------------- K-quants

// Asymmetric scale/min fit of n values to 0..nmax (spec §4, make_qkx2_quants):
// returns the scale, stores -min in *the_min and the levels in L.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, float rmin,
                    float rdelta, int nstep) {
    float mn = x[0], mx = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -mn;
        return 0.f;
    }
    const float fmax = static_cast<float>(nmax);
    float iscale = fmax / (mx - mn);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax));
        const float diff = scale * L[i] + mn - x[i];
        best_error += w[i] * (diff * diff);
    }
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + fmax) / (mx - mn);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float fl = static_cast<float>(l);
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                std::memcpy(L, Laux, static_cast<size_t>(n));
                best_error = cur_error;
                scale = this_scale;
                mn = this_min;
            }
        }
    }
    *the_min = -mn;
    return scale;
}

// Q4_K / Q5_K share everything but the level count and search parameters.
// Fills the 12 packed scale bytes, d and dmin, and the levels L[256].
void quantize_kx_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t scales_out[12],
                        uint16_t* d_out, uint16_t* dmin_out, uint8_t L[kQK_K]) {
    float scales[8], mins[8], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        const float* xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xb[l] * xb[l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xb[l]);
        scales[j] = fit_scale_min(32, nmax, xb, w, L + 32 * j, &mins[j], rmin, rdelta, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    std::memset(scales_out, 0, 12);
    for (int j = 0; j < 8; ++j) {
        // ggml stores nearest_int into a uint8_t before clamping; keep that wrap.
        const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
        const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            scales_out[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
            scales_out[j] |= static_cast<uint8_t>((lm >> 4) << 6);
        }
    }
    *d_out = fp32_to_fp16(max_scale / 63.f);
    *dmin_out = fp32_to_fp16(max_min / 63.f);
    // Requantize against the stored (fp16, 6-bit) scales and mins.
    const float d = fp16_to_fp32(*d_out), dmin = fp16_to_fp32(*dmin_out);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        q4k_scale_min(j, scales_out, &sc, &m);
        const float dd = d * sc;
        if (dd == 0.0f) continue;
        const float dm = dmin * m;
        for (int l = 0; l < 32; ++l)
            L[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / dd), 0, nmax));
    }
}

void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        uint8_t L[kQK_K];
        quantize_kx_scales(x, 15, -1.0f, 0.1f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quantize_q5_k(const float* x, BlockQ5_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        uint8_t L[kQK_K];
        quantize_kx_scales(x, 31, -0.5f, 0.1f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        std::memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = static_cast<uint8_t>((l1 & 0xF) | ((l2 & 0xF) << 4));
                y[i].qh[l] |= static_cast<uint8_t>(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
            }
        }
    }
}

// Symmetric fit of 16 values to -32..31 with weights x^2 (make_qx_quants,
// rmse_type 1): the first guess -32/max, then 18 nearby scales, keeping the
// best (Σwxl)^2/Σwl^2. L gets level + 32.
float fit_scale_q6(const float* x, int8_t* L) {
    constexpr int n = 16, nmax = 32;
    float amax;
    const float max = signed_absmax(x, n, &amax);
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    auto level = [](float v) { return std::clamp(nearest_int(v), -nmax, nmax - 1); };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = level(iscale * x[i]);
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = level(iscale * x[i]);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale * x[i]));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void quantize_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        int8_t L[kQK_K];
        float scales[16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            scales[ib] = fit_scale_q6(x + 16 * ib, L + 16 * ib);
            if (std::fabs(scales[ib]) > max_abs_scale) {
                max_abs_scale = std::fabs(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < 16; ++ib)
            y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
        const float d = fp16_to_fp32(y[i].d);
        for (int j = 0; j < 16; ++j) {
            const float dd = d * static_cast<float>(y[i].scales[j]);
            if (dd == 0.0f) continue;
            for (int l = 0; l < 16; ++l)
                L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / dd), -32, 31) + 32);
        }
        for (int n = 0; n < 2; ++n) {
            const int8_t* Ln = L + 128 * n;
            uint8_t* ql = y[i].ql + 64 * n;
            uint8_t* qh = y[i].qh + 32 * n;
            for (int l = 0; l < 32; ++l) {
                const int q1 = Ln[l], q2 = Ln[l + 32], q3 = Ln[l + 64], q4 = Ln[l + 96];
                ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

enum class Rule { reference, weights, activation };

void quantize(GgmlType type, const float* x, void* dst, int64_t n, Rule rule) {
    if (!ggml_type_info(static_cast<uint32_t>(type))) unsupported(type);
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, x, static_cast<size_t>(block_count(type, n, 1)) * sizeof(float));
            return;
        case GgmlType::F16:
            return fp32_to_fp16_row(x, static_cast<uint16_t*>(dst), block_count(type, n, 1));
        case GgmlType::BF16:
            return fp32_to_bf16_row(x, static_cast<uint16_t*>(dst), block_count(type, n, 1));
        case GgmlType::Q4_0:
            return quantize_q4_0(x, static_cast<BlockQ4_0*>(dst), block_count(type, n, kQK));
        case GgmlType::Q4_1:
            return quantize_q4_1(x, static_cast<BlockQ4_1*>(dst), block_count(type, n, kQK));
        case GgmlType::Q5_0:
            return quantize_q5_0(x, static_cast<BlockQ5_0*>(dst), block_count(type, n, kQK));
        case GgmlType::Q5_1:
            return quantize_q5_1(x, static_cast<BlockQ5_1*>(dst), block_count(type, n, kQK));
        case GgmlType::Q8_0:
            return quantize_q8_0(x, static_cast<BlockQ8_0*>(dst), block_count(type, n, kQK), rule == Rule::activation);
        case GgmlType::Q8_1:
            return quantize_q8_1(x, static_cast<BlockQ8_1*>(dst), block_count(type, n, kQK), rule == Rule::activation);
        case GgmlType::Q8_K:
            return quantize_q8_k(x, static_cast<BlockQ8_K*>(dst), block_count(type, n, kQK_K));
        case GgmlType::IQ4_NL:
            if (rule == Rule::weights)
                return quantize_iq4_nl_weights(x, static_cast<BlockIQ4_NL*>(dst), block_count(type, n, kQK));
            return quantize_iq4_nl_ref(x, static_cast<BlockIQ4_NL*>(dst), block_count(type, n, kQK));
        case GgmlType::IQ4_XS:
            return quantize_iq4_xs(x, static_cast<BlockIQ4_XS*>(dst), block_count(type, n, kQK_K));
        case GgmlType::Q4_K:
            return quantize_q4_k(x, static_cast<BlockQ4_K*>(dst), block_count(type, n, kQK_K));
        case GgmlType::Q5_K:
            return quantize_q5_k(x, static_cast<BlockQ5_K*>(dst), block_count(type, n, kQK_K));
        case GgmlType::Q6_K:
            return quantize_q6_k(x, static_cast<BlockQ6_K*>(dst), block_count(type, n, kQK_K));
        default:
            unsupported(type);
    }
}

}  // namespace

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
    quantize(type, src, dst, n, Rule::reference);
}

void quantize_weight_row(GgmlType type, const float* src, void* dst, int64_t n) {
    quantize(type, src, dst, n, Rule::weights);
}

void quantize_row_activation(GgmlType type, const float* src, void* dst, int64_t n) {
    quantize(type, src, dst, n, Rule::activation);
}

}  // namespace moeserve
