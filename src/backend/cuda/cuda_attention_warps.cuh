// The end of the register-state decode kernels (cuda_attention_vec.cu,
// cuda_attention_lane.cu): each warp holds an online-softmax state (max m,
// sum l, accumulator acc) per query head of the group for its share of the
// chunk's cells; the block merges them into the chunk's partial state, the
// layout the combine kernel of cuda_attention.cu reads.
#pragma once

#include <cmath>
#include <cstdint>

#include "backend/cuda/cuda_flash_attention.h"

namespace moeserve::cuda {

// What both decode forms' kernels take: the attention, the query heads per
// KV head, the chunk length and the chunks' partial states
// ([n_chunks][n_tokens][n_head][dv + 2]: m, l, acc).
struct DecodeArgs {
    FlashAttention a;
    int group;
    int64_t chunk_len;
    float* part;
};

// Fills args for a and plans its chunks (multiples of tile_cells); returns
// the grid (n_tokens, n_head_kv, n_chunks). The caller combines the chunks.
inline dim3 plan_decode(Context& ctx, const FlashAttention& a, int tile_cells, DecodeArgs& args,
                        AttentionChunks& chunks) {
    args.a = a;
    args.group = a.n_head / a.n_head_kv;
    chunks = plan_attention_chunks(ctx, a, a.n_tokens * a.n_head_kv, tile_cells);
    args.chunk_len = chunks.chunk_len;
    args.part = chunks.part;
    return dim3(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(a.n_head_kv),
                static_cast<unsigned>(chunks.n_chunks));
}

// A decode block's work: token t, KV head kvh, cells [c_begin, c_end) of the
// token's list (grid: (n_tokens, n_head_kv, n_chunks)), and where that KV
// head's K and V rows start in a cache row.
struct DecodeBlock {
    int64_t t;
    int kvh;
    int64_t c_begin, c_end;
    const int32_t* cells;
    const uint8_t* k_base;
    const uint8_t* v_base;
};

__device__ __forceinline__ DecodeBlock decode_block(const FlashAttention& a, int64_t chunk_len) {
    DecodeBlock b;
    b.t = blockIdx.x;
    b.kvh = static_cast<int>(blockIdx.y);
    b.c_begin = static_cast<int64_t>(blockIdx.z) * chunk_len;
    b.c_end = min(b.c_begin + chunk_len, static_cast<int64_t>(a.cells.n_cells[b.t]));
    b.cells = a.cells.cells + a.cells.offset[b.t];
    b.k_base = a.k + static_cast<size_t>(b.kvh) * a.k_head_bytes;
    b.v_base = a.v + static_cast<size_t>(b.kvh) * a.v_head_bytes;
    return b;
}

// An empty online-softmax state: max -inf, sum 0, accumulators 0.
template <int GMAX, int VV>
__device__ __forceinline__ void init_warp_state(float (&m)[GMAX], float (&l)[GMAX], float (&acc)[GMAX][VV]) {
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int j = 0; j < VV; ++j) acc[g][j] = 0.0f;
    }
}

// Shared memory for the states of NW warps, GMAX heads and dv values per head
// (acc: NW * GMAX * dv floats, static or dynamic as the kernel allots it).
template <int NW, int GMAX>
struct WarpStates {
    float m[NW][GMAX], l[NW][GMAX];
};

// Warp `warp` stores its state; lane `lane` holds values lane*VV .. of each head.
template <int NW, int GMAX, int VV>
__device__ __forceinline__ void store_warp_state(WarpStates<NW, GMAX>& s, float* acc_s, int warp, int lane,
                                                 const float (&m)[GMAX], const float (&l)[GMAX],
                                                 const float (&acc)[GMAX][VV]) {
    constexpr int dv = 32 * VV;
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
        if (lane == 0) s.m[warp][g] = m[g], s.l[warp][g] = l[g];
#pragma unroll
        for (int i = 0; i < VV; ++i) acc_s[(warp * GMAX + g) * dv + lane * VV + i] = acc[g][i];
    }
}

// After a barrier: head g's partial state (max, sum, dv values) at
// part + g * (dv + 2) for g < G, by all the block's threads. A chunk with no
// cells gets max -inf, which the combine skips.
template <int NW, int GMAX>
__device__ __forceinline__ void write_chunk_state(const WarpStates<NW, GMAX>& s, const float* acc_s, int G, int dv,
                                                  float* part) {
    for (int e = threadIdx.x; e < G * dv; e += blockDim.x) {
        const int g = e / dv, j = e % dv;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < NW; ++w) M = fmaxf(M, s.m[w][g]);
        float* p = part + static_cast<int64_t>(g) * (dv + 2);
        if (M == -INFINITY) {
            if (j == 0) p[0] = -INFINITY, p[1] = 0.0f;
            continue;
        }
        float L = 0.0f, o = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) {
            if (s.m[w][g] == -INFINITY) continue;
            const float f = __expf(s.m[w][g] - M);
            L += s.l[w][g] * f;
            o += acc_s[(w * GMAX + g) * dv + j] * f;
        }
        p[2 + j] = o;
        if (j == 0) p[0] = M, p[1] = L;
    }
}

}  // namespace moeserve::cuda
