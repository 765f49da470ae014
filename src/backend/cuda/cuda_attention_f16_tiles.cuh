// K and V rows of the paged cache as f16 tiles in shared memory, for the
// tensor-core attention forms (cuda_attention_mma.cu,
// cuda_attention_fa2.cu): an f16 cache copied, q4_0 / q8_0 blocks and the
// other types decoded as kv_decode_unit decodes them, then rounded to f16.
// Internal to src/backend/cuda.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/cuda_kv_blocks.cuh"

namespace moeserve::cuda {

// Two f16 values in one word, the first in the low half.
__device__ __forceinline__ uint32_t half_pair(float lo, float hi) {
    return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(lo))) |
           (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
}

// 16 values of a q4_0 / q8_0 block (`half` 0: values 0..15, 1: 16..31) as
// f16 at o (16-byte aligned), each d * q in f32 rounded once, as
// kv_decode_unit computes them.
__device__ __forceinline__ void store_half_block(GgmlType type, const uint8_t* b, int half, __half* o) {
    const float d = half_bits_to_f32(*reinterpret_cast<const uint16_t*>(b));
    uint32_t w[8];
    if (type == GgmlType::Q4_0) {  // byte j: value j in the low nibble, j + 16 in the high one
        const int shift = 4 * half;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t two = *reinterpret_cast<const uint16_t*>(b + 2 + 2 * k);
            w[k] = half_pair(static_cast<float>(static_cast<int>((two >> shift) & 0x0F) - 8) * d,
                             static_cast<float>(static_cast<int>((two >> (8 + shift)) & 0x0F) - 8) * d);
        }
    } else {  // Q8_0: 32 int8 after d
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t two = *reinterpret_cast<const uint16_t*>(b + 2 + 16 * half + 2 * k);
            w[k] = half_pair(static_cast<float>(static_cast<int8_t>(two & 0xFF)) * d,
                             static_cast<float>(static_cast<int8_t>(two >> 8)) * d);
        }
    }
    reinterpret_cast<uint4*>(o)[0] = make_uint4(w[0], w[1], w[2], w[3]);
    reinterpret_cast<uint4*>(o)[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

// n_rows cached rows (row c: cell cells[c]) of one head as f16 at dst[c * ld],
// n values each; rows n_rows..CELLS-1 are zeros (their P is 0, and 0 * a
// stale NaN would not be). With `wide`, an f16 cache is copied in 16-byte
// pieces and q4_0 / q8_0 blocks are decoded 16 values per thread with 16-byte
// stores (consecutive threads on consecutive bytes of a row); other types, or
// rows the pieces do not fit, take one 32-value unit per thread.
template <int CELLS>
__device__ inline void load_tile_f16(const uint8_t* base, size_t row_bytes, size_t head_offset, GgmlType type, int n,
                                     const int32_t* cells, int n_rows, __half* dst, int ld, bool wide) {
    if (wide && type == GgmlType::F16 && n % 8 == 0 && row_bytes % 16 == 0 && head_offset % 16 == 0 &&
        reinterpret_cast<uintptr_t>(base) % 16 == 0) {
        const int pieces = n / 8;
        for (int item = threadIdx.x; item < CELLS * pieces; item += blockDim.x) {
            const int c = item / pieces, u = item % pieces;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (c < n_rows)
                v = *reinterpret_cast<const uint4*>(base + static_cast<size_t>(cells[c]) * row_bytes + head_offset +
                                                    16 * u);
            *reinterpret_cast<uint4*>(dst + c * ld + 8 * u) = v;
        }
        return;
    }
    if (wide && (type == GgmlType::Q4_0 || type == GgmlType::Q8_0) && n % 32 == 0) {
        const int halves = n / 16;  // half blocks per row
        const size_t block_bytes = type == GgmlType::Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
        for (int item = threadIdx.x; item < CELLS * halves; item += blockDim.x) {
            const int c = item / halves, hb = item % halves;
            __half* o = dst + c * ld + 16 * hb;
            if (c < n_rows) {
                const uint8_t* b =
                    base + static_cast<size_t>(cells[c]) * row_bytes + head_offset + (hb / 2) * block_bytes;
                store_half_block(type, b, hb % 2, o);
            } else {
                reinterpret_cast<uint4*>(o)[0] = make_uint4(0, 0, 0, 0);
                reinterpret_cast<uint4*>(o)[1] = make_uint4(0, 0, 0, 0);
            }
        }
        return;
    }
    const int units = (n + 31) / 32;
    for (int item = threadIdx.x; item < CELLS * units; item += blockDim.x) {
        const int c = item / units, u = item % units;
        const int len = min(32, n - 32 * u);
        __half* o = dst + c * ld + 32 * u;
        if (c < n_rows) {
            const uint8_t* row = base + static_cast<size_t>(cells[c]) * row_bytes + head_offset;
            float v[32];
            kv_decode_unit(type, row, u, len, v);
            for (int j = 0; j < len; ++j) o[j] = __float2half_rn(v[j]);
        } else {
            for (int j = 0; j < len; ++j) o[j] = __float2half_rn(0.0f);
        }
    }
}

}  // namespace moeserve::cuda
