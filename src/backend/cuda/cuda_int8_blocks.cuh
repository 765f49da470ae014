// The K-quant weight blocks in int8 form for the int8 products
// (cuda_matvec_int8.cu for decode, cuda_mmq.cu for prompts): a 256-value
// block is read in kInt8BlockParts parts of 32 weights each, the codes as
// packed bytes that dp4a / integer MMA take as they are, with the
// sub-block scales the CPU's dot products apply to the integer sums.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_quant_blocks.cuh"

namespace moeserve::cuda {

inline constexpr int kInt8BlockParts = 8;  // parts of a 256-value block

template <GgmlType T>
struct Int8Block;

// Each byte of v (0..127) minus `off` as a signed byte: with the top bit set
// first no byte borrows from its neighbour.
template <uint32_t off>
__device__ __forceinline__ int minus_bytes(uint32_t v) {
    return static_cast<int>(((v | 0x80808080u) - off * 0x01010101u) ^ 0x80808080u);
}

// Q4_K lane p: 32-byte group g = p/2, half h = p%2: the 16 code bytes at
// 16 + 32g + 16h hold elements 64g + 16h + i (low nibbles, sub-block 2g)
// and 64g + 32 + 16h + i (high nibbles, sub-block 2g+1), i < 16.
template <>
struct Int8Block<GgmlType::Q4_K> {
    static constexpr int kBytes = 144;
    static constexpr GgmlType kAct = GgmlType::Q8_K;
    struct Lane {
        int lo[4], hi[4];
        int sc1, m1, sc2, m2;
        float d, dmin;
        int e;  // the first low-nibble element
    };
    __device__ static void load(const uint8_t* b, int p, Lane& L) {
        load_scales(b, p, L);
        const int g = p >> 1, half = p & 1;
        const uint4 c = *reinterpret_cast<const uint4*>(b + 16 + 32 * g + 16 * half);
        const uint32_t cw[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            L.lo[k] = static_cast<int>(cw[k] & 0x0F0F0F0Fu);
            L.hi[k] = static_cast<int>((cw[k] >> 4) & 0x0F0F0F0Fu);
        }
    }
    // d, dmin and the scales and mins of part p's two sub-blocks (the first
    // 16 bytes of the block, shared with Q5_K), and its first element.
    __device__ static void load_scales(const uint8_t* b, int p, Lane& L) {
        const uint4 h = *reinterpret_cast<const uint4*>(b);  // d, dmin, the 12 scale bytes
        const int g = p >> 1, half = p & 1;
        L.d = half_bits_to_float(h.x & 0xFFFF), L.dmin = half_bits_to_float(h.x >> 16);
        const uint32_t s0 = h.y, s1 = h.z, s2 = h.w;
        // The 6-bit scale and min of sub-block j (q4k_scale_min).
        auto scale_min = [&](int j, int& sc, int& m) {
            if (j < 4) {
                sc = static_cast<int>(scale_byte(s0, s1, s2, j) & 63);
                m = static_cast<int>(scale_byte(s0, s1, s2, j + 4) & 63);
            } else {
                sc = static_cast<int>((scale_byte(s0, s1, s2, j + 4) & 0xF) |
                                      ((scale_byte(s0, s1, s2, j - 4) >> 6) << 4));
                m = static_cast<int>((scale_byte(s0, s1, s2, j + 4) >> 4) | ((scale_byte(s0, s1, s2, j) >> 6) << 4));
            }
        };
        scale_min(2 * g, L.sc1, L.m1);
        scale_min(2 * g + 1, L.sc2, L.m2);
        L.e = 64 * g + 16 * half;
    }
    // The lane's part of the block's product with one token's q8_K block
    // (codes q, 16-value sums bs, scale *dg): dx*d*Σ sc·(q4·q8) - dx*dmin*Σ m·Σq8.
    __device__ static float dot(const Lane& L, const int8_t* q, const int32_t* bs, const float* dg) {
        const float dx = dg[0];
        const int4 a1 = *reinterpret_cast<const int4*>(q + L.e);
        const int4 a2 = *reinterpret_cast<const int4*>(q + L.e + 32);
        int s1 = __dp4a(L.lo[0], a1.x, 0), s2 = __dp4a(L.hi[0], a2.x, 0);
        s1 = __dp4a(L.lo[1], a1.y, s1), s2 = __dp4a(L.hi[1], a2.y, s2);
        s1 = __dp4a(L.lo[2], a1.z, s1), s2 = __dp4a(L.hi[2], a2.z, s2);
        s1 = __dp4a(L.lo[3], a1.w, s1), s2 = __dp4a(L.hi[3], a2.w, s2);
        const int sumi = L.sc1 * s1 + L.sc2 * s2;
        const int summ = L.m1 * bs[L.e / 16] + L.m2 * bs[L.e / 16 + 2];
        return (dx * L.d) * static_cast<float>(sumi) - (dx * L.dmin) * static_cast<float>(summ);
    }
    // The lane's codes into a block row of 256 int8 values in shared memory
    // (16-byte aligned), and (one lane of each pair) the float scale d·sc and
    // min dmin·m of its two 32-value sub-blocks into sc[j], mn[j].
    __device__ static void stage(const Lane& L, int8_t* row, float* sc, float* mn) {
        *reinterpret_cast<int4*>(row + L.e) = make_int4(L.lo[0], L.lo[1], L.lo[2], L.lo[3]);
        *reinterpret_cast<int4*>(row + L.e + 32) = make_int4(L.hi[0], L.hi[1], L.hi[2], L.hi[3]);
        if (L.e % 32 == 0) {
            const int j = L.e / 32;
            sc[j] = L.d * static_cast<float>(L.sc1), sc[j + 1] = L.d * static_cast<float>(L.sc2);
            mn[j] = L.dmin * static_cast<float>(L.m1), mn[j + 1] = L.dmin * static_cast<float>(L.m2);
        }
    }
};

// Q5_K lane p: as Q4_K, the codes 16 bytes at 48 + 32g + 16h with their
// fifth bits from qh bytes 16h.. (bit 2g for the low nibble's element, 2g+1
// for the high one's); scales and mins as Q4_K's.
template <>
struct Int8Block<GgmlType::Q5_K> : Int8Block<GgmlType::Q4_K> {
    static constexpr int kBytes = 176;
    __device__ static void load(const uint8_t* b, int p, Lane& L) {
        Int8Block<GgmlType::Q4_K>::load_scales(b, p, L);
        const int g = p >> 1, half = p & 1;
        const uint4 c = *reinterpret_cast<const uint4*>(b + 48 + 32 * g + 16 * half);
        const uint4 h = *reinterpret_cast<const uint4*>(b + 16 + 16 * half);
        const uint32_t cw[4] = {c.x, c.y, c.z, c.w}, hw[4] = {h.x, h.y, h.z, h.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            L.lo[k] = static_cast<int>((cw[k] & 0x0F0F0F0Fu) | (((hw[k] >> (2 * g)) & 0x01010101u) << 4));
            L.hi[k] = static_cast<int>(((cw[k] >> 4) & 0x0F0F0F0Fu) | (((hw[k] >> (2 * g + 1)) & 0x01010101u) << 4));
        }
    }
};

// Q6_K lane p: half n = p/4, l0 = 8(p%4): ql bytes 64n + l0.. and
// 64n + 32 + l0.. with qh bytes 128 + 32n + l0.. give, for j < 4, the 8
// elements 128n + 32j + l0.. (as dequantize_row_q6_K) with scale
// 8n + 2j + l0/16; codes made signed (q - 32) so dp4a takes them as they are.
template <>
struct Int8Block<GgmlType::Q6_K> {
    static constexpr int kBytes = 210;
    static constexpr GgmlType kAct = GgmlType::Q8_K;
    struct Lane {
        int q[4][2];
        int sc[4];
        float d;
        int e;  // the first element of j = 0
    };
    __device__ static void load(const uint8_t* b, int p, Lane& L) {
        const int n = p >> 2, l0 = 8 * (p & 3);
        const uint8_t* ql = b + 64 * n + l0;
        const uint8_t* qh = b + 128 + 32 * n + l0;
#pragma unroll
        for (int w = 0; w < 2; ++w) {
            const uint32_t a = ld_u32_a2(ql + 4 * w), c = ld_u32_a2(ql + 32 + 4 * w), h = ld_u32_a2(qh + 4 * w);
            L.q[0][w] = minus_bytes<32>((a & 0x0F0F0F0Fu) | ((h << 4) & 0x30303030u));
            L.q[1][w] = minus_bytes<32>((c & 0x0F0F0F0Fu) | ((h << 2) & 0x30303030u));
            L.q[2][w] = minus_bytes<32>(((a >> 4) & 0x0F0F0F0Fu) | (h & 0x30303030u));
            L.q[3][w] = minus_bytes<32>(((c >> 4) & 0x0F0F0F0Fu) | ((h >> 2) & 0x30303030u));
        }
        const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192 + 8 * n + l0 / 16);
#pragma unroll
        for (int j = 0; j < 4; ++j) L.sc[j] = scales[2 * j];
        L.d = half_bits_to_float(ld_u16(b + 208));
        L.e = 128 * n + l0;
    }
    __device__ static float dot(const Lane& L, const int8_t* q, const int32_t*, const float* dg) {
        const float dx = dg[0];
        int sumi = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int2 a = *reinterpret_cast<const int2*>(q + L.e + 32 * j);
            sumi += L.sc[j] * __dp4a(L.q[j][1], a.y, __dp4a(L.q[j][0], a.x, 0));
        }
        return (dx * L.d) * static_cast<float>(sumi);
    }
    // As Q4_K's stage: the codes, and the scale d·sc of each 16-value group
    // into sc[group] (no mins).
    __device__ static void stage(const Lane& L, int8_t* row, float* sc, float*) {
#pragma unroll
        for (int j = 0; j < 4; ++j) *reinterpret_cast<int2*>(row + L.e + 32 * j) = make_int2(L.q[j][0], L.q[j][1]);
        if (L.e % 16 == 0) {
#pragma unroll
            for (int j = 0; j < 4; ++j) sc[(L.e + 32 * j) / 16] = L.d * static_cast<float>(L.sc[j]);
        }
    }
};

// The 32-value types (q8_0 activations): a "block" here is a group of eight
// of their blocks (256 values), and part p is block p of the group: its 32
// codes as signed bytes and its scale.
struct Int8Block32Lane {
    int q[8];
    float d;
    int p;
};

template <class Derived, int kBlockBytes>
struct Int8Block32 {
    static constexpr int kBytes = 8 * kBlockBytes;
    static constexpr GgmlType kAct = GgmlType::Q8_0;
    using Lane = Int8Block32Lane;
    __device__ static void load(const uint8_t* g, int p, Lane& L) {
        const uint8_t* b = g + p * kBlockBytes;
        L.d = half_bits_to_float(ld_u16(b));
        L.p = p;
        Derived::codes(b, L.q);
    }
    // d_w·d_x·Σ q·q8 over the lane's block (dg: the group's eight q8_0 scales).
    __device__ static float dot(const Lane& L, const int8_t* q, const int32_t*, const float* dg) {
        const int4 a1 = *reinterpret_cast<const int4*>(q + 32 * L.p);
        const int4 a2 = *reinterpret_cast<const int4*>(q + 32 * L.p + 16);
        int s = __dp4a(L.q[0], a1.x, 0);
        s = __dp4a(L.q[1], a1.y, s), s = __dp4a(L.q[2], a1.z, s), s = __dp4a(L.q[3], a1.w, s);
        s = __dp4a(L.q[4], a2.x, s), s = __dp4a(L.q[5], a2.y, s), s = __dp4a(L.q[6], a2.z, s);
        s = __dp4a(L.q[7], a2.w, s);
        return (dg[L.p] * L.d) * static_cast<float>(s);
    }
    __device__ static void stage(const Lane& L, int8_t* row, float* sc, float* mn) {
        *reinterpret_cast<int4*>(row + 32 * L.p) = make_int4(L.q[0], L.q[1], L.q[2], L.q[3]);
        *reinterpret_cast<int4*>(row + 32 * L.p + 16) = make_int4(L.q[4], L.q[5], L.q[6], L.q[7]);
        sc[L.p] = L.d, mn[L.p] = 0.0f;
    }
};

// Q8_0: d, then the 32 codes (2-byte aligned).
template <>
struct Int8Block<GgmlType::Q8_0> : Int8Block32<Int8Block<GgmlType::Q8_0>, 34> {
    __device__ static void codes(const uint8_t* b, int* q) {
#pragma unroll
        for (int k = 0; k < 8; ++k) q[k] = static_cast<int>(ld_u32_a2(b + 2 + 4 * k));
    }
};

// Q4_0: d, then 16 bytes: element i in the low nibble of byte i, i + 16 in
// its high nibble; value q - 8.
template <>
struct Int8Block<GgmlType::Q4_0> : Int8Block32<Int8Block<GgmlType::Q4_0>, 18> {
    __device__ static void codes(const uint8_t* b, int* q) {
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = ld_u32_a2(b + 2 + 4 * k);
            q[k] = minus_bytes<8>(w & 0x0F0F0F0Fu);
            q[4 + k] = minus_bytes<8>((w >> 4) & 0x0F0F0F0Fu);
        }
    }
};

// Q5_0: d, qh (32 fifth bits, element i at bit i), then Q4_0's nibbles; value q - 16.
template <>
struct Int8Block<GgmlType::Q5_0> : Int8Block32<Int8Block<GgmlType::Q5_0>, 22> {
    // Bits 0..3 of h as bit 4 of bytes 0..3.
    __device__ static uint32_t spread4(uint32_t h) {
        return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
    }
    __device__ static void codes(const uint8_t* b, int* q) {
        const uint32_t qh = ld_u32_a2(b + 2);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = ld_u32_a2(b + 6 + 4 * k);
            q[k] = minus_bytes<16>((w & 0x0F0F0F0Fu) | spread4(qh >> (4 * k)));
            q[4 + k] = minus_bytes<16>(((w >> 4) & 0x0F0F0F0Fu) | spread4(qh >> (16 + 4 * k)));
        }
    }
};

// f.template operator()<T>() for the one of Ts that type is; false when none.
template <GgmlType... Ts, class F>
bool dispatch_type_among(GgmlType type, F&& f) {
    return ((type == Ts && (f.template operator()<Ts>(), true)) || ...);
}

// f.template operator()<T>() for a type with an Int8Block; false for others.
template <class F>
bool dispatch_int8_type(GgmlType type, F&& f) {
    return dispatch_type_among<GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_0,
                               GgmlType::Q4_0>(type, f);
}

}  // namespace moeserve::cuda
