// A decode form of flash_attention (cuda_attention.cu) in which each lane of
// a warp scores one cell: opted into with MOESERVE_CUDA_ATTENTION=lane while
// it is measured against the tensor-core form, for batches of up to
// kLaneMaxTokens tokens, value heads of 128 or 256 values, not MLA.
//
// Why: the other forms split a K row over the lanes, so every cell's score
// for every query head of the group is a warp-wide reduction (five dependent
// shuffles) or goes through shared-memory tiles and four block barriers per
// 32 cells; at 32K cells a decode step's attention read the cache at about a
// tenth of the card's bandwidth (bench/README.md). Here a warp takes 32 cells
// at a time: lane i reads cell i's whole K row (contiguous bytes, every
// sector used) and computes its scores for the group's query heads against
// the queries held in shared memory (broadcast reads); the online softmax
// then needs one max and one sum per head for 32 cells; and the V rows are
// read by the whole warp (lane i: values i*VV .. i*VV+VV-1, coalesced) and
// accumulated with each cell's weight taken from its lane by a shuffle.
//
// A block takes one token, one KV head with its whole group of query heads,
// and one chunk of the token's cells; its 4 warps take every 4th run of 32
// cells and merge their states at the end into the chunk's partial state,
// which the f32 kernel's combine merges over chunks. Arithmetic in f32 on the
// dequantized values, the queries already rounded for a quantized K.
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include "backend/cuda/cuda_attention_warps.cuh"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kLaneWarps = 4;
constexpr int kLaneThreads = 32 * kLaneWarps;
constexpr int64_t kLaneMaxTokens = 16;
constexpr int kLaneTileCells = 32;  // chunk lengths are multiples of this (plan_attention_chunks)

struct LaneArgs : DecodeArgs {
    bool k_f16_wide;  // K is f16 with every row and head 16-byte aligned: 16-byte loads
};

// 8 values d0 .. d0+7 of a K row.
__device__ __forceinline__ void load_k8(const LaneArgs& args, const uint8_t* row, int d0, float* k) {
    if (args.k_f16_wide) {
        const uint4 w = *reinterpret_cast<const uint4*>(row + 2 * d0);
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            k[2 * i] = half_bits_to_f32(static_cast<uint16_t>(words[i] & 0xFFFF));
            k[2 * i + 1] = half_bits_to_f32(static_cast<uint16_t>(words[i] >> 16));
        }
        return;
    }
    kv_decode_run<8>(args.a.type_k, row, d0, k);
}

// DK: K head size (a multiple of 8); VV: V values per lane (dv = 32 VV);
// GMAX: query heads per KV head at most. grid: (n_tokens, n_head_kv,
// n_chunks); static smem: the group's queries.
template <int DK, int VV, int GMAX>
__global__ void __launch_bounds__(kLaneThreads) attention_lane_kernel(LaneArgs args) {
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

    __shared__ __align__(16) float qs[GMAX][DK];
    for (int i = threadIdx.x; i < GMAX * DK; i += kLaneThreads) {
        const int g = i / DK, d = i % DK;
        qs[g][d] = g < G ? a.q[(t * a.n_head + kvh * G + g) * a.dk + d] : 0.0f;
    }
    __syncthreads();

    float m[GMAX], l[GMAX], acc[GMAX][VV];
    init_warp_state(m, l, acc);

    for (int64_t base = c_begin + static_cast<int64_t>(kLaneTileCells) * warp; base < c_end;
         base += static_cast<int64_t>(kLaneTileCells) * kLaneWarps) {
        const int n_live = static_cast<int>(min(static_cast<int64_t>(kLaneTileCells), c_end - base));
        const bool live = lane < n_live;
        const int32_t cell = live ? cells[base + lane] : 0;

        // Lane `lane` scores cell base + lane for every head of the group.
        float s[GMAX];
#pragma unroll
        for (int g = 0; g < GMAX; ++g) s[g] = 0.0f;
        if (live) {
            const uint8_t* krow = k_base + static_cast<size_t>(cell) * a.k_row_bytes;
#pragma unroll 4  // four loads of the row in flight
            for (int d0 = 0; d0 < DK; d0 += 8) {
                float k[8];
                load_k8(args, krow, d0, k);
#pragma unroll
                for (int g = 0; g < GMAX; ++g) {
                    if (g >= G) break;  // the same for every lane
                    const float4 q0 = *reinterpret_cast<const float4*>(&qs[g][d0]);
                    const float4 q1 = *reinterpret_cast<const float4*>(&qs[g][d0 + 4]);
                    float d = s[g];
                    d = fmaf(q0.x, k[0], d), d = fmaf(q0.y, k[1], d), d = fmaf(q0.z, k[2], d);
                    d = fmaf(q0.w, k[3], d), d = fmaf(q1.x, k[4], d), d = fmaf(q1.y, k[5], d);
                    d = fmaf(q1.z, k[6], d), d = fmaf(q1.w, k[7], d);
                    s[g] = d;
                }
            }
        }

        // Online softmax over the 32 cells, one max and one sum per head.
        float p[GMAX];
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
            p[g] = 0.0f;
            if (g >= G) break;
            const float sg = live ? s[g] * a.scale : -INFINITY;
            float mt = sg;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            const float m_new = fmaxf(m[g], mt);      // finite: the tile has a live cell
            const float corr = __expf(m[g] - m_new);  // 0 while m = -inf
            p[g] = __expf(sg - m_new);                // 0 for a dead lane
            float sum = p[g];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            l[g] = l[g] * corr + sum;
#pragma unroll
            for (int j = 0; j < VV; ++j) acc[g][j] *= corr;
            m[g] = m_new;
        }

        // O += P·V: cell i's V row by the whole warp, its weights from lane i.
#pragma unroll 4
        for (int i = 0; i < n_live; ++i) {
            const int32_t ci = __shfl_sync(0xffffffffu, cell, i);
            float v[VV];
            kv_decode_run<VV>(a.type_v, v_base + static_cast<size_t>(ci) * a.v_row_bytes, lane * VV, v);
#pragma unroll
            for (int g = 0; g < GMAX; ++g) {
                if (g >= G) break;
                const float pg = __shfl_sync(0xffffffffu, p[g], i);
#pragma unroll
                for (int j = 0; j < VV; ++j) acc[g][j] = fmaf(pg, v[j], acc[g][j]);
            }
        }
    }

    // The warps' states, merged into the chunk's partial state per head.
    __shared__ WarpStates<kLaneWarps, GMAX> states;
    __shared__ float acc_s[kLaneWarps * GMAX * dv];
    store_warp_state<kLaneWarps, GMAX, VV>(states, acc_s, warp, lane, m, l, acc);
    __syncthreads();
    const int64_t chunk_base = static_cast<int64_t>(blockIdx.z) * a.n_tokens;
    write_chunk_state(states, acc_s, G, dv,
                      args.part + ((chunk_base + t) * a.n_head + kvh * G) * static_cast<int64_t>(dv + 2));
}

std::atomic<int64_t> g_lane_launches{0};

template <int DK, int VV, int GMAX>
void launch_lane(Context& ctx, const LaneArgs& args, dim3 grid) {
    launch_kernel(attention_lane_kernel<DK, VV, GMAX>, grid, kLaneThreads, 0, ctx.stream, args);
}

}  // namespace

bool flash_attention_lane(Context& ctx, const FlashAttention& a) {
    if (a.v_in_k || a.n_tokens > kLaneMaxTokens) return false;
    const int group = a.n_head / a.n_head_kv;
    // Accumulators: at most 64 registers a lane (16 heads of 128 values, or 8 of 256); queries in static
    // shared memory (16 heads of 128 values or 8 of 256: 8 KiB).
    const bool dk_ok = a.dk == 128 || a.dk == 256, dv_ok = a.dv == 128 || a.dv == 256;
    if (!dk_ok || !dv_ok || group > (a.dv == 128 && a.dk == 128 ? 16 : 8)) return false;

    LaneArgs args{};
    AttentionChunks chunks;
    const dim3 grid = plan_decode(ctx, a, kLaneTileCells, args, chunks);
    args.k_f16_wide = a.type_k == GgmlType::F16 && reinterpret_cast<uintptr_t>(a.k) % 16 == 0 &&
                      a.k_row_bytes % 16 == 0 && a.k_head_bytes % 16 == 0;
    const bool k128 = a.dk == 128, v128 = a.dv == 128, small_group = group <= 8;
    if (k128 && v128)
        small_group ? launch_lane<128, 4, 8>(ctx, args, grid) : launch_lane<128, 4, 16>(ctx, args, grid);
    else if (k128)
        launch_lane<128, 8, 8>(ctx, args, grid);
    else if (v128)
        launch_lane<256, 4, 8>(ctx, args, grid);
    else
        launch_lane<256, 8, 8>(ctx, args, grid);
    MOESERVE_CUDA_CHECK_LAUNCH();
    combine_attention_chunks(ctx, a, chunks);
    g_lane_launches.fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t lane_attention_launches() {
    return g_lane_launches.load(std::memory_order_relaxed);
}

}  // namespace moeserve::cuda
