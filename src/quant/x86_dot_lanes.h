// ggml's x86 dot products lane by lane, so that the GPU can compute the
// CPU's bits (cuda_matvec_int8.cu) and a host test can prove it does
// (tests/quant_x86_lanes_test.cpp).
//
// ggml's AVX2 kernels, and ours (vec_dot_avx2.cpp, whose logits match
// llama.cpp's bit for bit), sum each block's integer products in eight int32
// lanes, lane l holding bytes 4l..4l+3 of every 32-byte vector of codes;
// each lane is converted and multiply-added into its own float accumulator,
// block after block, and the eight are summed by hsum_float_8's tree
// ((l + l+4), then +2, then +1). The integer sums are exact in any order, so
// eight GPU threads that each take one lane's bytes, do the same FMA per
// block and end with the same tree produce the same float. Here is one
// lane's work on a 256-value unit (a K-quant super-block, or eight 32-value
// blocks of the Q8_0 partners) against its activations in the GPU's int8
// form (Q8Rows: codes, a float scale per 256 or per 32 values, an int32 sum
// per 16 codes), and the final tree.
//
// Per format, the terms beside the lanes (`aux`), in the CPU's order:
//   Q4_K: a 4-lane min accumulator (lane l works on lane l & 3), reduced
//         (l0 + l2) + (l1 + l3) and added after the tree;
//   Q5_K: one scalar chain of FMAs, the same in every lane, added after it;
//   Q6_K, Q8_0, Q4_0, Q5_0: none.
//
// Bit for bit with normal floats: the CUDA build (--use_fast_math) flushes
// subnormal results to zero where the CPU keeps them, which only products of
// scales near 1e-38 would meet.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "quant/ggml_type.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define MOESERVE_HD __host__ __device__ __forceinline__
#else
#define MOESERVE_HD inline
#endif

namespace moeserve::x86_lanes {

inline constexpr int kLanes = 8;   // int32 lanes of a 256-bit vector
inline constexpr int kUnit = 256;  // values per unit
enum class Aux { none, min_lanes, chain };

// Two and four bytes from a 2-byte aligned address (the 210-, 34-, 18- and
// 22-byte blocks are only that aligned); the host reads them with memcpy.
MOESERVE_HD uint32_t ld16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const uint16_t*>(p);
#else
    uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}
MOESERVE_HD uint32_t ld32(const uint8_t* p) {
    return ld16(p) | (ld16(p + 2) << 16);
}
MOESERVE_HD int ld32s(const int8_t* p) {  // activation codes: 4-byte aligned
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const int*>(p);
#else
    int v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}

// IEEE half to float (exact; the host form by its bits, no F16C needed).
MOESERVE_HD float half_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
        const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    const uint32_t bits = exp == 31 ? sign | 0x7F800000u | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

// c + Σ of the four signed byte products of a and b (the GPU's dp4a).
MOESERVE_HD int dot4(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 4; ++k) c += static_cast<int8_t>(a >> (8 * k)) * static_cast<int8_t>(b >> (8 * k));
    return c;
#endif
}

MOESERVE_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}
MOESERVE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

// Bytes 0..127 minus off, as signed bytes (no borrow between bytes).
MOESERVE_HD int minus_bytes(uint32_t v, uint32_t off) {
    return static_cast<int>(((v | 0x80808080u) - off * 0x01010101u) ^ 0x80808080u);
}

// The 6-bit scale and min of Q4_K/Q5_K sub-block j from the 12 scale bytes.
MOESERVE_HD void k4_scale_min(const uint8_t* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K/Q5_K: the block's d and dmin (its first four bytes).
MOESERVE_HD void k4_d_dmin(const uint8_t* b, float& d, float& dmin) {
    d = half_to_float(static_cast<uint16_t>(ld16(b)));
    dmin = half_to_float(static_cast<uint16_t>(ld16(b + 2)));
}

// Q4_K/Q5_K lane l's integer sum: vector c's low codes against activations
// 64c.. scaled by sub-block 2c's scale, its high codes against 64c + 32..
// scaled by 2c+1's (VPMADDUBSW, then VPMADDWD by the scale).
MOESERVE_HD int k4_lane_sum(const int lo[4], const int hi[4], const int sc[8], const int8_t* q, int l) {
    int s = 0;
    for (int c = 0; c < 4; ++c) {
        s += sc[2 * c] * dot4(lo[c], ld32s(q + 64 * c + 4 * l), 0);
        s += sc[2 * c + 1] * dot4(hi[c], ld32s(q + 64 * c + 32 + 4 * l), 0);
    }
    return s;
}

template <GgmlType T>
struct Lane;

// Q4_K (144 bytes: d, dmin, 12 scale bytes, 128 code bytes). Vector c of the
// codes (bytes 16 + 32c..) holds sub-block 2c in its low nibbles and 2c+1 in
// its high ones, each against its own 32 activation codes, scaled by the
// sub-block's 6-bit scale (VPMADDUBSW, then VPMADDWD by the scale).
template <>
struct Lane<GgmlType::Q4_K> {
    static constexpr int kBytes = 144;
    static constexpr bool kQ8K = true;
    static constexpr Aux kAux = Aux::min_lanes;
    struct W {
        int lo[4], hi[4], sc[8];
        int m0, m1;  // the mins of min lane l & 3: sub-blocks 2(l&3) and 2(l&3)+1
        float d, dmin;
    };
    MOESERVE_HD static void load(const uint8_t* b, int l, W& w) {
        k4_d_dmin(b, w.d, w.dmin);
        int m, sc;
        for (int j = 0; j < 8; ++j) k4_scale_min(b + 4, j, w.sc[j], m);
        k4_scale_min(b + 4, 2 * (l & 3), sc, w.m0);
        k4_scale_min(b + 4, 2 * (l & 3) + 1, sc, w.m1);
        for (int c = 0; c < 4; ++c) {
            const uint32_t q = ld32(b + 16 + 32 * c + 4 * l);
            w.lo[c] = static_cast<int>(q & 0x0F0F0F0Fu);
            w.hi[c] = static_cast<int>((q >> 4) & 0x0F0F0F0Fu);
        }
    }
    MOESERVE_HD static void step(const W& w, const int8_t* q, const int32_t* bs, const float* d8, int l, float& acc,
                                 float& aux) {
        const int s = k4_lane_sum(w.lo, w.hi, w.sc, q, l);
        acc = fma_rn(mul_rn(d8[0], w.d), static_cast<float>(s), acc);
        // Min lane j: the sums of 32 activations of sub-blocks 2j and 2j+1 (VPHADDW of the
        // 16-value sums) times their mins (VPMADDWD).
        const int j = l & 3;
        const int mn = (bs[4 * j] + bs[4 * j + 1]) * w.m0 + (bs[4 * j + 2] + bs[4 * j + 3]) * w.m1;
        aux = fma_rn(mul_rn(-d8[0], w.dmin), static_cast<float>(mn), aux);
    }
};

// Q5_K (176 bytes: d, dmin, 12 scale bytes, 32 bytes of fifth bits, 128 code
// bytes): Q4_K's lanes with bit 2c (low nibble) or 2c+1 (high nibble) of the
// code's qh byte as the fifth bit; the min term one integer per super-block
// in a scalar FMA chain.
template <>
struct Lane<GgmlType::Q5_K> {
    static constexpr int kBytes = 176;
    static constexpr bool kQ8K = true;
    static constexpr Aux kAux = Aux::chain;
    struct W {
        int lo[4], hi[4], sc[8], m[8];
        float d, dmin;
    };
    MOESERVE_HD static void load(const uint8_t* b, int l, W& w) {
        k4_d_dmin(b, w.d, w.dmin);
        for (int j = 0; j < 8; ++j) k4_scale_min(b + 4, j, w.sc[j], w.m[j]);
        const uint32_t qh = ld32(b + 16 + 4 * l);
        for (int c = 0; c < 4; ++c) {
            const uint32_t q = ld32(b + 48 + 32 * c + 4 * l);
            w.lo[c] = static_cast<int>((q & 0x0F0F0F0Fu) | (((qh >> (2 * c)) & 0x01010101u) << 4));
            w.hi[c] = static_cast<int>(((q >> 4) & 0x0F0F0F0Fu) | (((qh >> (2 * c + 1)) & 0x01010101u) << 4));
        }
    }
    MOESERVE_HD static void step(const W& w, const int8_t* q, const int32_t* bs, const float* d8, int l, float& acc,
                                 float& aux) {
        const int s = k4_lane_sum(w.lo, w.hi, w.sc, q, l);
        acc = fma_rn(mul_rn(w.d, d8[0]), static_cast<float>(s), acc);
        int mn = 0;
        for (int j = 0; j < 8; ++j) mn += w.m[j] * (bs[2 * j] + bs[2 * j + 1]);
        aux = fma_rn(mul_rn(-d8[0], w.dmin), static_cast<float>(mn), aux);
    }
};

// Q6_K (210 bytes: 128 low-nibble bytes, 64 bytes of high bits, 16 int8
// scales, d). Half h, vector g: the 6-bit codes (unsigned) of activations
// 128h + 32g.., the first 16 with scale 8h + 2g, the rest with 8h + 2g + 1;
// the -32 offset once per super-block as 32·(scale-weighted 16-value sums),
// lane l taking sums 2l and 2l + 1.
template <>
struct Lane<GgmlType::Q6_K> {
    static constexpr int kBytes = 210;
    static constexpr bool kQ8K = true;
    static constexpr Aux kAux = Aux::none;
    struct W {
        int q[2][4], sc[2][4];
        int o0, o1;  // the scales of the offset's sums 2l, 2l + 1
        float d;
    };
    MOESERVE_HD static void load(const uint8_t* b, int l, W& w) {
        const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
        for (int h = 0; h < 2; ++h) {
            const uint32_t ql0 = ld32(b + 64 * h + 4 * l), ql1 = ld32(b + 64 * h + 32 + 4 * l);
            const uint32_t qh = ld32(b + 128 + 32 * h + 4 * l);
            w.q[h][0] = static_cast<int>((ql0 & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4));
            w.q[h][1] = static_cast<int>((ql1 & 0x0F0F0F0Fu) | (((qh >> 2) & 0x03030303u) << 4));
            w.q[h][2] = static_cast<int>(((ql0 >> 4) & 0x0F0F0F0Fu) | (((qh >> 4) & 0x03030303u) << 4));
            w.q[h][3] = static_cast<int>(((ql1 >> 4) & 0x0F0F0F0Fu) | (((qh >> 6) & 0x03030303u) << 4));
            for (int g = 0; g < 4; ++g) w.sc[h][g] = scales[8 * h + 2 * g + (l >= 4 ? 1 : 0)];
        }
        w.o0 = scales[2 * l], w.o1 = scales[2 * l + 1];
        w.d = half_to_float(static_cast<uint16_t>(ld16(b + 208)));  // the block's last two bytes
    }
    MOESERVE_HD static void step(const W& w, const int8_t* q, const int32_t* bs, const float* d8, int l, float& acc,
                                 float&) {
        int s = 0;
        for (int h = 0; h < 2; ++h)
            for (int g = 0; g < 4; ++g) s += w.sc[h][g] * dot4(w.q[h][g], ld32s(q + 128 * h + 32 * g + 4 * l), 0);
        s -= 32 * (bs[2 * l] * w.o0 + bs[2 * l + 1] * w.o1);
        acc = fma_rn(mul_rn(w.d, d8[0]), static_cast<float>(s), acc);
    }
};

// The Q8_0 partners: a unit is eight 32-value blocks, each its own FMA with
// its own pair of scales; lane l takes elements 4l..4l+3 of every block.
template <class Format>
struct Lane32 {
    static constexpr int kBytes = 8 * Format::kBlockBytes;
    static constexpr bool kQ8K = false;
    static constexpr Aux kAux = Aux::none;
    struct W {
        int q[8];
        float d[8];
    };
    MOESERVE_HD static void load(const uint8_t* b, int l, W& w) {
        for (int k = 0; k < 8; ++k) {
            const uint8_t* blk = b + k * Format::kBlockBytes;
            w.d[k] = half_to_float(static_cast<uint16_t>(ld16(blk)));
            w.q[k] = Format::codes(blk, l);
        }
    }
    MOESERVE_HD static void step(const W& w, const int8_t* q, const int32_t*, const float* d8, int l, float& acc,
                                 float&) {
        for (int k = 0; k < 8; ++k)
            acc = fma_rn(mul_rn(w.d[k], d8[k]), static_cast<float>(dot4(w.q[k], ld32s(q + 32 * k + 4 * l), 0)), acc);
    }
};

struct Q8_0Format {
    static constexpr int kBlockBytes = 34;  // d, 32 codes
    MOESERVE_HD static int codes(const uint8_t* b, int l) { return static_cast<int>(ld32(b + 2 + 4 * l)); }
};
// Q4_0 (d, 16 bytes): elements 0..15 in the low nibbles, 16..31 in the high ones, minus 8.
struct Q4_0Format {
    static constexpr int kBlockBytes = 18;
    MOESERVE_HD static int codes(const uint8_t* b, int l) {
        const uint32_t v = ld32(b + 2 + 4 * (l & 3));
        return minus_bytes(l < 4 ? v & 0x0F0F0F0Fu : (v >> 4) & 0x0F0F0F0Fu, 8);
    }
};
// Q5_0 (d, 32 fifth bits, then Q4_0's nibbles): element e's fifth bit is bit e of qh, minus 16.
struct Q5_0Format {
    static constexpr int kBlockBytes = 22;
    MOESERVE_HD static int codes(const uint8_t* b, int l) {
        const uint32_t qh = ld32(b + 2) >> (4 * l);  // bits of elements 4l..4l+3
        const uint32_t v = ld32(b + 6 + 4 * (l & 3));
        const uint32_t nib = l < 4 ? v & 0x0F0F0F0Fu : (v >> 4) & 0x0F0F0F0Fu;
        const uint32_t fifth = ((qh & 1u) << 4) | ((qh & 2u) << 11) | ((qh & 4u) << 18) | ((qh & 8u) << 25);
        return minus_bytes(nib | fifth, 16);
    }
};
template <>
struct Lane<GgmlType::Q8_0> : Lane32<Q8_0Format> {};
template <>
struct Lane<GgmlType::Q4_0> : Lane32<Q4_0Format> {};
template <>
struct Lane<GgmlType::Q5_0> : Lane32<Q5_0Format> {};

// hsum_float_8 of the lanes' accumulators, plus the aux term.
template <Aux A>
MOESERVE_HD float finish(const float acc[kLanes], const float aux[kLanes]) {
    const float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    if constexpr (A == Aux::min_lanes) return s + ((aux[0] + aux[2]) + (aux[1] + aux[3]));
    if constexpr (A == Aux::chain) return s + aux[0];
    return s;
}

}  // namespace moeserve::x86_lanes
