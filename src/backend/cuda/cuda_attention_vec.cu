// A decode form of flash_attention (cuda_attention.cu) that reads each K and
// V row straight from the cache into registers, with no shared-memory tiles
// and no block-wide barrier per tile: opted into with
// MOESERVE_CUDA_ATTENTION=vec while it is measured against the tensor-core
// form, for batches of up to kVecMaxTokens tokens and head sizes 128 or 256.
//
// A block takes one token, one KV head with its whole group of query heads
// (up to 16), and one chunk of the token's cells. Each of its 4 warps walks
// every 4th cell of the chunk, loading the next cell's rows while it scores
// the current one: the lanes hold 4 or 8 consecutive values of
// the K and V rows (one coalesced 256- or 512-byte read of an f16 row), each
// head's score is a lane-partial dot product summed over the warp, and each
// lane keeps its share of every head's online softmax accumulator in
// registers. The warps' states merge in shared memory at the end into the
// chunk's partial state, which the f32 kernel's combine merges over chunks.
// Arithmetic in f32 on the dequantized values (the queries already rounded
// for a quantized K by round_queries), like the f32 kernel; only the order
// of additions differs.
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include "backend/cuda/cuda_attention_warps.cuh"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kVecWarps = 4;
constexpr int kVecThreads = 32 * kVecWarps;
constexpr int64_t kVecMaxTokens = 16;
constexpr int kVecTileCells = 32;  // chunk lengths are multiples of this (plan_attention_chunks)

using VecArgs = DecodeArgs;

__device__ __forceinline__ float vec_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// This lane's VK values of the cell's K row and VV of its V row.
template <int VK, int VV>
__device__ __forceinline__ void load_rows(const FlashAttention& a, const uint8_t* k_base, const uint8_t* v_base,
                                          int32_t cell, int lane, float* k, float* v) {
    kv_decode_run<VK>(a.type_k, k_base + static_cast<size_t>(cell) * a.k_row_bytes, lane * VK, k);
    kv_decode_run<VV>(a.type_v, v_base + static_cast<size_t>(cell) * a.v_row_bytes, lane * VV, v);
}

// VK, VV: values of a K / V row per lane (dk = 32 VK, dv = 32 VV); GMAX:
// query heads per KV head at most (the accumulators: GMAX * VV registers).
// grid: (n_tokens, n_head_kv, n_chunks); dynamic smem: kVecWarps * GMAX * dv floats.
template <int VK, int VV, int GMAX>
__global__ void __launch_bounds__(kVecThreads) attention_vec_kernel(VecArgs args) {
    kernel_prologue();
    const FlashAttention& a = args.a;
    const DecodeBlock blk = decode_block(a, args.chunk_len);
    const int64_t t = blk.t, c_begin = blk.c_begin, c_end = blk.c_end;
    const int kvh = blk.kvh, G = args.group;
    const int32_t* cells = blk.cells;
    const uint8_t* k_base = blk.k_base;
    const uint8_t* v_base = blk.v_base;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    constexpr int dv = 32 * VV;

    float q[GMAX][VK];
#pragma unroll
    for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int i = 0; i < VK; ++i) q[g][i] = g < G ? a.q[(t * a.n_head + kvh * G + g) * a.dk + lane * VK + i] : 0.0f;
    float m[GMAX], l[GMAX], acc[GMAX][VV];
    init_warp_state(m, l, acc);

    // The warp's cells c_begin + warp + kVecWarps * i, 32 at a time: lane i
    // loads the index of the i-th (one coalesced read instead of a dependent
    // load per cell), and the next cell's K and V rows are loaded while the
    // current one is scored, so each warp keeps a row read in flight.
    for (int64_t base = c_begin + warp; base < c_end; base += 32 * kVecWarps) {
        const int64_t my_c = base + static_cast<int64_t>(kVecWarps) * lane;
        const int32_t my_cell = my_c < c_end ? cells[my_c] : 0;
        const int n_here = static_cast<int>(min(static_cast<int64_t>(32), (c_end - base + kVecWarps - 1) / kVecWarps));
        float k[VK], v[VV];
        load_rows<VK, VV>(a, k_base, v_base, __shfl_sync(0xffffffffu, my_cell, 0), lane, k, v);
        for (int i = 0; i < n_here; ++i) {
            float k_next[VK], v_next[VV];
            const int32_t next_cell = __shfl_sync(0xffffffffu, my_cell, min(i + 1, 31));
            if (i + 1 < n_here) load_rows<VK, VV>(a, k_base, v_base, next_cell, lane, k_next, v_next);
#pragma unroll
            for (int g = 0; g < GMAX; ++g) {
                if (g >= G) break;  // the same for every lane
                float d = 0.0f;
#pragma unroll
                for (int j = 0; j < VK; ++j) d = fmaf(q[g][j], k[j], d);
                const float s = vec_warp_sum(d) * a.scale;  // every lane has it
                if (s > m[g]) {                             // a new maximum: rescale what came before
                    const float corr = __expf(m[g] - s);    // 0 for the first cell (m = -inf)
                    l[g] *= corr;
#pragma unroll
                    for (int j = 0; j < VV; ++j) acc[g][j] *= corr;
                    m[g] = s;
                }
                const float p = __expf(s - m[g]);
                l[g] += p;
#pragma unroll
                for (int j = 0; j < VV; ++j) acc[g][j] = fmaf(p, v[j], acc[g][j]);
            }
            if (i + 1 < n_here) {
#pragma unroll
                for (int j = 0; j < VK; ++j) k[j] = k_next[j];
#pragma unroll
                for (int j = 0; j < VV; ++j) v[j] = v_next[j];
            }
        }
    }

    // The warps' states, merged into the chunk's partial state per head.
    extern __shared__ float acc_s[];  // [kVecWarps][GMAX][dv]
    __shared__ WarpStates<kVecWarps, GMAX> states;
    store_warp_state<kVecWarps, GMAX, VV>(states, acc_s, warp, lane, m, l, acc);
    __syncthreads();
    const int64_t chunk_base = static_cast<int64_t>(blockIdx.z) * a.n_tokens;
    write_chunk_state(states, acc_s, G, dv,
                      args.part + ((chunk_base + t) * a.n_head + kvh * G) * static_cast<int64_t>(dv + 2));
}

std::atomic<int64_t> g_vec_launches{0};

template <int VK, int VV, int GMAX>
void launch_vec(Context& ctx, const VecArgs& args, dim3 grid) {
    const size_t smem = sizeof(float) * kVecWarps * GMAX * 32 * VV;
    raise_dynamic_smem_limit(reinterpret_cast<const void*>(attention_vec_kernel<VK, VV, GMAX>), smem);
    launch_kernel(attention_vec_kernel<VK, VV, GMAX>, grid, kVecThreads, smem, ctx.stream, args);
}

}  // namespace

bool flash_attention_vec(Context& ctx, const FlashAttention& a) {
    if (a.v_in_k || a.n_tokens > kVecMaxTokens) return false;
    const int group = a.n_head / a.n_head_kv;
    const bool dk_ok = a.dk == 128 || a.dk == 256, dv_ok = a.dv == 128 || a.dv == 256;
    // Accumulators: at most 64 registers a lane (16 heads of 128 values, or 8 of 256).
    if (!dk_ok || !dv_ok || group > (a.dv == 128 ? 16 : 8)) return false;

    VecArgs args{};
    AttentionChunks chunks;
    const dim3 grid = plan_decode(ctx, a, kVecTileCells, args, chunks);
    const bool k128 = a.dk == 128, v128 = a.dv == 128, small_group = group <= 8;
    if (k128 && v128)
        small_group ? launch_vec<4, 4, 8>(ctx, args, grid) : launch_vec<4, 4, 16>(ctx, args, grid);
    else if (k128)
        launch_vec<4, 8, 8>(ctx, args, grid);
    else if (v128)
        small_group ? launch_vec<8, 4, 8>(ctx, args, grid) : launch_vec<8, 4, 16>(ctx, args, grid);
    else
        launch_vec<8, 8, 8>(ctx, args, grid);
    MOESERVE_CUDA_CHECK_LAUNCH();
    combine_attention_chunks(ctx, a, chunks);
    g_vec_launches.fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t vec_attention_launches() {
    return g_vec_launches.load(std::memory_order_relaxed);
}

}  // namespace moeserve::cuda
