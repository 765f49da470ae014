// Device helpers for the KV-cache element types (f32, f16, bf16, q8_0,
// q4_0, q4_1, q5_0, q5_1, iq4_nl): decoding 32 values of a cached row to
// f32, encoding them with exactly the CPU backend's rounding rules
// (src/quant/quantize.cpp via quantize_row_activation: q8_0 with the x86
// rule, every other type with ggml's reference rule), and the block-wide
// Walsh-Hadamard transform llama.cpp applies to quantized caches.
//
// Bit-exactness: the project compiles CUDA with --use_fast_math, which
// would contract a*b+c into FMAs and make '/' approximate. The encoders use
// the _rn intrinsics throughout, which are IEEE round-to-nearest and never
// contracted, so each operation rounds exactly as the CPU's does.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "quant/block_formats.h"
#include "quant/ggml_type.h"

namespace moeserve::cuda {

// The IQ4_NL codebook (block_formats.h kIq4nlValues; a host constexpr array
// cannot be indexed at run time in device code).
__device__ __forceinline__ int iq4nl_value(int i) {
    constexpr int8_t v[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    return v[i];
}

__host__ __device__ __forceinline__ bool kv_is_float_type(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

// Bytes of n values of a KV type (n a multiple of 32 for the block types).
__host__ __device__ __forceinline__ size_t kv_bytes(GgmlType t, int64_t n) {
    switch (t) {
        case GgmlType::F32:
            return n * 4;
        case GgmlType::F16:
        case GgmlType::BF16:
            return n * 2;
        case GgmlType::Q8_0:
            return n / 32 * sizeof(BlockQ8_0);
        case GgmlType::Q4_0:
            return n / 32 * sizeof(BlockQ4_0);
        case GgmlType::Q4_1:
            return n / 32 * sizeof(BlockQ4_1);
        case GgmlType::Q5_0:
            return n / 32 * sizeof(BlockQ5_0);
        case GgmlType::Q5_1:
            return n / 32 * sizeof(BlockQ5_1);
        case GgmlType::IQ4_NL:
            return n / 32 * sizeof(BlockIQ4_NL);
        default:
            return 0;
    }
}

__device__ __forceinline__ float half_bits_to_f32(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
__device__ __forceinline__ uint16_t f32_to_half_bits(float f) {
    return __half_as_ushort(__float2half_rn(f));
}
__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) {
    return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
// As fp16.h fp32_to_bf16: NaN -> quiet, else round to nearest even (subnormals kept).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
    const uint32_t u = __float_as_uint(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ uint32_t load_u32_bytes(const uint8_t* p) {
    return p[0] | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

// out[0..n) = values [32*unit, 32*unit + n) of a row of type t (n = 32 for
// the block types; the float types allow a shorter last unit).
__device__ __forceinline__ void kv_decode_unit(GgmlType t, const uint8_t* row, int unit, int n, float* out) {
    switch (t) {
        case GgmlType::F32: {
            const float* p = reinterpret_cast<const float*>(row) + 32 * unit;
            for (int j = 0; j < n; ++j) out[j] = p[j];
            return;
        }
        case GgmlType::F16: {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + 32 * unit;
            for (int j = 0; j < n; ++j) out[j] = half_bits_to_f32(p[j]);
            return;
        }
        case GgmlType::BF16: {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + 32 * unit;
            for (int j = 0; j < n; ++j) out[j] = bf16_bits_to_f32(p[j]);
            return;
        }
        case GgmlType::Q8_0: {
            const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + unit;
            const float d = half_bits_to_f32(b->d);
            for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(b->qs[j]) * d;
            return;
        }
        case GgmlType::Q4_0: {
            const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(row) + unit;
            const float d = half_bits_to_f32(b->d);
            for (int j = 0; j < 16; ++j) {
                out[j] = static_cast<float>((b->qs[j] & 0x0F) - 8) * d;
                out[j + 16] = static_cast<float>((b->qs[j] >> 4) - 8) * d;
            }
            return;
        }
        case GgmlType::Q4_1: {
            const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(row) + unit;
            const float d = half_bits_to_f32(b->d), m = half_bits_to_f32(b->m);
            for (int j = 0; j < 16; ++j) {
                out[j] = static_cast<float>(b->qs[j] & 0x0F) * d + m;
                out[j + 16] = static_cast<float>(b->qs[j] >> 4) * d + m;
            }
            return;
        }
        case GgmlType::Q5_0: {
            const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(row) + unit;
            const float d = half_bits_to_f32(b->d);
            const uint32_t qh = load_u32_bytes(b->qh);
            for (int j = 0; j < 16; ++j) {
                const int lo = (b->qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
                const int hi = (b->qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
                out[j] = static_cast<float>(lo - 16) * d;
                out[j + 16] = static_cast<float>(hi - 16) * d;
            }
            return;
        }
        case GgmlType::Q5_1: {
            const BlockQ5_1* b = reinterpret_cast<const BlockQ5_1*>(row) + unit;
            const float d = half_bits_to_f32(b->d), m = half_bits_to_f32(b->m);
            const uint32_t qh = load_u32_bytes(b->qh);
            for (int j = 0; j < 16; ++j) {
                const int lo = (b->qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
                const int hi = (b->qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
                out[j] = static_cast<float>(lo) * d + m;
                out[j + 16] = static_cast<float>(hi) * d + m;
            }
            return;
        }
        case GgmlType::IQ4_NL: {
            const BlockIQ4_NL* b = reinterpret_cast<const BlockIQ4_NL*>(row) + unit;
            const float d = half_bits_to_f32(b->d);
            for (int j = 0; j < 16; ++j) {
                out[j] = d * static_cast<float>(iq4nl_value(b->qs[j] & 0xF));
                out[j + 16] = d * static_cast<float>(iq4nl_value(b->qs[j] >> 4));
            }
            return;
        }
        default:
            for (int j = 0; j < n; ++j) out[j] = 0.0f;
            return;
    }
}

// out[0..N) = values [d0, d0 + N) of a row of type t, N = 4 or 8 and d0 a
// multiple of N (so a run never crosses a 32-value block): what one lane of
// the decode attention kernel reads of a K or V row, with the arithmetic of
// kv_decode_unit.
template <int N>
__device__ __forceinline__ void kv_decode_run(GgmlType t, const uint8_t* row, int d0, float* out) {
    static_assert(N == 4 || N == 8, "runs of 4 or 8 values");
    const int u = d0 / 32, j0 = d0 % 32;
    switch (t) {
        case GgmlType::F32: {
            const float* p = reinterpret_cast<const float*>(row) + d0;
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = p[i];
            return;
        }
        case GgmlType::F16: {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + d0;
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = half_bits_to_f32(p[i]);
            return;
        }
        case GgmlType::BF16: {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + d0;
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = bf16_bits_to_f32(p[i]);
            return;
        }
        case GgmlType::Q8_0: {
            const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + u;
            const float d = half_bits_to_f32(b->d);
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = static_cast<float>(b->qs[j0 + i]) * d;
            return;
        }
        default:
            break;
    }
    // The 4-bit and 5-bit types: element e < 16 is the low nibble of qs[e],
    // e >= 16 the high nibble of qs[e - 16] (Q5: plus bit e of qh).
    const bool high = j0 >= 16;
    const int q0 = high ? j0 - 16 : j0;
    auto nibble = [&](const uint8_t* qs, int i) { return high ? qs[q0 + i] >> 4 : qs[q0 + i] & 0x0F; };
    switch (t) {
        case GgmlType::Q4_0: {
            const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(row) + u;
            const float d = half_bits_to_f32(b->d);
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = static_cast<float>(nibble(b->qs, i) - 8) * d;
            return;
        }
        case GgmlType::Q4_1: {
            const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(row) + u;
            const float d = half_bits_to_f32(b->d), m = half_bits_to_f32(b->m);
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = static_cast<float>(nibble(b->qs, i)) * d + m;
            return;
        }
        case GgmlType::Q5_0: {
            const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(row) + u;
            const float d = half_bits_to_f32(b->d);
            const uint32_t qh = load_u32_bytes(b->qh);
#pragma unroll
            for (int i = 0; i < N; ++i) {
                const int q = nibble(b->qs, i) | static_cast<int>(((qh >> (j0 + i)) & 1u) << 4);
                out[i] = static_cast<float>(q - 16) * d;
            }
            return;
        }
        case GgmlType::Q5_1: {
            const BlockQ5_1* b = reinterpret_cast<const BlockQ5_1*>(row) + u;
            const float d = half_bits_to_f32(b->d), m = half_bits_to_f32(b->m);
            const uint32_t qh = load_u32_bytes(b->qh);
#pragma unroll
            for (int i = 0; i < N; ++i) {
                const int q = nibble(b->qs, i) | static_cast<int>(((qh >> (j0 + i)) & 1u) << 4);
                out[i] = static_cast<float>(q) * d + m;
            }
            return;
        }
        case GgmlType::IQ4_NL: {
            const BlockIQ4_NL* b = reinterpret_cast<const BlockIQ4_NL*>(row) + u;
            const float d = half_bits_to_f32(b->d);
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = d * static_cast<float>(iq4nl_value(nibble(b->qs, i)));
            return;
        }
        default:
#pragma unroll
            for (int i = 0; i < N; ++i) out[i] = 0.0f;
            return;
    }
}

// ---- encoders: one 32-value block, the CPU's operations in the CPU's order --

// The element of largest magnitude, sign kept; the first one wins a tie.
__device__ __forceinline__ float kv_signed_absmax(const float* x, float* amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

__device__ __forceinline__ void kv_min_max(const float* x, float* mn, float* mx) {
    float lo = 3.402823466e+38f, hi = -3.402823466e+38f;
    for (int j = 0; j < 32; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

// C++'s float -> integer conversion: truncation toward zero.
__device__ __forceinline__ int trunc_to_int(float f) {
    return __float2int_rz(f);
}

__device__ __forceinline__ void pack_q5_bits(const uint8_t* q, uint8_t* qs, uint8_t* qh_bytes) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
        qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int i = 0; i < 4; ++i) qh_bytes[i] = static_cast<uint8_t>(qh >> (8 * i));
}

__device__ __forceinline__ int iq4nl_best_index(float v) {
    if (v <= iq4nl_value(0)) return 0;
    if (v >= iq4nl_value(15)) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < iq4nl_value(mid))
            hi = mid;
        else
            lo = mid;
    }
    return __fsub_rn(v, static_cast<float>(iq4nl_value(hi - 1))) < __fsub_rn(static_cast<float>(iq4nl_value(hi)), v)
               ? hi - 1
               : hi;
}

// Encodes 32 values x into one block of type t at dst (a block type).
__device__ inline void kv_encode_block(GgmlType t, const float* x, uint8_t* dst) {
    switch (t) {
        case GgmlType::Q8_0: {  // x86 rule: id = 127/amax, round half to even
            BlockQ8_0* y = reinterpret_cast<BlockQ8_0*>(dst);
            float amax = 0.0f;
            for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(x[j]));
            const float d = __fdiv_rn(amax, 127.0f);
            const float id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
            for (int j = 0; j < 32; ++j) {
                const float r = rintf(__fmul_rn(x[j], id));
                y->qs[j] = static_cast<int8_t>(static_cast<int>(fminf(fmaxf(r, -128.0f), 127.0f)));
            }
            y->d = f32_to_half_bits(d);
            return;
        }
        case GgmlType::Q4_0: {
            BlockQ4_0* y = reinterpret_cast<BlockQ4_0*>(dst);
            float amax;
            const float max = kv_signed_absmax(x, &amax);
            const float d = __fdiv_rn(max, -8.0f);
            const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            y->d = f32_to_half_bits(d);
            for (int j = 0; j < 16; ++j) {
                const int q0 = min(15, trunc_to_int(__fadd_rn(__fmul_rn(x[j], id), 8.5f)));
                const int q1 = min(15, trunc_to_int(__fadd_rn(__fmul_rn(x[j + 16], id), 8.5f)));
                y->qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
            }
            return;
        }
        case GgmlType::Q4_1: {
            BlockQ4_1* y = reinterpret_cast<BlockQ4_1*>(dst);
            float mn, mx;
            kv_min_max(x, &mn, &mx);
            const float d = __fdiv_rn(__fsub_rn(mx, mn), 15.0f);
            const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            y->d = f32_to_half_bits(d);
            y->m = f32_to_half_bits(mn);
            for (int j = 0; j < 16; ++j) {
                const int q0 = min(15, trunc_to_int(__fadd_rn(__fmul_rn(__fsub_rn(x[j], mn), id), 0.5f)));
                const int q1 = min(15, trunc_to_int(__fadd_rn(__fmul_rn(__fsub_rn(x[j + 16], mn), id), 0.5f)));
                y->qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
            }
            return;
        }
        case GgmlType::Q5_0: {
            BlockQ5_0* y = reinterpret_cast<BlockQ5_0*>(dst);
            float amax;
            const float max = kv_signed_absmax(x, &amax);
            const float d = __fdiv_rn(max, -16.0f);
            const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            y->d = f32_to_half_bits(d);
            uint8_t q[32];
            for (int j = 0; j < 32; ++j)
                q[j] = static_cast<uint8_t>(min(31, trunc_to_int(__fadd_rn(__fmul_rn(x[j], id), 16.5f))));
            pack_q5_bits(q, y->qs, y->qh);
            return;
        }
        case GgmlType::Q5_1: {
            BlockQ5_1* y = reinterpret_cast<BlockQ5_1*>(dst);
            float mn, mx;
            kv_min_max(x, &mn, &mx);
            const float d = __fdiv_rn(__fsub_rn(mx, mn), 31.0f);
            const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            y->d = f32_to_half_bits(d);
            y->m = f32_to_half_bits(mn);
            uint8_t q[32];
            for (int j = 0; j < 32; ++j)
                q[j] = static_cast<uint8_t>(__float2uint_rz(__fadd_rn(__fmul_rn(__fsub_rn(x[j], mn), id), 0.5f)));
            pack_q5_bits(q, y->qs, y->qh);
            return;
        }
        case GgmlType::IQ4_NL: {  // the KV rule (spec §3.7): one least-squares fit, indices from d0
            BlockIQ4_NL* y = reinterpret_cast<BlockIQ4_NL*>(dst);
            uint8_t L[32];
            for (int j = 0; j < 32; ++j) L[j] = 0;
            float amax;
            const float max = kv_signed_absmax(x, &amax);
            float d = 0.0f;
            if (!(amax < 1e-15f)) {
                const float d0 = __fdiv_rn(max, -127.0f);
                const float id = __fdiv_rn(1.0f, d0);
                float sumqx = 0.0f, sumq2 = 0.0f;
                for (int j = 0; j < 32; ++j) {
                    const float w = __fmul_rn(x[j], x[j]);
                    const int l = iq4nl_best_index(__fmul_rn(id, x[j]));
                    L[j] = static_cast<uint8_t>(l);
                    const float q = static_cast<float>(iq4nl_value(l));
                    sumqx = __fadd_rn(sumqx, __fmul_rn(__fmul_rn(w, q), x[j]));
                    sumq2 = __fadd_rn(sumq2, __fmul_rn(__fmul_rn(w, q), q));
                }
                d = sumq2 > 0 ? __fdiv_rn(sumqx, sumq2) : 0.0f;
            }
            y->d = f32_to_half_bits(d);
            for (int j = 0; j < 16; ++j) y->qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
            return;
        }
        default:
            return;
    }
}

// In-place normalized Walsh-Hadamard transform of every `chunk`-sized piece
// of x[0..n) in shared memory, by all threads of the block (which must all
// call it). The same butterflies, in the same order per element, as the CPU's
// hadamard_transform, and the same final scale, so results are bit-identical.
__device__ inline void block_hadamard_chunks(float* x, int n, int chunk, float scale) {
    const int n_pairs = n / 2;
    for (int len = 1; len < chunk; len <<= 1) {
        __syncthreads();
        for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) {
            // pair p: chunk-local index of the lower element is i*2*len + j
            const int base = (p / (chunk / 2)) * chunk;
            const int q = p % (chunk / 2);
            const int lo = base + (q / len) * 2 * len + (q % len);
            const float a = x[lo], b = x[lo + len];
            x[lo] = __fadd_rn(a, b);
            x[lo + len] = __fsub_rn(a, b);
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = __fmul_rn(x[i], scale);
    __syncthreads();
}

}  // namespace moeserve::cuda
