// The CPU's activation rounding to q8_0 / q8_K for one warp's 256 values,
// and the int8 form's store (Q8Rows): shared by the rounding kernel
// (cuda_activation_rounding.cu, which documents the rules) and the RMSNorm
// that writes its output's int8 forms itself (cuda_elementwise.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_q8_rows.h"

namespace moeserve::cuda {

inline constexpr int kQ8Span = 256;         // values per warp: one q8_K block, or eight q8_0 blocks
inline constexpr int kQ8ValuesPerLane = 8;  // kQ8Span / 32

// q8_0/q8_1 (x86 rule): v := fp16(amax/127) * rint(v * 127/amax) over the
// 32-value block of 4 consecutive lanes; q: the codes, d_out: the scale.
__device__ __forceinline__ void round_q8_0(float* v, int* q, float& d_out) {
    float amax = 0.0f;
    for (int j = 0; j < kQ8ValuesPerLane; ++j) amax = fmaxf(amax, fabsf(v[j]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    const float d = half_bits_to_f32(f32_to_half_bits(__fdiv_rn(amax, 127.0f)));
    const float id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    for (int j = 0; j < kQ8ValuesPerLane; ++j) {
        // Through an integer, as the CPU's int8 code: a small negative value
        // gives +0, not rintf's -0 (the bits are compared).
        q[j] = max(-128, min(127, __float2int_rn(__fmul_rn(v[j], id))));
        v[j] = __fmul_rn(static_cast<float>(q[j]), d);
    }
    d_out = d;
}

// q8_K: v := (1/iscale) * min(127, rint(iscale * v)) over the warp's 256
// values; q: the codes, d: 1/iscale (0 for an all-zero block).
__device__ __forceinline__ void round_q8_k(float* v, int* q, float& d_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQ8ValuesPerLane; ++j)
        if (fabsf(v[j]) > amax) amax = fabsf(v[j]), max = v[j];
    // The largest magnitude of the block with its sign; on a tie the lowest
    // lane, which holds the earlier values (the CPU keeps the first).
    int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        const float a2 = __shfl_xor_sync(0xffffffffu, amax, o), m2 = __shfl_xor_sync(0xffffffffu, max, o);
        const int l2 = __shfl_xor_sync(0xffffffffu, lane, o);
        if (a2 > amax || (a2 == amax && l2 < lane)) amax = a2, max = m2, lane = l2;
    }
    if (amax == 0.0f) {
        for (int j = 0; j < kQ8ValuesPerLane; ++j) v[j] = 0.0f, q[j] = 0;
        d_out = 0.0f;
        return;
    }
    const float iscale = __fdiv_rn(-127.0f, max);
    const float d = __fdiv_rn(1.0f, iscale);
    for (int j = 0; j < kQ8ValuesPerLane; ++j) {
        q[j] = min(127, __float2int_rn(__fmul_rn(iscale, v[j])));
        v[j] = __fmul_rn(d, static_cast<float>(q[j]));
    }
    d_out = d;
}

// The lane's 8 codes of row `row`, span `span` (256 values) in int8 form,
// with the scale of their block: q8_K (bsums too) or q8_0 (a block per 4 lanes).
__device__ __forceinline__ void store_q8(const Q8Rows& q8, bool q8_k, int64_t row, int64_t width, int64_t span,
                                         const int* q, float d) {
    const int lane = threadIdx.x & 31;
    uint32_t lo = 0, hi = 0;
    int sum = 0;
    for (int j = 0; j < 4; ++j) {
        lo |= (static_cast<uint32_t>(q[j]) & 0xFFu) << (8 * j);
        hi |= (static_cast<uint32_t>(q[4 + j]) & 0xFFu) << (8 * j);
    }
    for (int j = 0; j < kQ8ValuesPerLane; ++j) sum += q[j];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);  // two lanes hold a group of 16
    *reinterpret_cast<uint2*>(q8.q + row * width + span * kQ8Span + lane * kQ8ValuesPerLane) = make_uint2(lo, hi);
    if (!q8_k) {
        if ((lane & 3) == 0) q8.d[row * (width / 32) + span * (kQ8Span / 32) + lane / 4] = d;
        return;
    }
    if ((lane & 1) == 0) q8.bsum[row * (width / 16) + span * (kQ8Span / 16) + lane / 2] = sum;
    if (lane == 0) q8.d[row * (width / kQ8Span) + span] = d;
}

}  // namespace moeserve::cuda
