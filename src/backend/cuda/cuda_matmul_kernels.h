// The building blocks of the CUDA matrix products (cuda_matmul.cu), shared
// with the FFN ops (cuda_moe.cu): a matrix-vector kernel that reads
// quantized blocks straight from the weights for small batches, and a
// dequantize-to-f16 + cuBLAS GEMM path for large ones; both read activations
// already rounded as llama.cpp's CPU rounds them (round_rows_f32/f16).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_q8_rows.h"

namespace moeserve::cuda {

// The largest gridDim.y (and z) a launch may have; kernels with a row per
// y index launch larger counts in pieces.
inline constexpr int64_t kMaxGridY = 65535;

// Batches up to this many tokens use the matrix-vector kernel (reading the
// weights ceil(n/8) times, mostly from L2); larger ones dequantize + GEMM.
inline constexpr int64_t kMatvecMaxTokens = 16;
// Tokens computed per weight load by one matrix-vector block.
inline constexpr int kMatvecTileTokens = 8;

// 1, 2, 4 or 8: the matrix-vector kernel's tile for batches of n tokens.
inline int matvec_tile_tokens(int64_t n) {
    return n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8;
}

// One block-row of matrix-vector work: matrix `matrix`, activation/output
// rows [first_row, first_row + n_rows) (n_rows <= the launch's tile_tokens).
struct MatvecTile {
    int matrix;
    int first_row;
    int n_rows;
    int unused;
};

// Scratch for n_rows rows of width values (a multiple of 256) of `act`.
Q8Rows take_q8_rows(Context& ctx, int64_t n_rows, int64_t width, GgmlType act);

// Whether the int8 kernels read weights of this type: the K-quants Q4_K,
// Q5_K, Q6_K (q8_K activations) and Q8_0, Q5_0, Q4_0 (q8_0 activations),
// unless MOESERVE_CUDA_INT8=0 turns them off (read once).
bool matvec_int8_supports(GgmlType type);

// Whether prompts of w also take the int8 matrix-vector kernel in the CPU's
// x86 float order (8 tokens per weight read) instead of the tensor-core
// products, so that prompt logits are the CPU backend's too: opt-in with
// MOESERVE_CUDA_EXACT_PROMPTS=1 (which turns the x86 order on for decode as
// well) until a GPU run has checked and timed it; only for types and widths
// the int8 kernel reads. Read once.
bool exact_prompt_products(const Weight& w);

// y[r][o] = W_matrix[o] · x[r] for the rows of each tile.
struct MatvecArgs {
    const uint8_t* w = nullptr;  // matrix 0
    size_t matrix_bytes = 0, row_bytes = 0;
    int64_t in = 0, out = 0;
    const float* x = nullptr;  // 16-byte aligned, strides multiples of 4 (matmul copies other inputs)
    int64_t x_stride = 0;      // floats between consecutive token rows
    float* y = nullptr;
    int64_t y_stride = 0;
    int tile_tokens = 1;  // 1, 2, 4 or 8
    // Without a tile list: tokens [0, n_tokens) of `n_groups` groups; group
    // g uses matrix matrix0 + g and x, y offset by g * x/y_group_stride.
    int64_t n_tokens = 0;
    int matrix0 = 0;
    int n_groups = 1;
    int64_t x_group_stride = 0, y_group_stride = 0;
    // With a tile list (device memory, built on the device): *n_tiles
    // entries; the grid is sized for max_tiles.
    const MatvecTile* tiles = nullptr;
    const int* n_tiles = nullptr;
    int max_tiles = 0;
    // An FFN activation fused into the output: y = act(W·x, W2·x) for SwiGLU
    // (w2: the up weight, same type and layout as w, the gate), act(W·x) for
    // ReLU²; bit for bit the separate products and activation kernel.
    bool fused = false;
    ExpertActivation act = ExpertActivation::SwiGlu;
    const uint8_t* w2 = nullptr;
    // With xq.q (the same activations as x in int8 form, rows of x_stride
    // values, a multiple of 256; no groups) and a type matvec_int8_supports:
    // integer dot products per block as the CPU's, scaled in float
    // (cuda_matvec_int8.cu).
    Q8Rows xq{};
    // With xq: token t of a block reads xq row xq_rows[first + t] instead of
    // first + t (device indices: the routed experts' items reading their
    // token's row of a norm's int8 form); null: row first + t.
    const int32_t* xq_rows = nullptr;
    // Set by launch_matvec: how many warp steps ahead each lane prefetches its
    // weight bytes into L1 (0: none; MOESERVE_CUDA_PREFETCH=0).
    int prefetch_steps = 0;
};

void launch_matvec(Context& ctx, GgmlType type, const MatvecArgs& a);
// launch_matvec's int8 form (a.xq set, a type matvec_int8_supports).
void launch_matvec_int8(Context& ctx, GgmlType type, const MatvecArgs& a);

// Whether two weights have the same type, shape and strides (a fused SwiGLU
// reads gate and up with one set of offsets).
bool same_layout(const Weight& a, const Weight& b);

// y = act(W_gate·x, W_up·x) (ReLU², gate empty: act(W_up·x)) in one
// matrix-vector launch with the activation fused, bit for bit the separate
// products and activation; false, queuing nothing, for batches over
// kMatvecMaxTokens or a gate and up of different layouts.
bool matvec_gated(Context& ctx, const Weight& gate, const Weight& up, const float* x, int64_t n_tokens,
                  ExpertActivation act, float* y, const NormRows* norm = nullptr);

// Token rows per tile of the grouped expert GEMM (cuda_moe_gemm.cu) and of
// the int8 products (cuda_mmq.cu).
inline constexpr int kMoeGemmTileTokens = 64;

// Whether launch_mmq reads w (matvec_int8_supports its type, rows whole
// 256-value blocks).
bool mmq_supports(const Weight& w);

// y[t * ldy + o] = W_matrix[o] · x[t] with x in int8 form (rows of w.ne[0]
// values), for the rows of each tile {matrix, first, n <= 64} of a device
// tile list (tiles, *n_tiles of them, the grid sized for max_tiles), or,
// with tiles null, for t < n_tokens of `matrix`: integer sums per block as
// the CPU's dot products, on the tensor cores (cuda_mmq.cu).
void launch_mmq(Context& ctx, const Weight& w, int matrix, const Q8Rows& x, const MatvecTile* tiles, const int* n_tiles,
                int max_tiles, int64_t n_tokens, float* y, int64_t ldy);

// Whether launch_moe_gemm reads w (a type with a device dequantizer other
// than F32, rows a whole number of its K steps).
bool moe_gemm_supports(const Weight& w);

// y[first + t][o] = W_matrix[o] · x16[first + t] for every tile {matrix,
// first, n <= kMoeGemmTileTokens} of the device tile list (*n_tiles of
// them, the grid sized for max_tiles): tensor-core f16 products with f32
// accumulation, weights dequantized to f16 as dequantize_rows_f16 does.
void launch_moe_gemm(Context& ctx, const Weight& w, const __half* x16, const MatvecTile* tiles, const int* n_tiles,
                     int max_tiles, float* y);

// Throws std::invalid_argument naming the op and the weight when the CUDA
// kernels cannot read it (type without a device dequantizer, row width not a
// multiple of the block, or of 8 for float types; unaligned data).
void check_cuda_weight(const Weight& w, const char* op);

// dst [n_rows, w.in()] (f16) = rows [row0, row0 + n_rows) of matrix `matrix`.
void dequantize_rows_f16(Context& ctx, const Weight& w, int matrix, int64_t row0, int64_t n_rows, __half* dst);

// The type whose values a product's activations are rounded to before they
// meet `partner` (a weight, or a quantized KV cache): llama.cpp's CPU
// vec_dot_type (cuda_activation_rounding.cu).
GgmlType activation_rounding(GgmlType partner);

// The int8 form of x ([n_rows, width]) that `norm` made, for the int8 kernels
// reading weights of `weight_type`; null when there is none for x, or those
// weights are read in float.
inline const Q8Rows* norm_int8_rows(const NormRows* norm, const float* x, int64_t n_rows, int64_t width,
                                    GgmlType weight_type) {
    if (!norm) return nullptr;
    const GgmlType act = activation_rounding(weight_type);
    if (!has_int8_form(act, width) || !matvec_int8_supports(weight_type)) return nullptr;
    return norm->find(x, n_rows, width, act);
}

// dst[g][r] (dense [n_groups, n_rows, width]) = the width floats at
// src + g * group_stride + r * row_stride, rounded as the CPU rounds
// activations to `act` (F32: unchanged), as f32 or converted to f16.
// With q8 (act Q8_K or Q8_0), the same rows also in int8 form (rows
// g * n_rows + r); dst may then be null.
void round_rows_f32(Context& ctx, GgmlType act, const float* src, int64_t row_stride, int64_t group_stride,
                    int64_t n_rows, int64_t width, int n_groups, float* dst, const Q8Rows* q8 = nullptr);
void round_rows_f16(Context& ctx, GgmlType act, const float* src, int64_t row_stride, int64_t group_stride,
                    int64_t n_rows, int64_t width, int n_groups, __half* dst);
// dst[r] (dense [n_rows, width]) = row rows[r] of src (device indices), rounded as round_rows_f32.
void gather_round_rows_f32(Context& ctx, GgmlType act, const float* src, int64_t row_stride, const int32_t* rows,
                           int64_t n_rows, int64_t width, float* dst, const Q8Rows* q8 = nullptr);

// Elements of f16 weight scratch that matmul_gemm wants for w (a whole
// matrix, or a slice of rows when that would be large).
int64_t gemm_weight_scratch(const Weight& w);

// y[t][o] (row stride ldy) = W_matrix[o] · x[t] for t < m through cuBLAS:
// F32 weights as an f32 GEMM on x; other types dequantized to f16 (into
// wbuf, gemm_weight_scratch(w) elements, row slices in turn) times x16 (x in
// f16, [m, in], rounded by round_rows_f16) with f32 accumulation.
void matmul_gemm(Context& ctx, const Weight& w, int matrix, const float* x, const __half* x16, int64_t m, float* y,
                 int64_t ldy, __half* wbuf);

}  // namespace moeserve::cuda
