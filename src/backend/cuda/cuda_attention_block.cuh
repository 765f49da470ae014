// Which work an attention block takes (both forms of flash_attention:
// cuda_attention.cu, cuda_attention_mma.cu): grid x is a token, y a KV head
// and a slice of its query heads, z a chunk of the cells. Only the first
// token of a run sharing one cell list (or of each tokens_per_tile-aligned
// piece of it) leads a block; the others exit at once.
#pragma once

#include <cstdint>

namespace moeserve::cuda {

struct AttentionBlock {
    bool leads;     // false: this block has no work
    int64_t t0;     // first token of the run
    int nt;         // tokens in the run
    int kvh;        // KV head
    int head0, nh;  // the slice: query heads head0 .. head0 + nh - 1 of the group
};

__device__ inline AttentionBlock attention_block(const int64_t* offset, int64_t n_tokens, int tokens_per_tile,
                                                 int head_splits, int heads_per_block, int group) {
    AttentionBlock b{};
    b.t0 = blockIdx.x;
    const int64_t off = offset[b.t0];
    b.leads = !(b.t0 % tokens_per_tile != 0 && offset[b.t0 - 1] == off);
    if (!b.leads) return b;
    int64_t t1 = b.t0 + 1;
    while (t1 < n_tokens && t1 % tokens_per_tile != 0 && offset[t1] == off) ++t1;
    b.nt = static_cast<int>(t1 - b.t0);
    b.kvh = blockIdx.y / head_splits;
    b.head0 = (blockIdx.y % head_splits) * heads_per_block;
    b.nh = min(heads_per_block, group - b.head0);
    return b;
}

}  // namespace moeserve::cuda
