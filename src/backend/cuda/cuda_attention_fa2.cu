// A tensor-core form of flash_attention (cuda_attention.cu) with the work
// split of FlashAttention-2: opted into with MOESERVE_CUDA_ATTENTION=fa2
// while it is measured against the default tensor-core form, for K and V
// heads of the same size, 64 or 128, not MLA.
//
// Why: the default form (cuda_attention_mma.cu) keeps S, P and O in shared
// memory and goes through WMMA fragments and four block barriers per 32
// cells, and its blocks take 16 query rows; a 512-token prompt at 32K cells
// ran at 524 tokens/s on the whole Qwen3-Coder-30B-A3B (H200), against 5,796
// at depth 0. Here a block takes 64 query rows (8 tokens of an 8-head group)
// and each of its 4 warps owns 16 of them through the whole chunk: its
// queries sit in registers as mma.sync A fragments, S = Q·Kᵀ and O are
// register accumulators (m16n8k16, f16 inputs, f32 sums), the online
// softmax works on S where it lies (a row's max and sum over the four
// threads that hold it), and P goes straight from S's registers into the
// A fragments of O += P·V. Shared memory holds only the tile's K and V rows
// (64 cells, f16, read with ldmatrix; .trans for V), and a tile costs two
// block barriers. Numerics as the default form: Q scaled, then rounded to
// f16; P as an f16 pair hi + lo (two products) unless MOESERVE_CUDA_MMA_PAIRS=0.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_attention_block.cuh"
#include "backend/cuda/cuda_attention_f16_tiles.cuh"
#include "backend/cuda/cuda_cp_async.cuh"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kFa2Warps = 4;
constexpr int kFa2Threads = 32 * kFa2Warps;
constexpr int kFa2Rows = 16 * kFa2Warps;  // query rows a block: one m16 tile a warp
constexpr int kFa2Cells = 64;             // cells a K/V tile
constexpr int kFa2Pad = 8;                // halves of padding a shared row (ldmatrix's rows on distinct banks)

struct Fa2Args {
    FlashAttention a;
    int group, heads_per_block, head_splits, tokens_per_tile;
    int64_t chunk_len;
    float* part;      // [n_chunks][n_tokens][n_head][dv + 2]: m, l, acc
    bool wide_loads;  // load_tile_f16's 16-byte paths (off with MOESERVE_CUDA_TILE_LOADS=0)
    bool split_p;     // P as an f16 pair hi + lo
    // The pipelined form's staging (fa2p): copy pieces of `piece` bytes, the
    // raw K / V head slices of a cell in k_slice / v_slice bytes, staged at
    // pitches k_pitch / v_pitch.
    int piece, k_slice, v_slice, k_pitch, v_pitch;
};

// Dynamic shared memory (bytes): the f16 K and V tiles, then for the
// pipelined form the identity cell list and two raw staging buffers.
struct Fa2Layout {
    size_t k, v, ident, raw, total;
};

__host__ __device__ inline size_t fa2_align16(size_t n) {
    return (n + 15) / 16 * 16;
}

__host__ __device__ inline Fa2Layout fa2_layout(int d, bool pipelined, int k_pitch, int v_pitch) {
    Fa2Layout l{};
    const size_t tile = sizeof(__half) * kFa2Cells * (d + kFa2Pad);
    size_t at = 0;
    l.k = at, at += tile;
    l.v = at, at += tile;
    l.ident = at, at = fa2_align16(at + (pipelined ? sizeof(int32_t) * kFa2Cells : 0));
    l.raw = at, at += pipelined ? 2 * static_cast<size_t>(kFa2Cells) * (k_pitch + v_pitch) : 0;
    l.total = at;
    return l;
}

// d += a·b for one m16n8k16 tile (A row-major 16x16, B column-major 16x8,
// f16 inputs, f32 accumulators): the fragment layouts of the PTX ISA, with
// g = lane / 4 and q = lane % 4: a0 (row g, cols 2q, 2q+1), a1 (row g+8),
// a2 (row g, cols 2q+8, 2q+9), a3 (row g+8, cols 2q+8..); b0 (rows 2q, 2q+1,
// col g), b1 (rows 2q+8, 2q+9); d0, d1 (row g, cols 2q, 2q+1), d2, d3 (row
// g+8). The lower column (or row) is the lower half of a register.
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 f16 matrices from shared memory: lane i gives the address of row
// i % 8 of matrix i / 8 (16 bytes, 16-byte aligned); r[m] is then, in lane
// (g, q), matrix m's elements (g, 2q) and (g, 2q+1); with TRANS, (2q, g) and
// (2q+1, g).
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half* row) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row));
    if constexpr (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(s)
                     : "memory");
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(s)
                     : "memory");
}

// p's low part, p - f16(p), as a pair of f16 in a register.
__device__ __forceinline__ uint32_t half_pair_low(float p0, float p1) {
    return half_pair(p0 - __half2float(__float2half_rn(p0)), p1 - __half2float(__float2half_rn(p1)));
}

// The raw K and V head slices of the tile at c0 (nc cells) into staging
// buffer `raw` (K rows, then V rows), every piece in flight at once,
// committed as one group.
__device__ __forceinline__ void fa2_issue(const Fa2Args& args, const AttentionBlock& blk, int64_t c0, int nc,
                                          uint8_t* raw) {
    const FlashAttention& a = args.a;
    const int piece = args.piece, k_pieces = args.k_slice / piece, v_pieces = args.v_slice / piece;
    uint8_t* raw_v = raw + static_cast<size_t>(kFa2Cells) * args.k_pitch;
    for (int i = threadIdx.x; i < nc * k_pieces; i += kFa2Threads) {
        const int c = i / k_pieces, u = i % k_pieces;
        const size_t cell = static_cast<size_t>(blk.cells[c0 + c]);
        cp_async(raw + c * args.k_pitch + u * piece, a.k + cell * a.k_row_bytes + blk.k_head_off + u * piece, piece);
    }
    for (int i = threadIdx.x; i < nc * v_pieces; i += kFa2Threads) {
        const int c = i / v_pieces, u = i % v_pieces;
        const size_t cell = static_cast<size_t>(blk.cells[c0 + c]);
        cp_async(raw_v + c * args.v_pitch + u * piece, a.v + cell * a.v_row_bytes + blk.v_head_off + u * piece, piece);
    }
    cp_async_commit();
}

// D: the K and V head size. PIPE (fa2p): the tiles' raw rows staged with
// cp.async in two buffers, the next tile's in flight while the current one
// is converted to f16 and worked on; else each tile read and converted in
// one step. grid: (n_tokens, n_head_kv * head_splits, n_chunks); dynamic
// smem: fa2_layout.
template <int D, bool PIPE>
__global__ void __launch_bounds__(kFa2Threads) attention_fa2_kernel(Fa2Args args) {
    kernel_prologue();
    constexpr int kSteps = D / 16;             // k-steps of Q·Kᵀ (an even number)
    constexpr int kValueTiles = D / 8;         // n-tiles of O (an even number)
    constexpr int kCellTiles = kFa2Cells / 8;  // n-tiles of S
    constexpr int LD = D + kFa2Pad;            // halves a shared row
    static_assert(kSteps % 2 == 0 && kValueTiles % 2 == 0, "fragments are loaded two tiles at a time");
    const FlashAttention& a = args.a;
    const AttentionBlock blk =
        attention_block(a, args.tokens_per_tile, args.head_splits, args.heads_per_block, args.group, args.chunk_len);
    if (!blk.leads) return;
    const int R = blk.nt * blk.nh;  // live query rows r = lt * nh + jh
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, q = lane & 3;

    extern __shared__ __align__(16) unsigned char smem[];
    const Fa2Layout layout = fa2_layout(D, PIPE, args.k_pitch, args.v_pitch);
    __half* const Ks = reinterpret_cast<__half*>(smem + layout.k);
    __half* const Vs = reinterpret_cast<__half*>(smem + layout.v);
    int32_t* const ident = reinterpret_cast<int32_t*>(smem + layout.ident);  // cell c of a staged tile: row c
    uint8_t* const raw = smem + layout.raw;
    const size_t raw_bytes = static_cast<size_t>(kFa2Cells) * (args.k_pitch + args.v_pitch);
    if constexpr (PIPE) {
        for (int c = threadIdx.x; c < kFa2Cells; c += kFa2Threads) ident[c] = c;
    }

    // This thread's two rows (g and g + 8 of the warp's 16): token, head, and
    // how many of the chunk's cells they see (none for a row past R).
    int64_t tok[2] = {0, 0};
    int head[2] = {0, 0};
    int64_t lim[2] = {0, 0};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = 16 * warp + g + 8 * i;
        if (r >= R) continue;
        tok[i] = blk.t0 + r / blk.nh;
        head[i] = blk.kvh * args.group + blk.head0 + r % blk.nh;
        lim[i] = min(blk.c_end, static_cast<int64_t>(a.cells.n_cells[tok[i]]));
    }

    // Q times the scale, rounded to f16, as A fragments (zeros past R).
    uint32_t qa[kSteps][4];
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int i = e & 1, col = 16 * ks + 2 * q + ((e & 2) ? 8 : 0);
            float q0 = 0.0f, q1 = 0.0f;
            if (16 * warp + g + 8 * i < R) {
                const float* src = a.q + (tok[i] * a.n_head + head[i]) * static_cast<int64_t>(a.dk) + col;
                q0 = src[0] * a.scale, q1 = src[1] * a.scale;
            }
            qa[ks][e] = half_pair(q0, q1);
        }

    float o[kValueTiles][4];
#pragma unroll
    for (int t = 0; t < kValueTiles; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    const int mi = lane >> 3, mr = lane & 7;  // the ldmatrix row this lane addresses
    const auto tile_cells = [&](int64_t c) {
        return static_cast<int>(min(static_cast<int64_t>(kFa2Cells), blk.c_end - c));
    };
    if (PIPE && blk.c_begin < blk.c_end) fa2_issue(args, blk, blk.c_begin, tile_cells(blk.c_begin), raw);
    int buf = 0;
    for (int64_t c0 = blk.c_begin; c0 < blk.c_end; c0 += kFa2Cells, buf ^= PIPE ? 1 : 0) {
        const int nc = tile_cells(c0);
        __syncthreads();  // every warp is done with the previous tile (and its staging buffer)
        if constexpr (PIPE) {
            const int64_t next = c0 + kFa2Cells;
            if (next < blk.c_end) {
                fa2_issue(args, blk, next, tile_cells(next), raw + (buf ^ 1) * raw_bytes);
                cp_async_wait<1>();  // this tile's group has landed; the next one's may still fly
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            const uint8_t* staged = raw + buf * raw_bytes;
            load_tile_f16<kFa2Cells>(staged, args.k_pitch, 0, a.type_k, D, ident, nc, Ks, LD, args.wide_loads);
            load_tile_f16<kFa2Cells>(staged + static_cast<size_t>(kFa2Cells) * args.k_pitch, args.v_pitch, 0, a.type_v,
                                     D, ident, nc, Vs, LD, args.wide_loads);
        } else {
            load_tile_f16<kFa2Cells>(a.k, a.k_row_bytes, blk.k_head_off, a.type_k, D, blk.cells + c0, nc, Ks, LD,
                                     args.wide_loads);
            load_tile_f16<kFa2Cells>(a.v, a.v_row_bytes, blk.v_head_off, a.type_v, D, blk.cells + c0, nc, Vs, LD,
                                     args.wide_loads);
        }
        __syncthreads();
        if (16 * warp >= R) continue;  // no live rows in this warp (a decoded token's 8 heads: 3 of 4 warps)

        // S = Q·Kᵀ: n-tile j is cells 8j..8j+7; matrix mi of a load is their
        // values 16ks + 8mi .., so one load gives two k-steps' B fragments.
        float s[kCellTiles][4];
#pragma unroll
        for (int j = 0; j < kCellTiles; ++j) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < kSteps; ks += 2) {
                uint32_t b[4];
                ldmatrix_x4<false>(b, Ks + (8 * j + mr) * LD + 16 * ks + 8 * mi);
                mma_m16n8k16(s[j], qa[ks], b[0], b[1]);
                mma_m16n8k16(s[j], qa[ks + 1], b[2], b[3]);
            }
        }

        // Online softmax per row (i = 0: row g in s[.][0..1], i = 1: row g + 8
        // in s[.][2..3]), its max and sum over the four threads of the row.
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mt = -INFINITY;
#pragma unroll
            for (int j = 0; j < kCellTiles; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int64_t cell = c0 + 8 * j + 2 * q + e;
                    float& v = s[j][2 * i + e];
                    if (cell >= lim[i]) v = -INFINITY;
                    mt = fmaxf(mt, v);
                }
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
            const float m_new = fmaxf(m[i], mt);
            float corr = 1.0f, sum = 0.0f;
            if (m_new != -INFINITY) corr = __expf(m[i] - m_new);  // 0 while m = -inf
#pragma unroll
            for (int j = 0; j < kCellTiles; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float& v = s[j][2 * i + e];
                    v = m_new != -INFINITY ? __expf(v - m_new) : 0.0f;  // 0 for a masked cell
                    sum += v;
                }
            l[i] = l[i] * corr + sum;  // this thread's columns; the row's four are summed at the end
            m[i] = m_new;
#pragma unroll
            for (int t = 0; t < kValueTiles; ++t) o[t][2 * i] *= corr, o[t][2 * i + 1] *= corr;
        }

        // O += P·V: k-step kk is cells 16kk..16kk+15 (S's n-tiles 2kk and
        // 2kk+1 as A fragments); matrix mi of a transposed load is cells
        // 16kk + 8(mi & 1) .. of values 8t + 8(mi >> 1) .., two n-tiles' B fragments.
#pragma unroll
        for (int kk = 0; kk < kFa2Cells / 16; ++kk) {
            const uint32_t pa[4] = {half_pair(s[2 * kk][0], s[2 * kk][1]), half_pair(s[2 * kk][2], s[2 * kk][3]),
                                    half_pair(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    half_pair(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            uint32_t pl[4] = {0, 0, 0, 0};
            if (args.split_p) {
                pl[0] = half_pair_low(s[2 * kk][0], s[2 * kk][1]);
                pl[1] = half_pair_low(s[2 * kk][2], s[2 * kk][3]);
                pl[2] = half_pair_low(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pl[3] = half_pair_low(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
#pragma unroll
            for (int t = 0; t < kValueTiles; t += 2) {
                uint32_t b[4];
                ldmatrix_x4<true>(b, Vs + (16 * kk + 8 * (mi & 1) + mr) * LD + 8 * t + 8 * (mi >> 1));
                mma_m16n8k16(o[t], pa, b[0], b[1]);
                mma_m16n8k16(o[t + 1], pa, b[2], b[3]);
                if (args.split_p) {
                    mma_m16n8k16(o[t], pl, b[0], b[1]);
                    mma_m16n8k16(o[t + 1], pl, b[2], b[3]);
                }
            }
        }
    }

    // The chunk's partial state per row: (max, sum over the row's four
    // threads, the unnormalized O), the layout the combine reads.
    const int64_t chunk_base = static_cast<int64_t>(blockIdx.z) * a.n_tokens;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        float li = l[i];
        li += __shfl_xor_sync(0xffffffffu, li, 1);
        li += __shfl_xor_sync(0xffffffffu, li, 2);
        if (16 * warp + g + 8 * i >= R) continue;
        float* p = args.part + ((chunk_base + tok[i]) * a.n_head + head[i]) * static_cast<int64_t>(D + 2);
        if (q == 0) p[0] = m[i], p[1] = li;
#pragma unroll
        for (int t = 0; t < kValueTiles; ++t) {
            p[2 + 8 * t + 2 * q] = o[t][2 * i];
            p[2 + 8 * t + 2 * q + 1] = o[t][2 * i + 1];
        }
    }
}

std::atomic<int64_t> g_fa2_launches{0};
std::atomic<int64_t> g_fa2p_launches{0};

template <int D, bool PIPE>
void launch_fa2(Context& ctx, const Fa2Args& args, dim3 grid, size_t smem) {
    raise_dynamic_smem_limit(reinterpret_cast<const void*>(attention_fa2_kernel<D, PIPE>), smem);
    launch_kernel(attention_fa2_kernel<D, PIPE>, grid, kFa2Threads, smem, ctx.stream, args);
}

}  // namespace

bool flash_attention_fa2(Context& ctx, const FlashAttention& a, bool pipelined) {
    if (a.v_in_k || a.dk != a.dv || (a.dk != 64 && a.dk != 128)) return false;
    Fa2Args args{};
    if (pipelined) {
        args.k_slice = static_cast<int>(kv_bytes(a.type_k, a.dk));
        args.v_slice = static_cast<int>(kv_bytes(a.type_v, a.dv));
        args.piece = attention_copy_piece(a, args.k_slice, args.v_slice);
        if (args.piece == 0) return false;
        args.k_pitch = static_cast<int>(fa2_align16(args.k_slice));  // load_tile_f16's 16-byte paths need it
        args.v_pitch = static_cast<int>(fa2_align16(args.v_slice));
    }
    const size_t smem = fa2_layout(a.dk, pipelined, args.k_pitch, args.v_pitch).total;
    if (ctx.shared_mem_per_block_optin > 0 && smem > ctx.shared_mem_per_block_optin) return false;
    args.a = a;
    args.group = a.n_head / a.n_head_kv;
    args.head_splits = (args.group + kFa2Rows - 1) / kFa2Rows;
    args.heads_per_block = (args.group + args.head_splits - 1) / args.head_splits;
    args.tokens_per_tile = std::max(1, kFa2Rows / args.heads_per_block);
    args.wide_loads = attention_wide_tile_loads();
    args.split_p = attention_f16_pairs();
    // Blocks that have work: a run of tokens sharing a list fills tokens_per_tile a block, a decode
    // batch's tokens take one each.
    const int64_t run =
        std::clamp<int64_t>(a.cells.max_run > 0 ? a.cells.max_run : a.n_tokens, 1, args.tokens_per_tile);
    const int64_t est_blocks = (a.n_tokens + run - 1) / run * static_cast<int64_t>(a.n_head_kv) * args.head_splits;
    const AttentionChunks chunks = plan_attention_chunks(ctx, a, est_blocks, kFa2Cells);
    args.chunk_len = chunks.chunk_len;
    args.part = chunks.part;
    const dim3 grid(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(a.n_head_kv * args.head_splits),
                    static_cast<unsigned>(chunks.n_chunks));
    if (a.dk == 128)
        pipelined ? launch_fa2<128, true>(ctx, args, grid, smem) : launch_fa2<128, false>(ctx, args, grid, smem);
    else
        pipelined ? launch_fa2<64, true>(ctx, args, grid, smem) : launch_fa2<64, false>(ctx, args, grid, smem);
    MOESERVE_CUDA_CHECK_LAUNCH();
    combine_attention_chunks(ctx, a, chunks);
    (pipelined ? g_fa2p_launches : g_fa2_launches).fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t fa2_attention_launches() {
    return g_fa2_launches.load(std::memory_order_relaxed);
}

int64_t fa2p_attention_launches() {
    return g_fa2p_launches.load(std::memory_order_relaxed);
}

}  // namespace moeserve::cuda
