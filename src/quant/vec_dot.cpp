// Scalar reference kernels and the dispatch. The integer sum of each block
// (or K-quant super-block) is exact; the float part follows ggml's generic
// code: one float accumulator, blocks added in order.
#include "quant/vec_dot.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/block_formats.h"
#include "quant/fp16.h"
#include "quant/vec_dot_kernels.h"

namespace moeserve {
namespace {

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

float dot_f32(const void* vw, const void* va, int64_t n) {
    const float* w = static_cast<const float*>(vw);
    const float* a = static_cast<const float*>(va);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(w[i] * a[i]);
    return static_cast<float>(sum);
}

float dot_f16(const void* vw, const void* va, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(vw);
    const uint16_t* a = static_cast<const uint16_t*>(va);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(w[i]) * fp16_to_fp32(a[i]));
    return static_cast<float>(sum);
}

float dot_bf16(const void* vw, const void* va, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(vw);
    const uint16_t* a = static_cast<const uint16_t*>(va);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(w[i]) * bf16_to_fp32(a[i]));
    return static_cast<float>(sum);
}

// Q4_0: element j is (qs[j] & 15) - 8, element j+16 is (qs[j] >> 4) - 8.
float dot_q4_0(const void* vw, const void* va, int64_t n) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(vw);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(va);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + 16];
        }
        sumf += static_cast<float>(sumi) * fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d);
    }
    return sumf;
}

// Q4_1: Σ (q*d + m) * a = d*d_a*Σ q*q_a + m * (d_a*Σ q_a), the last factor is Q8_1's s.
float dot_q4_1(const void* vw, const void* va, int64_t n) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(vw);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(va);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
            sumi += (x[ib].qs[j] >> 4) * y[ib].qs[j + 16];
        }
        sumf += fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d) * static_cast<float>(sumi) +
                fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
    }
    return sumf;
}

float dot_q5_0(const void* vw, const void* va, int64_t n) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(vw);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(va);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const uint32_t qh = load_u32(x[ib].qh);
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            const int q0 = ((x[ib].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4)) - 16;
            const int q1 = ((x[ib].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4)) - 16;
            sumi += q0 * y[ib].qs[j] + q1 * y[ib].qs[j + 16];
        }
        sumf += static_cast<float>(sumi) * fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d);
    }
    return sumf;
}

float dot_q5_1(const void* vw, const void* va, int64_t n) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(vw);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(va);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const uint32_t qh = load_u32(x[ib].qh);
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            const int q0 = (x[ib].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int q1 = (x[ib].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            sumi += q0 * y[ib].qs[j] + q1 * y[ib].qs[j + 16];
        }
        sumf += fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d) * static_cast<float>(sumi) +
                fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
    }
    return sumf;
}

float dot_q8_0(const void* vw, const void* va, int64_t n) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(vw);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(va);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += static_cast<float>(sumi) * (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d));
    }
    return sumf;
}

float dot_iq4_nl(const void* vw, const void* va, int64_t n) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(vw);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(va);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float d = fp16_to_fp32(y[ib].d) * fp16_to_fp32(x[ib].d);
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += y[ib].qs[j] * kIq4nlValues[x[ib].qs[j] & 0xF];
            sumi += y[ib].qs[j + 16] * kIq4nlValues[x[ib].qs[j] >> 4];
        }
        sumf += d * static_cast<float>(sumi);
    }
    return sumf;
}

// Q4_K: sub-block b (32 elements) has scale sc_b and min m_b; with Q8_K's
// bsums (sums of 16 activations) the min term needs no pass over the quants.
float dot_q4_k(const void* vw, const void* va, int64_t n) {
    const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int sumi = 0, summ = 0;
        for (int b = 0; b < 8; ++b) {
            uint8_t sc, m;
            q4k_scale_min(b, x[i].scales, &sc, &m);
            const uint8_t* q = x[i].qs + 32 * (b / 2);
            const int shift = 4 * (b % 2);
            const int8_t* a = y[i].qs + 32 * b;
            int s = 0;
            for (int l = 0; l < 32; ++l) s += ((q[l] >> shift) & 0xF) * a[l];
            sumi += sc * s;
            summ += m * (y[i].bsums[2 * b] + y[i].bsums[2 * b + 1]);
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(sumi) -
                fp16_to_fp32(x[i].dmin) * y[i].d * static_cast<float>(summ);
    }
    return sumf;
}

float dot_q5_k(const void* vw, const void* va, int64_t n) {
    const BlockQ5_K* x = static_cast<const BlockQ5_K*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int sumi = 0, summ = 0;
        for (int b = 0; b < 8; ++b) {
            uint8_t sc, m;
            q4k_scale_min(b, x[i].scales, &sc, &m);
            const uint8_t* q = x[i].qs + 32 * (b / 2);
            const int shift = 4 * (b % 2);
            const int8_t* a = y[i].qs + 32 * b;
            int s = 0;
            for (int l = 0; l < 32; ++l) s += (((q[l] >> shift) & 0xF) | (((x[i].qh[l] >> b) & 1) << 4)) * a[l];
            sumi += sc * s;
            summ += m * (y[i].bsums[2 * b] + y[i].bsums[2 * b + 1]);
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(sumi) -
                fp16_to_fp32(x[i].dmin) * y[i].d * static_cast<float>(summ);
    }
    return sumf;
}

// Q6_K: element e of half n at r = e%128, g = r/32, l = r%32 (spec §2.12).
float dot_q6_k(const void* vw, const void* va, int64_t n) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int sumi = 0;
        for (int e16 = 0; e16 < 16; ++e16) {
            int s = 0;
            for (int e = 16 * e16; e < 16 * e16 + 16; ++e) {
                const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
                const uint8_t qlb = x[i].ql[64 * h + l + ((g & 1) ? 32 : 0)];
                const int lo = g < 2 ? (qlb & 0xF) : (qlb >> 4);
                const int hi = (x[i].qh[32 * h + l] >> (2 * g)) & 3;
                s += ((lo | (hi << 4)) - 32) * y[i].qs[e];
            }
            sumi += x[i].scales[e16] * s;
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(sumi);
    }
    return sumf;
}

// IQ4_XS: the 6-bit sub-block scales (ls - 32) are integers, so the whole
// super-block sums in int32 before the one float multiply.
float dot_iq4_xs(const void* vw, const void* va, int64_t n) {
    const BlockIQ4_XS* x = static_cast<const BlockIQ4_XS*>(vw);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(va);
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int sumi = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const uint8_t* qs = x[i].qs + 16 * ib;
            const int8_t* a = y[i].qs + 32 * ib;
            int s = 0;
            for (int j = 0; j < 16; ++j) s += a[j] * kIq4nlValues[qs[j] & 0xF] + a[j + 16] * kIq4nlValues[qs[j] >> 4];
            sumi += (ls - 32) * s;
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(sumi);
    }
    return sumf;
}

[[noreturn]] void no_kernel(GgmlType type) {
    throw std::invalid_argument("vec_dot: no dot product for tensor type " + std::string(ggml_type_name(type)) +
                                " (id " + std::to_string(static_cast<uint32_t>(type)) + ")");
}

void check_n(GgmlType type, int64_t n) {
    const int64_t block = ggml_type_info(type).block_size;
    if (n < 0 || n % block != 0)
        throw std::invalid_argument("vec_dot: " + std::to_string(n) + " elements of " +
                                    std::string(ggml_type_name(type)) + " is not a multiple of the block size " +
                                    std::to_string(block));
}

VecDotFn checked_kernel(GgmlType type, VecDotFn fn, int64_t n) {
    if (!fn) no_kernel(type);
    check_n(type, n);
    return fn;
}

}  // namespace

namespace detail {

VecDotFn vec_dot_scalar_kernel(GgmlType type) {
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

}  // namespace detail

GgmlType vec_dot_type(GgmlType weight) {
    switch (weight) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
            return weight;
        case GgmlType::Q4_0:
        case GgmlType::Q5_0:
        case GgmlType::Q8_0:
        case GgmlType::IQ4_NL:
            return GgmlType::Q8_0;
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
            return GgmlType::Q8_1;
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K:
        case GgmlType::IQ4_XS:
            return GgmlType::Q8_K;
        default:
            throw std::invalid_argument("vec_dot_type: no activation type for tensor type " +
                                        std::string(ggml_type_name(weight)));
    }
}

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar:
            return "scalar";
        case SimdLevel::avx2:
            return "avx2";
        case SimdLevel::avx512:
            return "avx512";
    }
    return "?";
}

VecDotFn vec_dot_kernel(GgmlType type, SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar:
            return detail::vec_dot_scalar_kernel(type);
        case SimdLevel::avx2:
#if defined(__AVX2__) && defined(__FMA__)
            return detail::vec_dot_avx2_kernel(type);
#else
            return nullptr;
#endif
        case SimdLevel::avx512:
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
            return detail::vec_dot_avx512_kernel(type);
#else
            return nullptr;
#endif
    }
    return nullptr;
}

VecDotFn vec_dot_kernel(GgmlType type) {
    for (SimdLevel level : {SimdLevel::avx512, SimdLevel::avx2, SimdLevel::scalar})
        if (VecDotFn fn = vec_dot_kernel(type, level)) return fn;
    return nullptr;
}

VecDot4Fn vec_dot4_kernel(GgmlType type) {
    // Only the four-row form of the best single-row kernel, so the batch
    // size never changes a result.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    if (vec_dot_kernel(type, SimdLevel::avx512)) return detail::vec_dot4_avx512_kernel(type);
#endif
#if defined(__AVX2__) && defined(__FMA__)
    if (vec_dot_kernel(type) == vec_dot_kernel(type, SimdLevel::avx2)) return detail::vec_dot4_avx2_kernel(type);
#endif
    return nullptr;
}

VecDotFewFn vec_dot_few_kernel(GgmlType type, int count) {
    // As for four rows: only forms of the best single-row kernel.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    if (vec_dot_kernel(type, SimdLevel::avx512)) return detail::vec_dot_few_avx512_kernel(type, count);
#endif
    (void)type, (void)count;
    return nullptr;
}

VecDotRowsFn vec_dot_rows_kernel(GgmlType type) {
    // Only the weight-rows form of the best single-row kernel (the AVX-512 one
    // reproduces the AVX2 kernels of the Q8_0 partners bit for bit).
#if defined(__AVX2__) && defined(__FMA__)
    if (vec_dot_kernel(type) == vec_dot_kernel(type, SimdLevel::avx2)) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
        if (VecDotRowsFn fn = detail::vec_dot_rows_avx512_kernel(type)) return fn;
#endif
        return detail::vec_dot_rows_avx2_kernel(type);
    }
#endif
    (void)type;
    return nullptr;
}

VecDotRowsFewFn vec_dot_rows_few_kernel(GgmlType type) {
    // The form of the AVX-512 weight-rows kernel, where that is the one used.
#if defined(__AVX2__) && defined(__FMA__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    if (vec_dot_kernel(type) == vec_dot_kernel(type, SimdLevel::avx2) && detail::vec_dot_rows_avx512_kernel(type))
        return detail::vec_dot_rows_few_avx512_kernel(type);
#endif
    (void)type;
    return nullptr;
}

const VecDotTile* vec_dot_tile_kernel(GgmlType type, int64_t n) {
    // The tiles reproduce the AVX2 kernels bit for bit, so only where those
    // are the best, or (Q6_K, IQ4_XS) where the AVX-512 kernel is theirs bit
    // for bit too.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__)
#if defined(__AVX512VNNI__)
    if (const VecDotTile* tile = detail::vec_dot_tile_q8_k_avx512_kernel(type)) return tile;
#endif
    if (vec_dot_kernel(type) == vec_dot_kernel(type, SimdLevel::avx2))
        return detail::vec_dot_tile_avx512_kernel(type, n);
#endif
    (void)type, (void)n;
    return nullptr;
}

float vec_dot(GgmlType weight_type, const void* w, const void* act, int64_t n) {
    return checked_kernel(weight_type, vec_dot_kernel(weight_type), n)(w, act, n);
}

float vec_dot_scalar(GgmlType weight_type, const void* w, const void* act, int64_t n) {
    return checked_kernel(weight_type, detail::vec_dot_scalar_kernel(weight_type), n)(w, act, n);
}

}  // namespace moeserve
