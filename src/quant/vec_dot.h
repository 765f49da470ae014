// Dot products of one weight row with one activation row, on the packed
// blocks: the inner loop of every matrix-vector product.
//
// As in ggml, the activations are first quantized to the weight type's
// partner type (vec_dot_type; spec §1), with quantize_row_activation. The
// kernels then multiply integers block by block and apply the block scales
// in float: for a Q8_0-style block, d_w * d_a * Σ q_w q_a; for a K-quant
// super-block, d_w * d_a * Σ_sub sc * Σ q_w q_a  -  dmin_w * d_a * Σ_sub m * Σ q_a.
// Per block the integer sums are exact, so every path (scalar, AVX2,
// AVX-512) agrees up to the order of the float additions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/ggml_type.h"

namespace moeserve {

// The activation type a weight type is dotted with: Q8_0 for Q4_0, Q5_0,
// Q8_0, IQ4_NL; Q8_1 for Q4_1, Q5_1; Q8_K for the K-quants and IQ4_XS; the
// type itself for F32, F16, BF16. Throws std::invalid_argument otherwise.
GgmlType vec_dot_type(GgmlType weight);

// Σ w[i]*a[i] over n elements. w holds n elements of weight_type, act holds n
// elements of vec_dot_type(weight_type). Types with a kernel: F32, F16, BF16,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. Throws
// std::invalid_argument for other types or an n that is not a multiple of
// the block size.
float vec_dot(GgmlType weight_type, const void* w, const void* act, int64_t n);

// The plain scalar kernel: the reference the SIMD kernels are tested against.
float vec_dot_scalar(GgmlType weight_type, const void* w, const void* act, int64_t n);

// Instruction-set levels with their own kernels.
enum class SimdLevel { scalar, avx2, avx512 };
const char* simd_level_name(SimdLevel level);

// A kernel without argument checks, for hot loops: n must be a multiple of
// the block size (of 256 for K-quants and IQ4_XS, 32 for the others, any n
// for F32/F16/BF16).
using VecDotFn = float (*)(const void* w, const void* act, int64_t n);

// Dots of one weight row with four activation rows at once: out[k] = w · act[k].
// Unpacking the weight blocks once for four rows is what makes prompt
// batches faster than four single dots; each result is bit-identical to
// the single-row kernel of the same level.
using VecDot4Fn = void (*)(const void* w, const void* const act[4], float out[4], int64_t n);

// The four-row kernel for the type, or nullptr where there is none (then
// use the single-row kernel four times).
VecDot4Fn vec_dot4_kernel(GgmlType weight_type);

// The same for two or three activation rows (out[k] = w · act[k], k < count):
// the decode step of two or three busy slots, or the tokens a prompt leaves
// after its tiles and fours. Bit-identical to the single-row kernel.
using VecDotFewFn = void (*)(const void* w, const void* const act[], float out[], int64_t n);

// The kernel for count (2 or 3) activation rows, or nullptr where there is
// none (then use the single-row kernel count times).
VecDotFewFn vec_dot_few_kernel(GgmlType weight_type, int count);

// Dots of up to kDotWeightRows weight rows (w_row_bytes apart) with one
// activation row: out[r] = w_r · act. For a decoded token: where a format's
// single-row kernel is one chain of dependent FMAs (ggml's order for the
// 32-element formats), several rows' chains run side by side. Each result is
// bit-identical to the single-row kernel.
inline constexpr int kDotWeightRows = 4;
using VecDotRowsFn = void (*)(const void* w, size_t w_row_bytes, int n_rows, const void* act, float* out, int64_t n);

// The weight-rows kernel for the type, or nullptr where there is none.
VecDotRowsFn vec_dot_rows_kernel(GgmlType weight_type);

// The same against n_act (2 to 4) activation rows at once (a decode step of
// 2-4 slots): out[k][r] = w_r · act[k], each weight block unpacked once for
// all of them; bit-identical to the single-row kernel. Where a type has it,
// it serves groups of four tokens in place of the four-row kernel.
using VecDotRowsFewFn = void (*)(const void* w, size_t w_row_bytes, int n_rows, const void* const act[], int n_act,
                                 float* const out[], int64_t n);

// That kernel for the type, or nullptr where there is none.
VecDotRowsFewFn vec_dot_rows_few_kernel(GgmlType weight_type);

// Prompt batches: up to kDotTileWeightRows weight rows against a tile of
// kDotTileRows activation rows that `pack` has rearranged (once per matmul,
// into tile_bytes(n) bytes) so that the kernel can put the activation rows in
// the vector lanes and unpack each weight block once for all of them.
// out[w * kDotTileRows + k] (weight row w, activation row k) is bit-identical
// to the single-row kernel on those rows.
inline constexpr int kDotTileRows = 16;
inline constexpr int kDotTileWeightRows = 4;
struct VecDotTile {
    size_t (*tile_bytes)(int64_t n);
    // act: n_rows (1..kDotTileRows) rows of vec_dot_type(weight) with n
    // elements, act_row_bytes apart; the tile's other rows are zero.
    void (*pack)(const void* act, size_t act_row_bytes, int n_rows, void* tile, int64_t n);
    // w: n_w_rows (1..kDotTileWeightRows) weight rows, w_row_bytes apart.
    void (*dot)(const void* w, size_t w_row_bytes, int n_w_rows, const void* tile, float* out, int64_t n);
    // The fewest tokens for which a zero-padded partial tile is faster than
    // the four-row and single-row kernels it replaces (a whole tile costs
    // what about this many tokens cost with them; measured per format).
    int min_partial = 7;
};

// The tile form of the best single-row kernel for rows of n elements, or
// nullptr where there is none (the type, or rows too short for it).
const VecDotTile* vec_dot_tile_kernel(GgmlType weight_type, int64_t n);

// How many tiles a matmul over n_tokens activation rows packs: the full ones,
// and a zero-padded last one when it holds at least the kernel's min_partial
// tokens; the tokens past them use the four-row and single-row kernels.
inline int64_t dot_tile_count(const VecDotTile& tile, int64_t n_tokens) {
    return n_tokens / kDotTileRows + (n_tokens % kDotTileRows >= tile.min_partial ? 1 : 0);
}

// The best kernel this build has for the type; nullptr if the type has none.
VecDotFn vec_dot_kernel(GgmlType weight_type);
// The kernel of one level; nullptr if this build has none at that level
// (a level the compiler did not target, or a type that level leaves to a
// lower one).
VecDotFn vec_dot_kernel(GgmlType weight_type, SimdLevel level);

}  // namespace moeserve
