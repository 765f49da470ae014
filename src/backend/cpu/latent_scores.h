// Scores of quantized MLA latent rows (Q4_0, Q8_0 cache) against many query
// vectors, bit for bit as llama.cpp's flash-attention path scores a
// quantized cache: the query rounded to Q8_0, then ggml's x86 (AVX2) dot
// product of the row with it — per 32-value block eight lanes of exact
// integer sums of four products, each fused into its lane's f32 accumulator
// with the rounded product of the two block scales, the eight lanes summed in
// ggml's tree at the end — times the attention scale.
//
// Why a kernel of its own: at long contexts the latent attention of a
// decoded token is compute-bound. Every cached row (576 values for
// GLM-4.7-Flash) is scored by all 20 query heads; in f32 that is 720
// 512-bit FMAs per row, with VNNI (vpdpbusd, 64 byte products each) 180. The
// rows are transposed 16 at a time so that each vector lane holds one row:
// ggml's eight lanes of a block become eight vectors of 16 rows, and its
// per-lane float steps run for 16 rows at once instead of needing a
// horizontal sum per row.
//
// The portable path computes the same numbers (the same integers, the same
// f32 operations in the same order), so builds without AVX-512 VNNI score
// alike.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/ggml_type.h"

namespace moeserve {

// Whether score_latent_rows handles rows of this cache type and width.
bool has_latent_int_scores(GgmlType type, int width);

// Query vectors rounded to Q8_0 and laid out for score_latent_rows: per
// query and 32-value block, the 32 bytes of q, the block's offset terms and
// its scale.
struct LatentQueries {
    struct Block {
        int32_t q[8];     // the block's 32 q8 bytes, four per dword (ggml's lane w: elements 4w..4w+3)
        int32_t init[8];  // per lane: −(code offset)·Σq, correcting the products of unsigned codes
        float d;          // the q8 block scale
    };
    GgmlType type = GgmlType::Q4_0;  // the cache type the rows have
    int n_queries = 0, n_blocks = 0;
    std::vector<Block> blocks;  // [query][block]

    // Room for `queries` query vectors of `width` values against rows of cache_type.
    void reset(GgmlType cache_type, int queries, int width);
    // Query i: q (width f32 values) rounded to Q8_0 as llama.cpp rounds it, packed.
    void pack(int i, const float* q);
};

// s[(i - first) * ld + j] = scale · (query i · row j) for first ≤ i < first + count
// and j < n_rows; rows[j] points at a cached row of the type the queries were packed for.
void score_latent_rows(const LatentQueries& q, int first, int count, const uint8_t* const* rows, int n_rows,
                       float scale, float* s, int ld);

}  // namespace moeserve
