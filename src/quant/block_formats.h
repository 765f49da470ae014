// Packed block layouts of the GGML quantized types (spec §2). Every struct is
// the exact byte image of one block in a GGUF file: fields are little-endian,
// fp16 scales are raw uint16_t bits (decode with fp16_to_fp32), and no field
// needs more than 2-byte alignment except BlockQ8_K's float, so the structs
// have no padding. The static_asserts pin the sizes from the type table.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moeserve {

inline constexpr int kQK = 32;     // elements per legacy block (Q4_0 … Q8_1, IQ4_NL)
inline constexpr int kQK_K = 256;  // elements per K-quant / IQ4_XS super-block

// y[j] = (q_lo(j) - 8) * d; elements 0..15 in the low nibbles, 16..31 in the high.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];
};

// y = q * d + m
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK / 2];
};

// 5th bit of element i is bit i of the little-endian uint32 qh.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};

struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};

struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};

// s = fp16(d * Σ qs): the activation sum that Q4_1/Q5_1 dot products need for the min term.
struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[kQK];
};

// 16 sub-blocks of 16: scales[b] low nibble = scale, high nibble = min.
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    uint16_t d;
    uint16_t dmin;
};

struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[12];  // sixteen 6-bit signed scales
    uint16_t d;
};

// 8 sub-blocks of 32; scales[12] packs eight 6-bit scales and eight 6-bit mins (spec §2.10).
// qs[32c + l]: low nibble = element 64c + l, high nibble = element 64c + 32 + l.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];
};

// As Q4_K plus qh[l]: bit b is the 5th bit of element 32b + l.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};

// Two halves of 128. In half n: ql[64n + l] holds elements l (lo) and l+64 (hi),
// ql[64n + 32 + l] holds l+32 and l+96, qh[32n + l] bit pairs 0/2/4/6 hold the
// high bits of l, l+32, l+64, l+96. scales: one int8 per 16 elements.
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};

// Activation partner of the K-quants: float32 scale and per-16 sums of qs.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};

// Non-linear 4-bit: y = d * kIq4nlValues[nibble], Q4_0 nibble layout.
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kQK / 2];
};

// 8 sub-blocks of 32, each with a 6-bit scale ls (low 4 bits in scales_l,
// high 2 in scales_h); y = d * (ls - 32) * kIq4nlValues[nibble].
struct BlockIQ4_XS {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[kQK_K / 64];
    uint8_t qs[kQK_K / 2];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(offsetof(BlockQ2_K, d) == 80 && offsetof(BlockQ3_K, d) == 108 && offsetof(BlockQ6_K, d) == 208);
static_assert(offsetof(BlockQ5_K, qs) == 48 && offsetof(BlockIQ4_XS, qs) == 8 && offsetof(BlockQ8_K, bsums) == 260);

// The IQ4_NL / IQ4_XS codebook (spec §2.14), ascending.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (spec §2.10).
inline void q4k_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

}  // namespace moeserve
