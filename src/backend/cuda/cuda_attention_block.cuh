// Which work an attention block takes (both forms of flash_attention:
// cuda_attention.cu, cuda_attention_mma.cu): grid x is a token, y a KV head
// and a slice of its query heads, z a chunk of the cells. Only the first
// token of a run sharing one cell list (or of each tokens_per_tile-aligned
// piece of it) leads a block; the others exit at once.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_flash_attention.h"

namespace moeserve::cuda {

struct AttentionBlock {
    bool leads;              // false: this block has no work
    int64_t t0;              // first token of the run
    int nt;                  // tokens in the run
    int kvh;                 // KV head
    int head0, nh;           // the slice: query heads head0 .. head0 + nh - 1 of the group
    const int32_t* cells;    // the run's cell list
    int64_t c_begin, c_end;  // this block's chunk of it (past the run's longest view: empty)
    size_t k_head_off, v_head_off;
};

__device__ inline AttentionBlock attention_block(const FlashAttention& a, int tokens_per_tile, int head_splits,
                                                 int heads_per_block, int group, int64_t chunk_len) {
    AttentionBlock b{};
    const int64_t* offset = a.cells.offset;
    b.t0 = blockIdx.x;
    const int64_t off = offset[b.t0];
    b.leads = !(b.t0 % tokens_per_tile != 0 && offset[b.t0 - 1] == off);
    if (!b.leads) return b;
    int64_t t1 = b.t0 + 1;
    while (t1 < a.n_tokens && t1 % tokens_per_tile != 0 && offset[t1] == off) ++t1;
    b.nt = static_cast<int>(t1 - b.t0);
    b.kvh = blockIdx.y / head_splits;
    b.head0 = (blockIdx.y % head_splits) * heads_per_block;
    b.nh = min(heads_per_block, group - b.head0);
    int n_max = 0;  // the most cells any token of the run sees
    for (int lt = 0; lt < b.nt; ++lt) n_max = max(n_max, a.cells.n_cells[b.t0 + lt]);
    b.cells = a.cells.cells + off;
    b.c_begin = static_cast<int64_t>(blockIdx.z) * chunk_len;
    b.c_end = min(b.c_begin + chunk_len, static_cast<int64_t>(n_max));
    b.k_head_off = static_cast<size_t>(b.kvh) * a.k_head_bytes;
    b.v_head_off = static_cast<size_t>(b.kvh) * a.v_head_bytes;
    return b;
}

}  // namespace moeserve::cuda
