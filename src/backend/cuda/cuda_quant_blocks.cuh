// Device-side dequantization of the weight types (layouts: block_formats.h,
// spec quant-formats §2). Every type is read in "chunks" of 8 values: chunk
// c of a block yields v[0..3] at block elements e0..e0+3 and v[4..7] at
// e1..e1+3 (e0, e1 multiples of 4, so the matching activations are two
// float4 loads). Consecutive chunks are consecutive bytes of the block's
// quants, so a warp whose lanes take consecutive chunks reads the blocks
// with coalesced loads.
//
// Alignment: loads are as wide as the block layout allows when the weight
// data starts 16-byte aligned (cudaMalloc'd buffers, GGUF's 32-byte tensor
// alignment): 4-byte loads where a field's offset in the block and the
// block size are multiples of 4, 2-byte loads elsewhere. The float types use
// "blocks" of 8 values (16/32 bytes): rows need in % 8 == 0.
//
// Values are d * q (and - m) in float32 like dequantize.cpp, except that
// q * d + m may be fused (one rounding fewer): results agree with the CPU's
// dequantize_row within 1 ulp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "quant/block_formats.h"
#include "quant/ggml_type.h"

namespace moeserve::cuda {

// ---- small loads and conversions --------------------------------------------

__device__ __forceinline__ uint32_t ld_u16(const uint8_t* p) {
    return *reinterpret_cast<const uint16_t*>(p);
}
// 4 bytes at a 2-byte aligned address.
__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t* p) {
    return ld_u16(p) | (ld_u16(p + 2) << 16);
}
__device__ __forceinline__ uint32_t ld_u32(const uint8_t* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ float half_bits_to_float(uint32_t bits) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

// q (0 <= q < 2^23) minus `offset` as a float, exactly, without an int->float
// conversion (those run at a quarter of the FP32 rate): 2^23 + q has q as its
// mantissa bits.
template <int offset>
__device__ __forceinline__ float small_uint_to_float(uint32_t q) {
    return __uint_as_float(0x4B000000u | q) - (8388608.0f + static_cast<float>(offset));
}

// Byte i (0..3) of w.
__device__ __forceinline__ uint32_t byte_of(uint32_t w, int i) {
    return (w >> (8 * i)) & 0xFFu;
}

// The IQ4_NL codebook value for a nibble, from four packed words (no memory
// lookup, so divergent nibbles across a warp cost nothing extra).
__device__ __forceinline__ float iq4nl_value(uint32_t nibble) {
    // kIq4nlValues as little-endian words: bytes {-127,-104,-83,-65}, ...
    constexpr uint32_t w0 = 0xBFAD9881u, w1 = 0xF6EADDCFu, w2 = 0x26190D01u, w3 = 0x71594535u;
    const uint32_t lo = __byte_perm(w0, w1, nibble & 7u), hi = __byte_perm(w2, w3, nibble & 7u);
    const uint32_t b = (nibble & 8u) ? hi : lo;  // byte 0 is the int8 value
    return small_uint_to_float<128>((b ^ 0x80u) & 0xFFu);
}

// ---- one struct per type ----------------------------------------------------
// kElems values in kBytes bytes per block, kChunks chunks of 8 per block;
// kAlign: the alignment (bytes) the loads need at each block and row start.

template <GgmlType T>
struct BlockDequant;

template <>
struct BlockDequant<GgmlType::F32> {
    static constexpr int kElems = 8, kBytes = 32, kChunks = 1, kAlign = 16;
    __device__ static void chunk(const uint8_t* b, int, float v[8], int& e0, int& e1) {
        const float4 a = reinterpret_cast<const float4*>(b)[0], c = reinterpret_cast<const float4*>(b)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = c.x, v[5] = c.y, v[6] = c.z, v[7] = c.w;
        e0 = 0, e1 = 4;
    }
};

template <>
struct BlockDequant<GgmlType::F16> {
    static constexpr int kElems = 8, kBytes = 16, kChunks = 1, kAlign = 16;
    __device__ static void chunk(const uint8_t* b, int, float v[8], int& e0, int& e1) {
        const uint4 q = *reinterpret_cast<const uint4*>(b);
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
            v[2 * i] = f.x, v[2 * i + 1] = f.y;
        }
        e0 = 0, e1 = 4;
    }
};

template <>
struct BlockDequant<GgmlType::BF16> {
    static constexpr int kElems = 8, kBytes = 16, kChunks = 1, kAlign = 16;
    __device__ static void chunk(const uint8_t* b, int, float v[8], int& e0, int& e1) {
        const uint4 q = *reinterpret_cast<const uint4*>(b);
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[2 * i] = __uint_as_float(w[i] << 16);
            v[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
        }
        e0 = 0, e1 = 4;
    }
};

// Legacy 32-value blocks: chunk c holds qs bytes 4c..4c+3, whose low nibbles
// are elements 4c.. and high nibbles 16+4c.. (Q4_0 layout).
template <>
struct BlockDequant<GgmlType::Q4_0> {
    static constexpr int kElems = 32, kBytes = 18, kChunks = 4, kAlign = 2;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const float d = half_bits_to_float(ld_u16(b));
        const uint32_t q = ld_u32_a2(b + 2 + 4 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[i] = small_uint_to_float<8>(byte_of(q, i) & 0xF) * d;
            v[4 + i] = small_uint_to_float<8>(byte_of(q, i) >> 4) * d;
        }
        e0 = 4 * c, e1 = 16 + 4 * c;
    }
};

template <>
struct BlockDequant<GgmlType::Q4_1> {
    static constexpr int kElems = 32, kBytes = 20, kChunks = 4, kAlign = 4;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const uint32_t dm = ld_u32(b);
        const float d = half_bits_to_float(dm & 0xFFFF), m = half_bits_to_float(dm >> 16);
        const uint32_t q = ld_u32(b + 4 + 4 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[i] = small_uint_to_float<0>(byte_of(q, i) & 0xF) * d + m;
            v[4 + i] = small_uint_to_float<0>(byte_of(q, i) >> 4) * d + m;
        }
        e0 = 4 * c, e1 = 16 + 4 * c;
    }
};

template <>
struct BlockDequant<GgmlType::Q5_0> {
    static constexpr int kElems = 32, kBytes = 22, kChunks = 4, kAlign = 2;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const float d = half_bits_to_float(ld_u16(b));
        const uint32_t qh = ld_u32_a2(b + 2);
        const uint32_t q = ld_u32_a2(b + 6 + 4 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t lo = (byte_of(q, i) & 0xF) | (((qh >> (4 * c + i)) & 1u) << 4);
            const uint32_t hi = (byte_of(q, i) >> 4) | (((qh >> (16 + 4 * c + i)) & 1u) << 4);
            v[i] = small_uint_to_float<16>(lo) * d;
            v[4 + i] = small_uint_to_float<16>(hi) * d;
        }
        e0 = 4 * c, e1 = 16 + 4 * c;
    }
};

template <>
struct BlockDequant<GgmlType::Q5_1> {
    static constexpr int kElems = 32, kBytes = 24, kChunks = 4, kAlign = 4;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const uint32_t dm = ld_u32(b);
        const float d = half_bits_to_float(dm & 0xFFFF), m = half_bits_to_float(dm >> 16);
        const uint32_t qh = ld_u32(b + 4);
        const uint32_t q = ld_u32(b + 8 + 4 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t lo = (byte_of(q, i) & 0xF) | (((qh >> (4 * c + i)) & 1u) << 4);
            const uint32_t hi = (byte_of(q, i) >> 4) | (((qh >> (16 + 4 * c + i)) & 1u) << 4);
            v[i] = small_uint_to_float<0>(lo) * d + m;
            v[4 + i] = small_uint_to_float<0>(hi) * d + m;
        }
        e0 = 4 * c, e1 = 16 + 4 * c;
    }
};

// Q8_0: chunk c is elements 8c..8c+7 (signed bytes).
template <>
struct BlockDequant<GgmlType::Q8_0> {
    static constexpr int kElems = 32, kBytes = 34, kChunks = 4, kAlign = 2;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const float d = half_bits_to_float(ld_u16(b));
        const uint32_t q0 = ld_u32_a2(b + 2 + 8 * c), q1 = ld_u32_a2(b + 6 + 8 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[i] = small_uint_to_float<128>(byte_of(q0, i) ^ 0x80u) * d;
            v[4 + i] = small_uint_to_float<128>(byte_of(q1, i) ^ 0x80u) * d;
        }
        e0 = 8 * c, e1 = 8 * c + 4;
    }
};

template <>
struct BlockDequant<GgmlType::IQ4_NL> {
    static constexpr int kElems = 32, kBytes = 18, kChunks = 4, kAlign = 2;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const float d = half_bits_to_float(ld_u16(b));
        const uint32_t q = ld_u32_a2(b + 2 + 4 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[i] = d * iq4nl_value(byte_of(q, i) & 0xF);
            v[4 + i] = d * iq4nl_value(byte_of(q, i) >> 4);
        }
        e0 = 4 * c, e1 = 16 + 4 * c;
    }
};

// Byte j (runtime, 0..11) of the 12 scale bytes of a Q4_K/Q5_K block held in three words.
__device__ __forceinline__ uint32_t scale_byte(uint32_t s0, uint32_t s1, uint32_t s2, int j) {
    const uint32_t w = j < 4 ? s0 : (j < 8 ? s1 : s2);
    return byte_of(w, j & 3);
}

// The 6-bit scale and min of sub-block j (as q4k_scale_min in block_formats.h).
__device__ __forceinline__ void q4k_scale_min_dev(const uint8_t* scales, int j, float& sc, float& m) {
    const uint32_t s0 = ld_u32(scales), s1 = ld_u32(scales + 4), s2 = ld_u32(scales + 8);
    if (j < 4) {
        sc = static_cast<float>(scale_byte(s0, s1, s2, j) & 63);
        m = static_cast<float>(scale_byte(s0, s1, s2, j + 4) & 63);
    } else {
        sc = static_cast<float>((scale_byte(s0, s1, s2, j + 4) & 0xF) | ((scale_byte(s0, s1, s2, j - 4) >> 6) << 4));
        m = static_cast<float>((scale_byte(s0, s1, s2, j + 4) >> 4) | ((scale_byte(s0, s1, s2, j) >> 6) << 4));
    }
}

// Q4_K: chunk c (0..31) holds qs bytes 4c..4c+3 of 32-byte group g = c/8;
// low nibbles are elements 64g + l.. (sub-block 2g), high 64g+32+l.. (2g+1).
template <>
struct BlockDequant<GgmlType::Q4_K> {
    static constexpr int kElems = 256, kBytes = 144, kChunks = 32, kAlign = 4;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const uint32_t dm = ld_u32(b);
        const float d = half_bits_to_float(dm & 0xFFFF), dmin = half_bits_to_float(dm >> 16);
        const int g = c >> 3, l = 4 * (c & 7);
        float sc1, m1, sc2, m2;
        q4k_scale_min_dev(b + 4, 2 * g, sc1, m1);
        q4k_scale_min_dev(b + 4, 2 * g + 1, sc2, m2);
        const float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
        const uint32_t q = ld_u32(b + 16 + 32 * g + l);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[i] = d1 * small_uint_to_float<0>(byte_of(q, i) & 0xF) - mm1;
            v[4 + i] = d2 * small_uint_to_float<0>(byte_of(q, i) >> 4) - mm2;
        }
        e0 = 64 * g + l, e1 = 64 * g + 32 + l;
    }
};

// Q5_K: as Q4_K plus qh[l]: bit 2g is the 5th bit of the low element, 2g+1 of the high.
template <>
struct BlockDequant<GgmlType::Q5_K> {
    static constexpr int kElems = 256, kBytes = 176, kChunks = 32, kAlign = 4;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const uint32_t dm = ld_u32(b);
        const float d = half_bits_to_float(dm & 0xFFFF), dmin = half_bits_to_float(dm >> 16);
        const int g = c >> 3, l = 4 * (c & 7);
        float sc1, m1, sc2, m2;
        q4k_scale_min_dev(b + 4, 2 * g, sc1, m1);
        q4k_scale_min_dev(b + 4, 2 * g + 1, sc2, m2);
        const float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
        const uint32_t qh = ld_u32(b + 16 + l);
        const uint32_t q = ld_u32(b + 48 + 32 * g + l);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t h = byte_of(qh, i);
            const uint32_t lo = (byte_of(q, i) & 0xF) | (((h >> (2 * g)) & 1u) << 4);
            const uint32_t hi = (byte_of(q, i) >> 4) | (((h >> (2 * g + 1)) & 1u) << 4);
            v[i] = d1 * small_uint_to_float<0>(lo) - mm1;
            v[4 + i] = d2 * small_uint_to_float<0>(hi) - mm2;
        }
        e0 = 64 * g + l, e1 = 64 * g + 32 + l;
    }
};

// Q6_K: chunk c: half n = c/16, k = c%16. k < 8: ql bytes 64n+4k.. give
// elements 128n+4k.. (low nibbles, qh bits 0-1) and 128n+64+4k.. (high
// nibbles, qh bits 4-5); k >= 8: ql bytes 64n+32+l.. (l = 4(k-8)) give
// 128n+32+l.. (qh bits 2-3) and 128n+96+l.. (bits 6-7); qh byte 32n+l.
template <>
struct BlockDequant<GgmlType::Q6_K> {
    static constexpr int kElems = 256, kBytes = 210, kChunks = 32, kAlign = 2;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const float d = half_bits_to_float(ld_u16(b + 208));
        const int n = c >> 4, k = c & 15;
        const int second = k >> 3;  // 0: elements l and l+64; 1: l+32 and l+96
        const int l = 4 * (k & 7);
        const uint32_t ql = ld_u32_a2(b + 64 * n + 32 * second + l);
        const uint32_t qh = ld_u32_a2(b + 128 + 32 * n + l);
        const int lo_elem = 128 * n + 32 * second + l, hi_elem = lo_elem + 64;
        const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
        const float dlo = d * static_cast<float>(scales[lo_elem / 16]);
        const float dhi = d * static_cast<float>(scales[hi_elem / 16]);
        const int shift_lo = 2 * second, shift_hi = 4 + 2 * second;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t h = byte_of(qh, i);
            const uint32_t lo = (byte_of(ql, i) & 0xF) | (((h >> shift_lo) & 3u) << 4);
            const uint32_t hi = (byte_of(ql, i) >> 4) | (((h >> shift_hi) & 3u) << 4);
            v[i] = dlo * small_uint_to_float<32>(lo);
            v[4 + i] = dhi * small_uint_to_float<32>(hi);
        }
        e0 = lo_elem, e1 = hi_elem;
    }
};

// IQ4_XS: 8 sub-blocks of 32 in IQ4_NL's nibble layout; chunk c is sub-block
// c/4, qs bytes 4(c%4).. of it.
template <>
struct BlockDequant<GgmlType::IQ4_XS> {
    static constexpr int kElems = 256, kBytes = 136, kChunks = 32, kAlign = 4;
    __device__ static void chunk(const uint8_t* b, int c, float v[8], int& e0, int& e1) {
        const uint32_t dh = ld_u32(b);  // d, scales_h
        const float d = half_bits_to_float(dh & 0xFFFF);
        const uint32_t scales_h = dh >> 16;
        const int ib = c >> 2, cc = c & 3;
        const uint32_t scales_l = ld_u32(b + 4);
        const int ls = static_cast<int>(((byte_of(scales_l, ib >> 1) >> (4 * (ib & 1))) & 0xF) |
                                        (((scales_h >> (2 * ib)) & 3u) << 4));
        const float dl = d * static_cast<float>(ls - 32);
        const uint32_t q = ld_u32(b + 8 + 16 * ib + 4 * cc);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[i] = dl * iq4nl_value(byte_of(q, i) & 0xF);
            v[4 + i] = dl * iq4nl_value(byte_of(q, i) >> 4);
        }
        e0 = 32 * ib + 4 * cc, e1 = 32 * ib + 16 + 4 * cc;
    }
};

// Calls f.template operator()<T>() for the GgmlType value `type`; returns
// false for a type without a device dequantizer.
template <class F>
inline bool dispatch_weight_type(GgmlType type, F&& f) {
    switch (type) {
        case GgmlType::F32:
            f.template operator()<GgmlType::F32>();
            return true;
        case GgmlType::F16:
            f.template operator()<GgmlType::F16>();
            return true;
        case GgmlType::BF16:
            f.template operator()<GgmlType::BF16>();
            return true;
        case GgmlType::Q4_0:
            f.template operator()<GgmlType::Q4_0>();
            return true;
        case GgmlType::Q4_1:
            f.template operator()<GgmlType::Q4_1>();
            return true;
        case GgmlType::Q5_0:
            f.template operator()<GgmlType::Q5_0>();
            return true;
        case GgmlType::Q5_1:
            f.template operator()<GgmlType::Q5_1>();
            return true;
        case GgmlType::Q8_0:
            f.template operator()<GgmlType::Q8_0>();
            return true;
        case GgmlType::IQ4_NL:
            f.template operator()<GgmlType::IQ4_NL>();
            return true;
        case GgmlType::Q4_K:
            f.template operator()<GgmlType::Q4_K>();
            return true;
        case GgmlType::Q5_K:
            f.template operator()<GgmlType::Q5_K>();
            return true;
        case GgmlType::Q6_K:
            f.template operator()<GgmlType::Q6_K>();
            return true;
        case GgmlType::IQ4_XS:
            f.template operator()<GgmlType::IQ4_XS>();
            return true;
        default:
            return false;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

}  // namespace moeserve::cuda
