// The inner loops of GQA attention over a KV cache, for one KV head and all
// the query rows that share it (a decode token's group of query heads, or a
// block of prompt tokens times that group): each cached K and V row is
// loaded and unpacked once for every query row, straight from the cache's
// blocks, with no f32 copy of the row.
//
// Numerics are those of the general path in cpu_attention.cpp, bit for bit:
//  - quantized K (Q4_0, Q8_0): the query rows are Q8_0 and each score is
//    the value vec_dot_kernel(type_k, SimdLevel::avx2) gives (exact integer
//    block sums, the same per-lane float FMAs, the same final sum tree);
//  - F16 K: the query rows are f32 and each score is the AVX-512 f32 dot of
//    the query with the row converted to f32 (the FMA chain of 16 lanes and
//    _mm512_reduce_add_ps's tree);
//  - V: each accumulator element gets fma(p, v, acc) in cell order, v being
//    the dequantized element, as the f32 V sum does for heads of 128 (for
//    other sizes it multiplies and adds separately: equal within rounding).
// Where the build lacks the instructions (AVX-512 F/BW/VL, and VNNI for the
// quantized K kernels) the has_* functions say false and the caller keeps
// its general path.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/ggml_type.h"

namespace moeserve {

// CpuBackend::attention: from kStreamingFrom cells of context on (the
// default of set_attention_streaming_from), a thread reads the K and V rows of
// all its KV heads kStreamingChunk cells at a time (cpu_attention.cpp); the
// memory plan sizes the op's scratch with the same numbers.
constexpr int64_t kStreamingFrom = 8192;
constexpr int64_t kStreamingChunk = 256;
// Decoded tokens with kSplitFrom cells or more (set_attention_split): their
// cells split into chunks of kSplitChunk, a work item each with its own
// softmax state, merged in order (cpu_attention_split.cpp).
constexpr int64_t kSplitFrom = 8192;
constexpr int64_t kSplitChunk = 2048;

// Whether score_group_rows handles K rows of this type and head size.
bool has_group_scores(GgmlType type_k, int head_dim);
// Whether accumulate_group_rows handles V rows of this type and head size.
bool has_group_values(GgmlType type_v, int head_dim);

// Bytes of the packed form of n_rows query rows of head_dim elements.
size_t group_query_bytes(GgmlType type_k, int n_rows, int head_dim);

// Packs n_rows query rows (q_row_bytes apart) for score_group_rows: Q8_0
// rows for Q4_0/Q8_0 K, f32 rows for F16 K (which the general path scores in
// f32), interleaved so the kernels walk them with one pointer. packed holds
// group_query_bytes(type_k, n_rows, head_dim) bytes; start it on a 64-byte
// line (cache_line_vector.h), or every vector load of it straddles two.
void pack_group_queries(GgmlType type_k, const void* q_rows, size_t q_row_bytes, int n_rows, int head_dim,
                        void* packed);

// scores[r * stride + c] = scale * (query r · K row c) for r < n_rows, c < n_cells;
// k_rows[c] points at cell c's row of this KV head (head_dim elements of type_k).
void score_group_rows(GgmlType type_k, const uint8_t* const* k_rows, int64_t n_cells, const void* packed, int n_rows,
                      int head_dim, float scale, float* scores, int64_t stride);

// acc[r * head_dim + i] += Σ_c p[r * stride + c] * V_c[i] for r < n_rows,
// c < n_cells, in cell order; v_rows[c] points at cell c's V row of this KV head.
void accumulate_group_rows(GgmlType type_v, const uint8_t* const* v_rows, int64_t n_cells, const float* p,
                           int64_t stride, int n_rows, int head_dim, float* acc);

}  // namespace moeserve
