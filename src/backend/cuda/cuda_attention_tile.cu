// A decode form of flash_attention (cuda_attention.cu) built to keep the
// memory busy: opted into with MOESERVE_CUDA_ATTENTION=tile while it is
// measured against the tensor-core form, for batches of up to
// kTileMaxTokens tokens, K and V heads of 128 or 256 values, not MLA.
//
// Why: at 32K cells every other form adds ~100 µs a layer to a decoded
// token whatever the cache type (an f16 cache's 64 MB and a q4_0 cache's
// 18 MB cost the same, bench/README.md), so they wait on latency, not on
// bytes: the tensor-core form loads a 32-cell tile and then computes on it
// behind four block barriers, the register forms keep one or a few rows in
// flight per warp. Here a block copies a whole tile of 64 cells' K and V
// head slices into shared memory with asynchronous copies (cp.async: every
// piece of the tile in flight at once, no registers held), waits once, and
// then works from shared memory:
//   1. scores: two threads per cell, each half of the K row's 8-value runs
//      (converted once for all the group's query heads, the queries
//      broadcast from shared memory), summed over the pair;
//   2. softmax: one warp per query head, one max and one sum per tile;
//   3. O += P·V: warp w takes every 4th cell, lane i values i*VV .. of
//      each head's accumulator (registers), the weights from shared memory.
// The warps' accumulators share the block's running maximum, so at the end
// they are simply summed into the chunk's partial state, which the combine
// of cuda_attention.cu merges over chunks. Arithmetic in f32 on the
// dequantized values (the queries already rounded for a quantized K), as the
// other register forms compute; only the order of additions differs.
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include "backend/cuda/cuda_attention_warps.cuh"
#include "backend/cuda/cuda_cp_async.cuh"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kTileWarps = 4;
constexpr int kTileThreads = 32 * kTileWarps;
constexpr int kTileCells = kTileThreads / 2;  // two threads score a cell
static_assert(kTileCells == 64, "the softmax step gives each lane cells lane and lane + 32");
constexpr int64_t kTileMaxTokens = 16;

struct TileArgs : DecodeArgs {
    int piece;                    // bytes per asynchronous copy: 16, 8 or 4
    int k_slice, v_slice;         // bytes of one head's K / V values in a cache row
    int k_pitch, v_pitch;         // their rows' pitch in shared memory
    bool k_f16_runs, v_f16_runs;  // an f16 row: runs loaded as 16 / 8 / 4 aligned bytes
};

// Shared-memory layout (bytes, each piece 16-byte aligned).
struct TileLayout {
    size_t q, stats, scores, rows, total;
};

__host__ __device__ inline size_t align16(size_t n) {
    return (n + 15) / 16 * 16;
}

// A row pitch that spreads the pair of threads reading a row, and the next
// rows, over distinct banks (an f16 row of 256 or 512 bytes: +32).
__host__ __device__ inline int tile_pitch(int slice) {
    return static_cast<int>(align16(slice)) + 32;
}

// (The kernel passes its template parameters DK, DV, GMAX and its number of
// row buffers, 2 when pipelined; the host checks the total against the
// device's limit before it launches.)
__host__ __device__ inline TileLayout tile_layout(int dk, int dv, int gmax, int k_pitch, int v_pitch, int buffers) {
    TileLayout l{};
    size_t at = 0;
    l.q = at, at = align16(at + sizeof(float) * gmax * dk);
    l.stats = at, at = align16(at + sizeof(float) * 3 * gmax);
    l.scores = at, at = align16(at + sizeof(float) * kTileCells * gmax);
    // The K and V rows of a tile (of two, pipelined); at the end the warps' accumulators.
    const size_t rows = static_cast<size_t>(buffers) * kTileCells * (k_pitch + v_pitch);
    const size_t accs = sizeof(float) * kTileWarps * gmax * dv;
    l.rows = at, at = align16(at + (rows > accs ? rows : accs));
    l.total = at;
    return l;
}

// Values d0 .. d0+N-1 of a row in shared memory (N = 4 or 8; an f16 row's
// runs are aligned, so one 8- or 16-byte load).
template <int N>
__device__ __forceinline__ void tile_run(GgmlType type, bool f16_runs, const uint8_t* row, int d0, float* out) {
    if (f16_runs) {
        uint32_t w[N / 2];
        if constexpr (N == 8) {
            const uint4 v = *reinterpret_cast<const uint4*>(row + 2 * d0);
            w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
        } else {
            const uint2 v = *reinterpret_cast<const uint2*>(row + 2 * d0);
            w[0] = v.x, w[1] = v.y;
        }
#pragma unroll
        for (int i = 0; i < N / 2; ++i) {
            out[2 * i] = half_bits_to_f32(static_cast<uint16_t>(w[i] & 0xFFFF));
            out[2 * i + 1] = half_bits_to_f32(static_cast<uint16_t>(w[i] >> 16));
        }
        return;
    }
    kv_decode_run<N>(type, row, d0, out);
}

// The tile at c0 (nc cells) into buffer K / V: every piece of its K and V
// slices in flight at once, committed as one group. Each thread reads the
// cell index of the pieces it copies (one cached load a piece).
__device__ __forceinline__ void issue_tile(const TileArgs& args, const DecodeBlock& blk, int64_t c0, int nc, uint8_t* K,
                                           uint8_t* V) {
    const FlashAttention& a = args.a;
    const int piece = args.piece;
    const int k_pieces = args.k_slice / piece, v_pieces = args.v_slice / piece;
    for (int i = threadIdx.x; i < nc * k_pieces; i += kTileThreads) {
        const int c = i / k_pieces, u = i % k_pieces;
        const size_t cell = static_cast<size_t>(blk.cells[c0 + c]);
        cp_async(K + c * args.k_pitch + u * piece, blk.k_base + cell * a.k_row_bytes + u * piece, piece);
    }
    for (int i = threadIdx.x; i < nc * v_pieces; i += kTileThreads) {
        const int c = i / v_pieces, u = i % v_pieces;
        const size_t cell = static_cast<size_t>(blk.cells[c0 + c]);
        cp_async(V + c * args.v_pitch + u * piece, blk.v_base + cell * a.v_row_bytes + u * piece, piece);
    }
    cp_async_commit();
}

// PIPE: two row buffers, the next tile's copies issued before the current
// tile is computed on (MOESERVE_CUDA_ATTENTION=tile2), so a block keeps its
// copies in flight while it computes; else one buffer, copy then compute.
// grid: (n_tokens, n_head_kv, n_chunks); dynamic smem: tile_layout.
template <int DK, int DV, int GMAX, bool PIPE>
__global__ void __launch_bounds__(kTileThreads) attention_tile_kernel(TileArgs args) {
    kernel_prologue();
    constexpr int VV = DV / 32;  // V values per lane
    const FlashAttention& a = args.a;
    const DecodeBlock blk = decode_block(a, args.chunk_len);
    const int64_t t = blk.t, c_begin = blk.c_begin, c_end = blk.c_end;
    const int kvh = blk.kvh, G = args.group;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    extern __shared__ __align__(16) unsigned char smem[];
    const TileLayout L = tile_layout(DK, DV, GMAX, args.k_pitch, args.v_pitch, PIPE ? 2 : 1);
    float* qs = reinterpret_cast<float*>(smem + L.q);  // [GMAX][DK]
    float* m_s = reinterpret_cast<float*>(smem + L.stats);
    float* l_s = m_s + GMAX;
    float* corr_s = l_s + GMAX;
    float* S = reinterpret_cast<float*>(smem + L.scores);  // [kTileCells][GMAX]: scores, then weights
    static_assert(GMAX % 4 == 0, "weights are read four heads at a time");
    // Buffer b: K rows [kTileCells][k_pitch], then V rows [kTileCells][v_pitch].
    const size_t buffer_bytes = static_cast<size_t>(kTileCells) * (args.k_pitch + args.v_pitch);
    uint8_t* const rows = smem + L.rows;

    for (int i = tid; i < GMAX * DK; i += kTileThreads) {
        const int g = i / DK, d = i % DK;
        qs[i] = g < G ? a.q[(t * a.n_head + kvh * G + g) * a.dk + d] : 0.0f;
    }
    for (int g = tid; g < GMAX; g += kTileThreads) m_s[g] = -INFINITY, l_s[g] = 0.0f, corr_s[g] = 1.0f;

    float acc[GMAX][VV];
#pragma unroll
    for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int j = 0; j < VV; ++j) acc[g][j] = 0.0f;

    const auto tile_cells = [&](int64_t c) {
        return static_cast<int>(min(static_cast<int64_t>(kTileCells), c_end - c));
    };
    if (PIPE && c_begin < c_end)
        issue_tile(args, blk, c_begin, tile_cells(c_begin), rows, rows + kTileCells * args.k_pitch);
    int buf = 0;
    for (int64_t c0 = c_begin; c0 < c_end; c0 += kTileCells, buf ^= PIPE ? 1 : 0) {
        const int nc = tile_cells(c0);
        uint8_t* const Kt = rows + buf * buffer_bytes;
        uint8_t* const Vt = Kt + static_cast<size_t>(kTileCells) * args.k_pitch;
        __syncthreads();  // the previous tile's rows and weights are read (and the stats written)
        if constexpr (PIPE) {
            const int64_t next = c0 + kTileCells;
            if (next < c_end) {  // into the other buffer, read last by the previous tile
                uint8_t* const Kn = rows + (buf ^ 1) * buffer_bytes;
                issue_tile(args, blk, next, tile_cells(next), Kn, Kn + kTileCells * args.k_pitch);
                cp_async_wait<1>();  // this tile's group has landed; the next one's may still fly
            } else {
                cp_async_wait<0>();
            }
        } else {
            issue_tile(args, blk, c0, nc, Kt, Vt);
            cp_async_wait<0>();
        }
        __syncthreads();

        // 1. Scores: cell tid/2, runs 2k + tid%2 of 8 values.
        {
            const int c = tid >> 1, part = tid & 1;
            float s[GMAX];
#pragma unroll
            for (int g = 0; g < GMAX; ++g) s[g] = 0.0f;
            if (c < nc) {
                const uint8_t* row = Kt + c * args.k_pitch;
#pragma unroll 4
                for (int k = 0; k < DK / 16; ++k) {
                    const int d0 = 8 * (2 * k + part);
                    float kv[8];
                    tile_run<8>(a.type_k, args.k_f16_runs, row, d0, kv);
#pragma unroll
                    for (int g = 0; g < GMAX; ++g) {
                        if (g >= G) break;  // the same for every thread
                        const float4 q0 = *reinterpret_cast<const float4*>(qs + g * DK + d0);
                        const float4 q1 = *reinterpret_cast<const float4*>(qs + g * DK + d0 + 4);
                        float d = s[g];
                        d = fmaf(q0.x, kv[0], d), d = fmaf(q0.y, kv[1], d), d = fmaf(q0.z, kv[2], d);
                        d = fmaf(q0.w, kv[3], d), d = fmaf(q1.x, kv[4], d), d = fmaf(q1.y, kv[5], d);
                        d = fmaf(q1.z, kv[6], d), d = fmaf(q1.w, kv[7], d);
                        s[g] = d;
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < GMAX; ++g) {
                if (g < G) {  // the same for every thread
                    const float both = s[g] + __shfl_xor_sync(0xffffffffu, s[g], 1);
                    if (part == 0) S[c * GMAX + g] = c < nc ? both * a.scale : -INFINITY;
                } else if (part == 0) {
                    S[c * GMAX + g] = 0.0f;  // read in fours below, never used
                }
            }
        }
        __syncthreads();

        // 2. Softmax: warp w takes heads w, w + 4, ...; lanes cells lane and lane + 32.
        for (int g = warp; g < G; g += kTileWarps) {
            const float s0 = S[lane * GMAX + g], s1 = S[(lane + 32) * GMAX + g];
            float mt = fmaxf(s0, s1);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            const float m_old = m_s[g];
            const float m_new = fmaxf(m_old, mt);                          // finite: the tile has a live cell
            const float corr = __expf(m_old - m_new);                      // 0 while m_old = -inf
            const float p0 = __expf(s0 - m_new), p1 = __expf(s1 - m_new);  // 0 for a dead cell
            float sum = p0 + p1;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            S[lane * GMAX + g] = p0;
            S[(lane + 32) * GMAX + g] = p1;
            __syncwarp();  // every lane has read m_s[g] before lane 0 replaces it
            if (lane == 0) l_s[g] = l_s[g] * corr + sum, m_s[g] = m_new, corr_s[g] = corr;
        }
        __syncthreads();

        // 3. O += P·V: warp w takes cells w, w + 4, ...
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
            if (g >= G) break;
            const float corr = corr_s[g];
#pragma unroll
            for (int j = 0; j < VV; ++j) acc[g][j] *= corr;
        }
#pragma unroll 2
        for (int c = warp; c < nc; c += kTileWarps) {
            float v[VV];
            tile_run<VV>(a.type_v, args.v_f16_runs, Vt + c * args.v_pitch, lane * VV, v);
            float p[GMAX];
#pragma unroll
            for (int g = 0; g < GMAX; g += 4) {
                const float4 w = *reinterpret_cast<const float4*>(S + c * GMAX + g);
                p[g] = w.x, p[g + 1] = w.y, p[g + 2] = w.z, p[g + 3] = w.w;
            }
#pragma unroll
            for (int g = 0; g < GMAX; ++g) {
                if (g >= G) break;
#pragma unroll
                for (int j = 0; j < VV; ++j) acc[g][j] = fmaf(p[g], v[j], acc[g][j]);
            }
        }
    }

    // The warps' accumulators (one running maximum for all) summed into the
    // chunk's partial state per head; a chunk with no cells gets max -inf,
    // which the combine skips.
    __syncthreads();
    float* acc_s = reinterpret_cast<float*>(rows);  // [kTileWarps][GMAX][DV], over the rows
#pragma unroll
    for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int j = 0; j < VV; ++j) acc_s[(warp * GMAX + g) * DV + lane * VV + j] = acc[g][j];
    __syncthreads();
    const int64_t chunk_base = static_cast<int64_t>(blockIdx.z) * a.n_tokens;
    float* part = args.part + ((chunk_base + t) * a.n_head + kvh * G) * static_cast<int64_t>(DV + 2);
    for (int e = tid; e < G * DV; e += kTileThreads) {
        const int g = e / DV, j = e % DV;
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < kTileWarps; ++w) o += acc_s[(w * GMAX + g) * DV + j];
        float* p = part + static_cast<int64_t>(g) * (DV + 2);
        p[2 + j] = o;
        if (j == 0) p[0] = m_s[g], p[1] = l_s[g];
    }
}

std::atomic<int64_t> g_tile_launches{0};
std::atomic<int64_t> g_tile2_launches{0};

template <int DK, int DV, int GMAX, bool PIPE>
void launch_tile_form(Context& ctx, const TileArgs& args, dim3 grid) {
    const size_t smem = tile_layout(DK, DV, GMAX, args.k_pitch, args.v_pitch, PIPE ? 2 : 1).total;
    raise_dynamic_smem_limit(reinterpret_cast<const void*>(attention_tile_kernel<DK, DV, GMAX, PIPE>), smem);
    launch_kernel(attention_tile_kernel<DK, DV, GMAX, PIPE>, grid, kTileThreads, smem, ctx.stream, args);
}

template <int DK, int DV, int GMAX>
void launch_tile(Context& ctx, const TileArgs& args, dim3 grid, bool pipelined) {
    pipelined ? launch_tile_form<DK, DV, GMAX, true>(ctx, args, grid)
              : launch_tile_form<DK, DV, GMAX, false>(ctx, args, grid);
}

}  // namespace

// The largest of 16, 8, 4 bytes that divides every offset a copy starts at
// (0 if not even 4).
int attention_copy_piece(const FlashAttention& a, size_t k_slice, size_t v_slice) {
    for (int p : {16, 8, 4}) {
        const auto fits = [p](size_t n) { return n % p == 0; };
        if (fits(reinterpret_cast<uintptr_t>(a.k)) && fits(reinterpret_cast<uintptr_t>(a.v)) && fits(a.k_row_bytes) &&
            fits(a.v_row_bytes) && fits(a.k_head_bytes) && fits(a.v_head_bytes) && fits(k_slice) && fits(v_slice))
            return p;
    }
    return 0;
}

bool flash_attention_tile(Context& ctx, const FlashAttention& a, bool pipelined) {
    if (a.v_in_k || a.n_tokens > kTileMaxTokens) return false;
    const int group = a.n_head / a.n_head_kv;
    const bool dk_ok = a.dk == 128 || a.dk == 256, dv_ok = a.dv == 128 || a.dv == 256;
    // Accumulators: at most 64 registers a thread (16 heads of 128 values, or 8 of 256).
    if (!dk_ok || !dv_ok || group > (a.dv == 128 ? 16 : 8)) return false;
    const size_t k_slice = kv_bytes(a.type_k, a.dk), v_slice = kv_bytes(a.type_v, a.dv);
    const int piece = attention_copy_piece(a, k_slice, v_slice);
    if (piece == 0) return false;

    TileArgs args{};
    args.piece = piece;
    args.k_slice = static_cast<int>(k_slice);
    args.v_slice = static_cast<int>(v_slice);
    args.k_pitch = tile_pitch(args.k_slice);
    args.v_pitch = tile_pitch(args.v_slice);
    args.k_f16_runs = a.type_k == GgmlType::F16;  // rows start 16-byte aligned in shared memory
    args.v_f16_runs = a.type_v == GgmlType::F16;
    // An f32 cache's tile with a head of 256 takes 106-142 KB: more than an
    // sm_89 card allows a block (99 KB).
    const bool small_group = group <= 8;
    const size_t smem =
        tile_layout(a.dk, a.dv, small_group ? 8 : 16, args.k_pitch, args.v_pitch, pipelined ? 2 : 1).total;
    if (ctx.shared_mem_per_block_optin > 0 && smem > ctx.shared_mem_per_block_optin) return false;
    AttentionChunks chunks;
    const dim3 grid = plan_decode(ctx, a, kTileCells, args, chunks);
    const bool k128 = a.dk == 128, v128 = a.dv == 128;
    const bool p = pipelined;
    if (k128 && v128)
        small_group ? launch_tile<128, 128, 8>(ctx, args, grid, p) : launch_tile<128, 128, 16>(ctx, args, grid, p);
    else if (k128)
        launch_tile<128, 256, 8>(ctx, args, grid, p);
    else if (v128)
        small_group ? launch_tile<256, 128, 8>(ctx, args, grid, p) : launch_tile<256, 128, 16>(ctx, args, grid, p);
    else
        launch_tile<256, 256, 8>(ctx, args, grid, p);
    MOESERVE_CUDA_CHECK_LAUNCH();
    combine_attention_chunks(ctx, a, chunks);
    (pipelined ? g_tile2_launches : g_tile_launches).fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t tile_attention_launches() {
    return g_tile_launches.load(std::memory_order_relaxed);
}

int64_t tile2_attention_launches() {
    return g_tile2_launches.load(std::memory_order_relaxed);
}

}  // namespace moeserve::cuda
