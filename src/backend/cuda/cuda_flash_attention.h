// The one attention kernel behind attention() and attention_mla(): flash-
// decoding over a paged KV cache (cuda_attention.cu). Internal to
// src/backend/cuda.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_ops.h"

namespace moeserve::cuda {

// q: [n_tokens, n_head, dk] (already rotated when K is); out: [n_tokens,
// n_head, dv]. KV head g of cell c: K values at k + c*k_row_bytes +
// g*k_head_bytes (dk values of type_k), likewise V; v_in_k: V is the first
// dv values of the K row (MLA's latent cache), v is ignored. v_rot_chunk:
// out is multiplied by the Hadamard matrix in chunks of that size (0: not).
struct FlashAttention {
    const uint8_t* k = nullptr;
    const uint8_t* v = nullptr;
    size_t k_row_bytes = 0, v_row_bytes = 0, k_head_bytes = 0, v_head_bytes = 0;
    GgmlType type_k = GgmlType::F16, type_v = GgmlType::F16;
    int dk = 0, dv = 0;
    bool v_in_k = false;
    int v_rot_chunk = 0;
    const float* q = nullptr;
    int64_t n_tokens = 0;
    int n_head = 0, n_head_kv = 0;
    AttentionCells cells;
    float scale = 1.0f;
    float* out = nullptr;
};

void flash_attention(Context& ctx, const FlashAttention& a);

// q ([n_rows, width]) as the scores against a cache of K type type_k read
// it: rounded to the type's dot partner (q8_0, q8_1) as llama.cpp's CPU does
// for a quantized K, unchanged for a float K. The rounded copy goes to
// scratch, or over q when q_is_scratch.
const float* round_queries(Context& ctx, GgmlType type_k, const float* q, int64_t n_rows, int width, bool q_is_scratch);

// q rotated by the Hadamard matrix in chunks of `chunk` (a rotated K cache's
// queries), into scratch, then rounded as round_queries rounds them: in the
// rotation's own launch when `fused` (one launch less per attention layer;
// bit for bit the two launches), else by a second one.
const float* rotate_queries(Context& ctx, GgmlType type_k, const float* q, int64_t n_rows, int width, int chunk,
                            bool fused);

// How the cells are split across blocks: n_chunks chunks of chunk_len cells
// (a multiple of the kernel's tile), and the scratch for their partial
// states, [n_chunks][n_tokens * n_head][dv + 2] floats: (max, sum, acc).
struct AttentionChunks {
    int64_t n_chunks = 1, chunk_len = 0;
    float* part = nullptr;
};
// est_blocks: the blocks one chunk takes (token runs x KV head slices).
AttentionChunks plan_attention_chunks(Context& ctx, const FlashAttention& a, int64_t est_blocks, int tile_cells);
// Merges the chunks' partial states into a.out and undoes the V rotation.
void combine_attention_chunks(Context& ctx, const FlashAttention& a, const AttentionChunks& chunks);

// Which kernel flash_attention tries first: MOESERVE_CUDA_ATTENTION=f32 |
// mma | vec | lane | tile | tile2 | fa2 | fa2p, read at every call so that
// tests can switch; unset: automatic, the tensor-core form except for MLA
// over a quantized cache (the f32 kernel).
enum class AttentionKernel { automatic, mma, f32, vec, lane, tile, tile2, fa2, fa2p };
AttentionKernel requested_attention_kernel();

// The decode form of flash_attention (cuda_attention_vec.cu): K and V rows
// read straight into registers, f32 arithmetic. For up to 16 tokens, head
// sizes 128 or 256 and groups of up to 16 (8 with dv 256), not MLA; returns
// false (launching nothing) otherwise.
bool flash_attention_vec(Context& ctx, const FlashAttention& a);
// How many times the decode form ran in this process.
int64_t vec_attention_launches();

// The lane-per-cell decode form of flash_attention (cuda_attention_lane.cu):
// each lane scores one cell's whole K row for the group's query heads, f32
// arithmetic. For up to 16 tokens, K heads of 128 or 256 values, V heads of
// 128 or 256, groups of up to 16 (8 unless both are 128), not MLA; returns
// false (launching nothing) otherwise.
bool flash_attention_lane(Context& ctx, const FlashAttention& a);
// How many times the lane form ran in this process.
int64_t lane_attention_launches();

// The shared-memory tile decode form of flash_attention
// (cuda_attention_tile.cu): a tile of 64 cells' K and V rows copied in with
// cp.async at once, then scored, weighted and summed from shared memory,
// f32 arithmetic. For up to 16 tokens, K and V heads of 128 or 256 values,
// groups of up to 16 (8 with dv 256), not MLA, cache rows whose head slices
// start at 4-byte multiples; returns false (launching nothing) otherwise.
// pipelined (MOESERVE_CUDA_ATTENTION=tile2): two row buffers, the next
// tile's copies in flight while the current tile is computed on.
bool flash_attention_tile(Context& ctx, const FlashAttention& a, bool pipelined);
// How many times the tile form ran in this process (one buffer, two).
int64_t tile_attention_launches();
int64_t tile2_attention_launches();

// The FlashAttention-2 form of flash_attention (cuda_attention_fa2.cu):
// each warp holds 16 query rows' Q, S and O in registers through mma.sync
// (f16 inputs, f32 sums, P as an f16 pair), 64 rows a block, K and V tiles
// of 64 cells in shared memory. For K and V heads of one size, 64 or 128,
// not MLA; returns false (launching nothing) otherwise.
// pipelined (MOESERVE_CUDA_ATTENTION=fa2p): the tiles' raw rows staged
// with cp.async in two buffers, the next tile's copies in flight while the
// current one is converted and worked on.
bool flash_attention_fa2(Context& ctx, const FlashAttention& a, bool pipelined);
// How many times the FlashAttention-2 form ran in this process (plain,
// pipelined).
int64_t fa2_attention_launches();
int64_t fa2p_attention_launches();

// The largest of 16, 8 and 4 bytes that divides every offset at which a
// cp.async copy of a's K and V head slices (k_slice, v_slice bytes) starts;
// 0 if not even 4 (cuda_attention_tile.cu).
int attention_copy_piece(const FlashAttention& a, size_t k_slice, size_t v_slice);

// Switches of the tensor-core forms (mma, fa2), each read once: whether P
// (and MLA's Q) go in as f16 pairs hi + lo (on unless MOESERVE_CUDA_MMA_PAIRS=0),
// and whether the f16 tile loader takes 16-byte pieces (on unless
// MOESERVE_CUDA_TILE_LOADS=0).
bool attention_f16_pairs();
bool attention_wide_tile_loads();

// The tensor-core form of flash_attention (cuda_attention_mma.cu): Q, K, P
// and V in f16 with f32 accumulation, as llama.cpp's CUDA kernels. For head
// sizes that are multiples of 16 and shared memory that fits; returns false
// (launching nothing) otherwise.
bool flash_attention_mma(Context& ctx, const FlashAttention& a);
// How many times the tensor-core form ran in this process (tests check that
// it did, since it falls back silently).
int64_t mma_attention_launches();
// How many of those took 64 query rows a block (MOESERVE_CUDA_MMA_ROWS=64,
// prompts only).
int64_t mma_prompt_row_launches();

}  // namespace moeserve::cuda
