#include "quant/dequantize.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/block_formats.h"
#include "quant/fp16.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

// ggml computes these in plain float32, one rounding per operation; a fused
// multiply-add would change the last bit of some outputs.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace moeserve {
namespace {

[[noreturn]] void unsupported(GgmlType type) {
    throw std::invalid_argument("dequantize_row: tensor type " + std::string(ggml_type_name(type)) + " (id " +
                                std::to_string(static_cast<uint32_t>(type)) + ") is not supported");
}

// Number of blocks in n elements, or a clear error.
int64_t block_count(GgmlType type, int64_t n, int64_t block) {
    if (n < 0 || n % block != 0)
        throw std::invalid_argument("dequantize_row: " + std::to_string(n) + " elements of " +
                                    std::string(ggml_type_name(type)) + " is not a multiple of the block size " +
                                    std::to_string(block));
    return n / block;
}

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// ---------------------------------------------------------------- scalar

void deq_q4_0(const BlockQ4_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void deq_q4_1(const BlockQ4_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        const float m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void deq_q5_0(const BlockQ5_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        const uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            const int lo = (x[i].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int hi = (x[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            y[j] = static_cast<float>(lo - 16) * d;
            y[j + 16] = static_cast<float>(hi - 16) * d;
        }
    }
}

void deq_q5_1(const BlockQ5_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        const float m = fp16_to_fp32(x[i].m);
        const uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            const int lo = (x[i].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int hi = (x[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            y[j] = static_cast<float>(lo) * d + m;
            y[j + 16] = static_cast<float>(hi) * d + m;
        }
    }
}

void deq_q8_0(const BlockQ8_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

void deq_q8_1(const BlockQ8_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

// Element e: n = e/128, j = (e%128)/32, l = e%32; q = (qs[32n + l] >> 2j) & 3.
void deq_q2_k(const BlockQ2_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        const uint8_t* q = x[i].qs;
        int is = 0;
        for (int n = 0; n < kQK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; ++half) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * static_cast<float>(sc & 0xF);
                    const float ml = dmin * static_cast<float>(sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[16 * half + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

// Sixteen 6-bit signed scales (spec §2.9).
void q3k_scales(const uint8_t* s, int8_t out[16]) {
    for (int j = 0; j < 16; ++j) {
        const int lo4 = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        const int hi2 = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = static_cast<int8_t>((lo4 | (hi2 << 4)) - 32);
    }
}

void deq_q3_k(const BlockQ3_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        int8_t sc[16];
        q3k_scales(x[i].scales, sc);
        const uint8_t* q = x[i].qs;
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < kQK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half = 0; half < 2; ++half) {
                    const float dl = d * static_cast<float>(sc[is++]);
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        const int v = ((q[l] >> shift) & 3) - ((x[i].hmask[l] & m) ? 0 : 4);
                        *y++ = dl * static_cast<float>(v);
                    }
                }
            }
        }
    }
}

void deq_q4_k(const BlockQ4_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        const uint8_t* q = x[i].qs;
        for (int c = 0; c < 4; ++c, q += 32) {
            uint8_t sc, m;
            q4k_scale_min(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
    }
}

void deq_q5_k(const BlockQ5_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        const uint8_t* q = x[i].qs;
        for (int c = 0; c < 4; ++c, q += 32) {
            uint8_t sc, m;
            q4k_scale_min(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            const int b1 = 2 * c, b2 = 2 * c + 1;  // sub-block = bit of qh[l]
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * static_cast<float>((q[l] & 0xF) + (((x[i].qh[l] >> b1) & 1) << 4)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * static_cast<float>((q[l] >> 4) + (((x[i].qh[l] >> b2) & 1) << 4)) - m2;
        }
    }
}

void deq_q6_k(const BlockQ6_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
                y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
            }
        }
    }
}

void deq_q8_k(const BlockQ8_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK_K)
        for (int j = 0; j < kQK_K; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
}

void deq_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * static_cast<float>(kIq4nlValues[x[i].qs[j] & 0xF]);
            y[j + 16] = d * static_cast<float>(kIq4nlValues[x[i].qs[j] >> 4]);
        }
    }
}

int iq4xs_scale(const BlockIQ4_XS& b, int ib) {
    return ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
}

void deq_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const float dl = d * static_cast<float>(iq4xs_scale(x[i], ib) - 32);
            const uint8_t* qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * static_cast<float>(kIq4nlValues[qs[j] & 0xF]);
                y[j + 16] = dl * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
            }
        }
    }
}

// ---------------------------------------------------------------- AVX2
// Same operations, 8 lanes at a time: int -> float conversion is exact, and
// each output is the same mul (and sub) as the scalar code.
#if defined(__AVX2__)

// 8 unsigned bytes -> 8 floats.
inline __m256 u8x8_to_ps(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}
inline __m256 s8x8_to_ps(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

// Stores d*q - m for 32 unsigned bytes of q.
inline void store32_mul_sub(float* y, __m256i q, __m256 d, __m256 m) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(lo)), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(lo, 8))), m));
    _mm256_storeu_ps(y + 16, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(hi)), m));
    _mm256_storeu_ps(y + 24, _mm256_sub_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(hi, 8))), m));
}

// Stores d*q for 16 signed bytes of q.
inline void store16_mul_s8(float* y, __m128i q, __m256 d) {
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(d, s8x8_to_ps(q)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, s8x8_to_ps(_mm_srli_si128(q, 8))));
}

void deq_q8_0_avx2(const BlockQ8_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(x[i].d));
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
        // q*d: the scalar code multiplies in the other order; multiplication commutes exactly.
        store16_mul_s8(y, _mm256_castsi256_si128(q), d);
        store16_mul_s8(y + 16, _mm256_extracti128_si256(q, 1), d);
    }
}

void deq_q4_k_avx2(const BlockQ4_K* x, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        for (int c = 0; c < 4; ++c, y += 64) {
            uint8_t sc1, m1, sc2, m2;
            q4k_scale_min(2 * c, x[i].scales, &sc1, &m1);
            q4k_scale_min(2 * c + 1, x[i].scales, &sc2, &m2);
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * c));
            store32_mul_sub(y, _mm256_and_si256(q, m4), _mm256_set1_ps(d * sc1), _mm256_set1_ps(dmin * m1));
            store32_mul_sub(y + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_set1_ps(d * sc2),
                            _mm256_set1_ps(dmin * m2));
        }
    }
}

void deq_q5_k_avx2(const BlockQ5_K* x, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i bit16 = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh));
        for (int c = 0; c < 4; ++c, y += 64) {
            uint8_t sc1, m1, sc2, m2;
            q4k_scale_min(2 * c, x[i].scales, &sc1, &m1);
            q4k_scale_min(2 * c + 1, x[i].scales, &sc2, &m2);
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * c));
            // Bit (2c) of qh[l] -> 16 for the low nibbles, bit (2c+1) for the high ones.
            const __m256i h1 =
                _mm256_cmpeq_epi8(_mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * c)))),
                                  _mm256_set1_epi8(static_cast<char>(1 << (2 * c))));
            const __m256i h2 =
                _mm256_cmpeq_epi8(_mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1)))),
                                  _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1))));
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(h1, bit16));
            const __m256i hi =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_and_si256(h2, bit16));
            store32_mul_sub(y, lo, _mm256_set1_ps(d * sc1), _mm256_set1_ps(dmin * m1));
            store32_mul_sub(y + 32, hi, _mm256_set1_ps(d * sc2), _mm256_set1_ps(dmin * m2));
        }
    }
}

void deq_q6_k_avx2(const BlockQ6_K* x, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int n = 0; n < 2; ++n, y += 128) {
            const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].ql + 64 * n));
            const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].ql + 64 * n + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * n));
            // q for elements l, l+32, l+64, l+96 of this half, as signed bytes -32..31.
            const __m256i q[4] = {
                _mm256_sub_epi8(
                    _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)), off),
                _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(ql1, m4),
                                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)),
                                off),
                _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)),
                                off),
                _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)),
                                off),
            };
            const int8_t* sc = x[i].scales + 8 * n;
            for (int g = 0; g < 4; ++g) {
                // Sub-blocks of 16: scale index 2g for l < 16, 2g+1 for l >= 16.
                const __m256 d0 = _mm256_set1_ps(d * static_cast<float>(sc[2 * g]));
                const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc[2 * g + 1]));
                store16_mul_s8(y + 32 * g, _mm256_castsi256_si128(q[g]), d0);
                store16_mul_s8(y + 32 * g + 16, _mm256_extracti128_si256(q[g], 1), d1);
            }
        }
    }
}

void deq_iq4_xs_avx2(const BlockIQ4_XS* x, float* y, int64_t nb) {
    const __m128i values = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const __m256 dl = _mm256_set1_ps(d * static_cast<float>(iq4xs_scale(x[i], ib) - 32));
            const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs + 16 * ib));
            store16_mul_s8(y, _mm_shuffle_epi8(values, _mm_and_si128(q, m4)), dl);
            store16_mul_s8(y + 16, _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(q, 4), m4)), dl);
        }
    }
}

// Q4_0: low nibbles are elements 0..15, high nibbles 16..31; (q - 8) * d
// with the same int-to-float conversion and one multiply as the scalar code.
void deq_q4_0_avx2(const BlockQ4_0* x, float* y, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(x[i].d));
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs));
        const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int k = 0; k < 4; ++k) {
            const __m256i v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[k]), eight);
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
        }
    }
}

#endif  // __AVX2__

template <typename Block>
const Block* as(const void* p) {
    return static_cast<const Block*>(p);
}

void dequantize(GgmlType type, const void* src, float* y, int64_t n, bool simd) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
    if (!info) unsupported(type);
    switch (type) {
        case GgmlType::F32:
            std::memcpy(y, src, static_cast<size_t>(block_count(type, n, 1)) * sizeof(float));
            return;
        case GgmlType::F16:
            if (simd)
                fp16_to_fp32_row(static_cast<const uint16_t*>(src), y, block_count(type, n, 1));
            else
                for (int64_t i = 0; i < block_count(type, n, 1); ++i)
                    y[i] = fp16_to_fp32_soft(static_cast<const uint16_t*>(src)[i]);
            return;
        case GgmlType::BF16:
            bf16_to_fp32_row(static_cast<const uint16_t*>(src), y, block_count(type, n, 1));
            return;
        case GgmlType::Q4_0:
#if defined(__AVX2__)
            if (simd) return deq_q4_0_avx2(as<BlockQ4_0>(src), y, block_count(type, n, kQK));
#endif
            return deq_q4_0(as<BlockQ4_0>(src), y, block_count(type, n, kQK));
        case GgmlType::Q4_1:
            return deq_q4_1(as<BlockQ4_1>(src), y, block_count(type, n, kQK));
        case GgmlType::Q5_0:
            return deq_q5_0(as<BlockQ5_0>(src), y, block_count(type, n, kQK));
        case GgmlType::Q5_1:
            return deq_q5_1(as<BlockQ5_1>(src), y, block_count(type, n, kQK));
        case GgmlType::Q8_1:
            return deq_q8_1(as<BlockQ8_1>(src), y, block_count(type, n, kQK));
        case GgmlType::Q2_K:
            return deq_q2_k(as<BlockQ2_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::Q3_K:
            return deq_q3_k(as<BlockQ3_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::Q8_K:
            return deq_q8_k(as<BlockQ8_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::IQ4_NL:
            return deq_iq4_nl(as<BlockIQ4_NL>(src), y, block_count(type, n, kQK));
#if defined(__AVX2__)
        case GgmlType::Q8_0:
            return simd ? deq_q8_0_avx2(as<BlockQ8_0>(src), y, block_count(type, n, kQK))
                        : deq_q8_0(as<BlockQ8_0>(src), y, block_count(type, n, kQK));
        case GgmlType::Q4_K:
            return simd ? deq_q4_k_avx2(as<BlockQ4_K>(src), y, block_count(type, n, kQK_K))
                        : deq_q4_k(as<BlockQ4_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::Q5_K:
            return simd ? deq_q5_k_avx2(as<BlockQ5_K>(src), y, block_count(type, n, kQK_K))
                        : deq_q5_k(as<BlockQ5_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::Q6_K:
            return simd ? deq_q6_k_avx2(as<BlockQ6_K>(src), y, block_count(type, n, kQK_K))
                        : deq_q6_k(as<BlockQ6_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::IQ4_XS:
            return simd ? deq_iq4_xs_avx2(as<BlockIQ4_XS>(src), y, block_count(type, n, kQK_K))
                        : deq_iq4_xs(as<BlockIQ4_XS>(src), y, block_count(type, n, kQK_K));
#else
        case GgmlType::Q8_0:
            return deq_q8_0(as<BlockQ8_0>(src), y, block_count(type, n, kQK));
        case GgmlType::Q4_K:
            return deq_q4_k(as<BlockQ4_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::Q5_K:
            return deq_q5_k(as<BlockQ5_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::Q6_K:
            return deq_q6_k(as<BlockQ6_K>(src), y, block_count(type, n, kQK_K));
        case GgmlType::IQ4_XS:
            return deq_iq4_xs(as<BlockIQ4_XS>(src), y, block_count(type, n, kQK_K));
#endif
        default:
            unsupported(type);
    }
}

}  // namespace

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
    dequantize(type, src, dst, n, true);
}

void dequantize_row_scalar(GgmlType type, const void* src, float* dst, int64_t n) {
    dequantize(type, src, dst, n, false);
}

}  // namespace moeserve
