// Writing the KV cache and attending over it on the GPU.
//
// store_kv: one block per token row of K or of V (both in one launch); the
// row is rotated (Hadamard, as the CPU does for quantized caches) in shared
// memory, then each thread encodes whole 32-value blocks with the CPU's
// rounding rules, so the cache bytes are identical to the CPU backend's.
//
// Queries meet a quantized K as llama.cpp's CPU has them: rounded to K's dot
// partner type (q8_0 or q8_1) first (round_queries); a float K meets them as
// they are.
//
// attention: flash-decoding in one pass with an online softmax and no score
// matrix in memory. A block works on one "leader" token's run of up to
// kTokensPerTile consecutive tokens that share a cell list (a prompt chunk;
// a decode token is a run of one), one KV head with its group of query heads
// (all of them, or a slice when the head dims are large), and one chunk of
// the cells. It loads a tile of kTileCells K rows (and V rows), converted to
// f32 in shared memory once for all its query rows, scores them, updates each
// row's running (max, sum) and its accumulator (in registers), and writes the
// chunk's partial state; a combine kernel merges the chunks. So each K/V row
// is read once per (run, KV head slice), and a single decoded token over a
// million cells still spreads over every SM.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_attention_block.cuh"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_q8_rounding.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTileCells = 32;     // cells per K/V tile (one per lane in the softmax step)
constexpr int kAccPerThread = 32;  // accumulator floats per thread: rows * dv <= kThreads * kAccPerThread
constexpr int kMaxTokensPerTile = 16;
constexpr int kRowsPerThread = 4;                // query rows a thread scores per K value read
constexpr int kMinChunkCells = 256;              // smallest cell chunk worth its own partial state
constexpr int64_t kMaxPartialFloats = 16 << 20;  // 64 MiB of partial states at most

float hadamard_scale(int n) {
    return 1.0f / std::sqrt(static_cast<float>(n));
}

// ---- store_kv -------------------------------------------------------------

// One cache side's rows to store: n values of `type` per row, rotated in
// chunks of rot_chunk first (0: not).
struct StoreSide {
    uint8_t* dst = nullptr;
    size_t row_bytes = 0;
    GgmlType type = GgmlType::F16;
    int n = 0;
    int rot_chunk = 0;
    float rot_scale = 1.0f;
    const float* src = nullptr;  // [n_tokens, n]
};

// grid: (n_tokens, sides): y = 0 stores K, y = 1 V, in one launch.
// dynamic smem: the wider row's floats.
__global__ void store_rows_kernel(StoreSide k_side, StoreSide v_side, const int32_t* cells) {
    kernel_prologue();
    extern __shared__ float row[];
    const StoreSide& side = blockIdx.y == 0 ? k_side : v_side;
    const int64_t t = blockIdx.x;
    const int n = side.n;
    const float* x = side.src + t * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) row[i] = x[i];
    if (side.rot_chunk)
        block_hadamard_chunks(row, n / side.rot_chunk * side.rot_chunk, side.rot_chunk, side.rot_scale);
    else
        __syncthreads();
    uint8_t* out = side.dst + static_cast<size_t>(cells[t]) * side.row_bytes;
    switch (side.type) {
        case GgmlType::F32:
            for (int i = threadIdx.x; i < n; i += blockDim.x) reinterpret_cast<float*>(out)[i] = row[i];
            return;
        case GgmlType::F16:
            for (int i = threadIdx.x; i < n; i += blockDim.x)
                reinterpret_cast<uint16_t*>(out)[i] = f32_to_half_bits(row[i]);
            return;
        case GgmlType::BF16:
            for (int i = threadIdx.x; i < n; i += blockDim.x)
                reinterpret_cast<uint16_t*>(out)[i] = f32_to_bf16_bits(row[i]);
            return;
        default: {
            const size_t block_bytes = kv_bytes(side.type, 32);
            for (int b = threadIdx.x; b < n / 32; b += blockDim.x)
                kv_encode_block(side.type, row + 32 * b, out + b * block_bytes);
            return;
        }
    }
}

StoreSide store_side(uint8_t* dst, size_t row_bytes, GgmlType type, int64_t n, int rot_chunk, const float* src) {
    if (!kv_is_float_type(type) && n % 32 != 0)
        throw std::invalid_argument("store_kv: a quantized cache row needs a multiple of 32 values, got " +
                                    std::to_string(n));
    if (kv_bytes(type, n) == 0 || kv_bytes(type, n) > row_bytes)
        throw std::invalid_argument("store_kv: cache type or row size does not match the layer");
    return {dst, row_bytes, type, static_cast<int>(n), rot_chunk, rot_chunk ? hadamard_scale(rot_chunk) : 1.0f, src};
}

// ---- attention --------------------------------------------------------------

// x := H x per chunk for each row of width n (grid: rows; whole warps);
// src may equal dst. ROUND: the rotated row then rounded to q8_0 / q8_1 as
// the rounding kernel rounds it (n a multiple of 32), each warp a 256-value
// span of it, before it is stored.
template <bool ROUND>
__global__ void rotate_rows_kernel(const float* src, float* dst, int n, int chunk, float scale) {
    kernel_prologue();
    extern __shared__ float row[];
    const int64_t r = blockIdx.x;
    for (int i = threadIdx.x; i < n; i += blockDim.x) row[i] = src[r * n + i];
    block_hadamard_chunks(row, n / chunk * chunk, chunk, scale);  // ends with a barrier
    if constexpr (!ROUND) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) dst[r * n + i] = row[i];
    } else {
        const int lane = threadIdx.x & 31;
        for (int span = threadIdx.x / 32; span * kQ8Span < n; span += blockDim.x / 32) {
            const int first = span * kQ8Span + lane * kQ8ValuesPerLane;
            float v[kQ8ValuesPerLane];
            int q[kQ8ValuesPerLane];
            float d;
            for (int j = 0; j < kQ8ValuesPerLane; ++j) v[j] = first + j < n ? row[first + j] : 0.0f;
            round_q8_0(v, q, d);  // blocks past n are all zero and not stored
            for (int j = 0; j < kQ8ValuesPerLane; ++j)
                if (first + j < n) dst[r * n + first + j] = v[j];
        }
    }
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

struct KernelArgs {
    FlashAttention a;
    int group;            // query heads per KV head
    int heads_per_block;  // HB: a slice of the group
    int head_splits;      // slices per group
    int tokens_per_tile;  // TQ
    int64_t chunk_len;    // cells per chunk (a multiple of kTileCells)
    float* part;          // [n_chunks][n_tokens][n_head][dv + 2]: m, l, acc
};

// Converts n_rows cached rows (row c: cell cells[c]) of one head into
// dst[c * ld + i], i < n, n values of `type` per row.
__device__ inline void load_tile(const uint8_t* base, size_t row_bytes, size_t head_offset, GgmlType type, int n,
                                 const int32_t* cells, int n_rows, float* dst, int ld) {
    const int units = (n + 31) / 32;
    for (int item = threadIdx.x; item < n_rows * units; item += blockDim.x) {
        const int c = item / units, u = item % units;
        const uint8_t* row = base + static_cast<size_t>(cells[c]) * row_bytes + head_offset;
        const int len = min(32, n - 32 * u);
        float v[32];
        kv_decode_unit(type, row, u, len, v);
        float* o = dst + c * ld + 32 * u;
        for (int j = 0; j < len; ++j) o[j] = v[j];
    }
}

// grid: (n_tokens, n_head_kv * head_splits, n_chunks); see the file comment.
__global__ void __launch_bounds__(kThreads) attention_chunk_kernel(KernelArgs args) {
    kernel_prologue();
    const FlashAttention& a = args.a;
    const AttentionBlock blk =
        attention_block(a, args.tokens_per_tile, args.head_splits, args.heads_per_block, args.group, args.chunk_len);
    if (!blk.leads) return;
    const int64_t t0 = blk.t0;
    const int nt = blk.nt, kvh = blk.kvh, head0 = blk.head0, nh = blk.nh;
    const int R = nt * nh;  // query rows: r = lt * nh + jh
    const int dk = a.dk, dv = a.dv;
    const int ldk = dk + 1, ldv = dv + 1;  // odd strides: conflict-free column reads

    extern __shared__ float smem[];
    const int R_max = args.tokens_per_tile * args.heads_per_block;
    float* Qs = smem;                                    // [R_max][dk]
    float* Ks = Qs + R_max * dk;                         // [kTileCells][ldk]
    float* Vs = Ks + kTileCells * ldk;                   // [kTileCells][ldv] (unused when V is in K)
    float* Ps = Vs + (a.v_in_k ? 0 : kTileCells * ldv);  // [R_max][kTileCells]
    float* m_s = Ps + R_max * kTileCells;
    float* l_s = m_s + R_max;
    float* corr_s = l_s + R_max;
    int* ncell_s = reinterpret_cast<int*>(corr_s + R_max);
    const float* Vt = a.v_in_k ? Ks : Vs;
    const int ldvt = a.v_in_k ? ldk : ldv;

    for (int i = threadIdx.x; i < R * dk; i += blockDim.x) {
        const int r = i / dk, d = i % dk;
        const int64_t t = t0 + r / nh;
        const int h = kvh * args.group + head0 + r % nh;
        Qs[i] = a.q[(t * a.n_head + h) * dk + d];
    }
    for (int r = threadIdx.x; r < R; r += blockDim.x) {
        m_s[r] = -INFINITY;
        l_s[r] = 0.0f;
        ncell_s[r] = a.cells.n_cells[t0 + r / nh];
    }
    float acc[kAccPerThread];
#pragma unroll
    for (int k = 0; k < kAccPerThread; ++k) acc[k] = 0.0f;

    const int32_t* cells = blk.cells;
    const int64_t c_begin = blk.c_begin, c_end = blk.c_end;
    const size_t k_head_off = blk.k_head_off, v_head_off = blk.v_head_off;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    for (int64_t c0 = c_begin; c0 < c_end; c0 += kTileCells) {
        const int nc = static_cast<int>(min(static_cast<int64_t>(kTileCells), c_end - c0));
        __syncthreads();  // the previous tile's Ks/Vs/Ps are consumed (and Qs/stats written)
        load_tile(a.k, a.k_row_bytes, k_head_off, a.type_k, dk, cells + c0, nc, Ks, ldk);
        if (!a.v_in_k) load_tile(a.v, a.v_row_bytes, v_head_off, a.type_v, dv, cells + c0, nc, Vs, ldv);
        __syncthreads();
        // Scores, -inf past each row's causal end. Lane c of a warp scores
        // cell c for kRowsPerThread consecutive rows at once: each K value
        // read from shared memory serves all of them (the Q reads are
        // broadcasts), where one row per thread read two values per FMA and
        // made shared memory the limit. Each score still sums over d in
        // order, so the values are those of one row at a time.
        {
            const int c = threadIdx.x % kTileCells;
            const float* kr = Ks + c * ldk;
            const int n_groups = (R + kRowsPerThread - 1) / kRowsPerThread;
            for (int g = threadIdx.x / kTileCells; g < n_groups; g += kThreads / kTileCells) {
                const int r0 = g * kRowsPerThread;
                const float* qr[kRowsPerThread];
                float dot[kRowsPerThread];
#pragma unroll
                for (int i = 0; i < kRowsPerThread; ++i) {
                    qr[i] = Qs + min(r0 + i, R - 1) * dk;  // past the last row: a real row, result unused
                    dot[i] = 0.0f;
                }
#pragma unroll 4
                for (int d = 0; d < dk; ++d) {
                    const float kv = kr[d];
#pragma unroll
                    for (int i = 0; i < kRowsPerThread; ++i) dot[i] += qr[i][d] * kv;
                }
#pragma unroll
                for (int i = 0; i < kRowsPerThread; ++i) {
                    const int r = r0 + i;
                    if (r < R) Ps[r * kTileCells + c] = c < nc && c0 + c < ncell_s[r] ? dot[i] * a.scale : -INFINITY;
                }
            }
        }
        __syncthreads();
        // Online softmax, one warp per row, one lane per cell.
        for (int r = warp; r < R; r += kWarps) {
            const float s = Ps[r * kTileCells + lane];
            const float m_old = m_s[r];
            const float m_new = fmaxf(m_old, warp_max(s));
            float p = 0.0f, corr = 1.0f;
            if (m_new != -INFINITY) {
                p = __expf(s - m_new);  // 0 for s = -inf
                corr = __expf(m_old - m_new);
            }
            const float sum = warp_sum(p);
            Ps[r * kTileCells + lane] = p;
            if (lane == 0) {
                l_s[r] = l_s[r] * corr + sum;
                m_s[r] = m_new;
                corr_s[r] = corr;
            }
        }
        __syncthreads();
        // acc[r][j] = acc[r][j] * corr[r] + Σ_c p[r][c] V[c][j], cells in
        // order for every accumulator. When dv divides the block size all of
        // a thread's accumulators are in one column j, so the cells go
        // outermost and each V value is read once for all of them.
#pragma unroll
        for (int k = 0; k < kAccPerThread; ++k) {
            const int e = threadIdx.x + k * kThreads;
            if (e < R * dv) acc[k] *= corr_s[e / dv];
        }
        if (kThreads % dv == 0) {
            const int j = threadIdx.x % dv;
            for (int c = 0; c < nc; ++c) {
                const float vv = Vt[c * ldvt + j];
#pragma unroll
                for (int k = 0; k < kAccPerThread; ++k) {
                    const int e = threadIdx.x + k * kThreads;
                    if (e < R * dv) acc[k] += Ps[(e / dv) * kTileCells + c] * vv;
                }
            }
        } else {
#pragma unroll
            for (int k = 0; k < kAccPerThread; ++k) {
                const int e = threadIdx.x + k * kThreads;
                if (e < R * dv) {
                    const float* pr = Ps + (e / dv) * kTileCells;
                    const int j = e % dv;
                    float v = acc[k];
                    for (int c = 0; c < nc; ++c) v += pr[c] * Vt[c * ldvt + j];
                    acc[k] = v;
                }
            }
        }
    }
    __syncthreads();
    // The chunk's partial state per row.
    const int64_t chunk_base = static_cast<int64_t>(blockIdx.z) * a.n_tokens;
    auto part_row = [&](int r) {
        const int64_t t = t0 + r / nh;
        const int h = kvh * args.group + head0 + r % nh;
        return args.part + ((chunk_base + t) * a.n_head + h) * static_cast<int64_t>(dv + 2);
    };
#pragma unroll
    for (int k = 0; k < kAccPerThread; ++k) {
        const int e = threadIdx.x + k * kThreads;
        if (e < R * dv) part_row(e / dv)[2 + e % dv] = acc[k];
    }
    for (int r = threadIdx.x; r < R; r += blockDim.x) {
        float* p = part_row(r);
        p[0] = m_s[r];
        p[1] = l_s[r];
    }
}

constexpr int kCombineThreads = 512;

// max (MAX) or Σ over the block; every thread gets the result. scratch: 32 floats.
template <bool MAX>
__device__ float combine_block_reduce(float v, float* scratch) {
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    __syncthreads();  // scratch may still be read from a previous call
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
    __syncthreads();
    float r = scratch[0];
    for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) r = MAX ? fmaxf(r, scratch[w]) : r + scratch[w];
    return r;
}

// out[t][h] = Σ_z acc_z e^(m_z - M) / Σ_z l_z e^(m_z - M), then the V
// un-rotation. grid: n_tokens * n_head; kCombineThreads threads; dynamic
// smem: combine_smem_floats. A decode step at depth has a few rows and
// hundreds of chunks, so the chunks are spread over the threads (each chunk's
// weight once, in shared memory; groups of threads over every G-th chunk of
// each output value) instead of one thread walking all of them in turn.
__global__ void combine_kernel(const float* part, int n_chunks, int64_t n_rows, int dv, int v_rot_chunk,
                               float rot_scale, float* out) {
    kernel_prologue();
    extern __shared__ float sm[];
    __shared__ float scratch[32];
    float* wz = sm;              // [n_chunks]: e^(m_z - M), 0 for an empty chunk
    float* row = wz + n_chunks;  // [dv]
    float* red = row + dv;       // [G][dv]: the groups' sums
    const int64_t i = blockIdx.x;
    const int64_t stride = n_rows * (dv + 2);
    const float* base = part + i * (dv + 2);
    float m = -INFINITY;
    for (int z = threadIdx.x; z < n_chunks; z += blockDim.x) m = fmaxf(m, base[z * stride]);
    const float M = combine_block_reduce<true>(m, scratch);
    float l = 0.0f;
    for (int z = threadIdx.x; z < n_chunks; z += blockDim.x) {
        const float mz = base[z * stride];
        const float w = mz != -INFINITY ? __expf(mz - M) : 0.0f;
        wz[z] = w;
        l += base[z * stride + 1] * w;
    }
    const float L = combine_block_reduce<false>(l, scratch);  // its barriers also publish wz
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    const bool wide = dv >= static_cast<int>(blockDim.x);
    const int G = wide ? 1 : static_cast<int>(blockDim.x) / dv;
    const int g = wide ? 0 : static_cast<int>(threadIdx.x) / dv;
    const int jstep = wide ? static_cast<int>(blockDim.x) : dv;
    if (g < G) {
        for (int j = wide ? threadIdx.x : threadIdx.x % dv; j < dv; j += jstep) {
            float o = 0.0f;
#pragma unroll 8
            for (int z = g; z < n_chunks; z += G) {
                const float w = wz[z];
                if (w != 0.0f) o += base[z * stride + 2 + j] * w;
            }
            red[g * dv + j] = o;
        }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < dv; j += blockDim.x) {
        float o = red[j];
        for (int k = 1; k < G; ++k) o += red[k * dv + j];
        row[j] = o * inv;
    }
    if (v_rot_chunk)
        block_hadamard_chunks(row, dv / v_rot_chunk * v_rot_chunk, v_rot_chunk, rot_scale);
    else
        __syncthreads();
    for (int j = threadIdx.x; j < dv; j += blockDim.x) out[i * dv + j] = row[j];
}

// combine_kernel's dynamic shared memory in floats.
size_t combine_smem_floats(int64_t n_chunks, int dv) {
    const int groups = dv >= kCombineThreads ? 1 : kCombineThreads / dv;
    return static_cast<size_t>(n_chunks) + static_cast<size_t>(dv) * (1 + groups);
}

}  // namespace

AttentionKernel requested_attention_kernel() {
    const char* v = std::getenv("MOESERVE_CUDA_ATTENTION");
    if (v && std::strcmp(v, "f32") == 0) return AttentionKernel::f32;
    if (v && std::strcmp(v, "vec") == 0) return AttentionKernel::vec;
    if (v && std::strcmp(v, "lane") == 0) return AttentionKernel::lane;
    if (v && std::strcmp(v, "tile") == 0) return AttentionKernel::tile;
    if (v && std::strcmp(v, "tile2") == 0) return AttentionKernel::tile2;
    if (v && std::strcmp(v, "fa2") == 0) return AttentionKernel::fa2;
    if (v && std::strcmp(v, "fa2p") == 0) return AttentionKernel::fa2p;
    if (v && std::strcmp(v, "mma") == 0) return AttentionKernel::mma;
    return AttentionKernel::automatic;
}

const float* round_queries(Context& ctx, GgmlType type_k, const float* q, int64_t n_rows, int width,
                           bool q_is_scratch) {
    if (kv_is_float_type(type_k)) return q;
    float* rounded = q_is_scratch ? const_cast<float*>(q) : ctx.scratch->take_n<float>(n_rows * width);
    round_rows_f32(ctx, activation_rounding(type_k), q, width, 0, n_rows, width, 1, rounded);
    return rounded;
}

const float* rotate_queries(Context& ctx, GgmlType type_k, const float* q, int64_t n_rows, int width, int chunk,
                            bool fused) {
    float* qr = ctx.scratch->take_n<float>(static_cast<size_t>(n_rows) * width);
    const GgmlType act = activation_rounding(type_k);
    const bool round_in_launch =
        fused && !kv_is_float_type(type_k) && (act == GgmlType::Q8_0 || act == GgmlType::Q8_1) && width % 32 == 0;
    const dim3 grid(static_cast<unsigned>(n_rows));
    const size_t smem = static_cast<size_t>(width) * sizeof(float);
    if (round_in_launch)
        launch_kernel(rotate_rows_kernel<true>, grid, 128, smem, ctx.stream, q, qr, width, chunk,
                      hadamard_scale(chunk));
    else
        launch_kernel(rotate_rows_kernel<false>, grid, 128, smem, ctx.stream, q, qr, width, chunk,
                      hadamard_scale(chunk));
    MOESERVE_CUDA_CHECK_LAUNCH();
    return round_in_launch ? qr : round_queries(ctx, type_k, qr, n_rows, width, true);
}

void flash_attention(Context& ctx, const FlashAttention& a) {
    if (a.n_tokens <= 0) return;
    if (a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0)
        throw std::invalid_argument("attention: n_head " + std::to_string(a.n_head) +
                                    " is not a multiple of n_head_kv " + std::to_string(a.n_head_kv));
    if (a.dk <= 0 || a.dv <= 0 || a.dv > kThreads * kAccPerThread)
        throw std::invalid_argument("attention: unsupported head sizes " + std::to_string(a.dk) + "/" +
                                    std::to_string(a.dv));
    for (auto [type, d] : {std::pair{a.type_k, a.dk}, std::pair{a.type_v, a.dv}})
        if (kv_bytes(type, 32) == 0 || (!kv_is_float_type(type) && d % 32 != 0))
            throw std::invalid_argument("attention: cache type does not fit head size " + std::to_string(d));

    const AttentionKernel kernel = requested_attention_kernel();
    if (kernel == AttentionKernel::vec && flash_attention_vec(ctx, a)) return;
    if (kernel == AttentionKernel::lane && flash_attention_lane(ctx, a)) return;
    if (kernel == AttentionKernel::tile && flash_attention_tile(ctx, a, false)) return;
    if (kernel == AttentionKernel::tile2 && flash_attention_tile(ctx, a, true)) return;
    if (kernel == AttentionKernel::fa2 && flash_attention_fa2(ctx, a, false)) return;
    if (kernel == AttentionKernel::fa2p && flash_attention_fa2(ctx, a, true)) return;
    // By default MLA over a quantized latent cache takes the f32 kernel: the
    // tensor cores would see its values rounded to f16 (d * q does not fit
    // f16's 11 bits), where the CPU scores them exactly as llama.cpp does, and
    // GLM-4.7-Flash's logits move by more than the goldens allow with errors
    // of that size (its queries alone rounded to f16: 2.3e-3 in mean KL).
    const bool mla_quantized = a.v_in_k && !kv_is_float_type(a.type_k);
    // (the opt-in forms fall back here as the automatic choice does.)
    const bool mma = kernel == AttentionKernel::mma || (kernel != AttentionKernel::f32 && !mla_quantized);
    if (mma && flash_attention_mma(ctx, a)) return;

    KernelArgs args{};
    args.a = a;
    args.group = a.n_head / a.n_head_kv;
    const int rows_max = kThreads * kAccPerThread / a.dv;
    args.head_splits = (args.group + rows_max - 1) / rows_max;
    args.heads_per_block = (args.group + args.head_splits - 1) / args.head_splits;
    args.tokens_per_tile = std::clamp(rows_max / args.heads_per_block, 1, kMaxTokensPerTile);

    const int64_t est_blocks = (a.n_tokens + args.tokens_per_tile - 1) / args.tokens_per_tile *
                               static_cast<int64_t>(a.n_head_kv) * args.head_splits;
    const AttentionChunks chunks = plan_attention_chunks(ctx, a, est_blocks, kTileCells);
    const int64_t n_chunks = chunks.n_chunks;
    args.chunk_len = chunks.chunk_len;
    args.part = chunks.part;

    const int R_max = args.tokens_per_tile * args.heads_per_block;
    const size_t smem_floats = static_cast<size_t>(R_max) * a.dk + kTileCells * (a.dk + 1) +
                               (a.v_in_k ? 0 : kTileCells * (a.dv + 1)) + static_cast<size_t>(R_max) * kTileCells +
                               4 * static_cast<size_t>(R_max);
    const size_t smem = smem_floats * sizeof(float);
    if (smem > ctx.shared_mem_per_block_optin && ctx.shared_mem_per_block_optin > 0)
        throw std::invalid_argument("attention: head sizes " + std::to_string(a.dk) + "/" + std::to_string(a.dv) +
                                    " need " + std::to_string(smem) + " bytes of shared memory per block");
    raise_dynamic_smem_limit(reinterpret_cast<const void*>(attention_chunk_kernel), smem);
    const dim3 grid(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(a.n_head_kv * args.head_splits),
                    static_cast<unsigned>(n_chunks));
    launch_kernel(attention_chunk_kernel, grid, kThreads, smem, ctx.stream, args);
    MOESERVE_CUDA_CHECK_LAUNCH();

    combine_attention_chunks(ctx, a, chunks);
}

namespace {

// A positive integer from the environment, or `otherwise` (read at every
// call, so that a benchmark can sweep it).
int64_t env_positive(const char* name, int64_t otherwise) {
    const char* v = std::getenv(name);
    if (!v || !*v) return otherwise;
    char* end = nullptr;
    const long long n = std::strtoll(v, &end, 10);
    return end && *end == '\0' && n > 0 ? n : otherwise;
}

}  // namespace

AttentionChunks plan_attention_chunks(Context& ctx, const FlashAttention& a, int64_t est_blocks, int tile_cells) {
    // Chunks: enough blocks to fill the GPU several times over, each chunk
    // at least kMinChunkCells long, partial states within kMaxPartialFloats.
    // MOESERVE_CUDA_ATTENTION_BLOCKS_PER_SM and MOESERVE_CUDA_ATTENTION_MIN_CHUNK
    // override the two (for cuda_attention_bench's sweeps).
    const int64_t max_cells = std::max<int32_t>(a.cells.max_cells, 0);
    const int64_t per_sm = env_positive("MOESERVE_CUDA_ATTENTION_BLOCKS_PER_SM", 8);
    const int64_t min_chunk = env_positive("MOESERVE_CUDA_ATTENTION_MIN_CHUNK", kMinChunkCells);
    const int64_t target = per_sm * static_cast<int64_t>(std::max(ctx.sm_count, 1));
    const int64_t per_chunk_floats = a.n_tokens * a.n_head * static_cast<int64_t>(a.dv + 2);
    int64_t n_chunks = std::max<int64_t>(1, (target + est_blocks - 1) / est_blocks);
    n_chunks = std::min(n_chunks, std::max<int64_t>(1, max_cells / min_chunk));
    n_chunks = std::min(n_chunks, std::max<int64_t>(1, kMaxPartialFloats / per_chunk_floats));
    n_chunks = std::min<int64_t>(n_chunks, 65535);
    int64_t chunk_len = (max_cells + n_chunks - 1) / n_chunks;
    chunk_len = std::max<int64_t>(tile_cells, (chunk_len + tile_cells - 1) / tile_cells * tile_cells);
    n_chunks = std::max<int64_t>(1, (max_cells + chunk_len - 1) / chunk_len);
    AttentionChunks c;
    c.n_chunks = n_chunks;
    c.chunk_len = chunk_len;
    c.part = ctx.scratch->take_n<float>(static_cast<size_t>(n_chunks * per_chunk_floats));
    return c;
}

void combine_attention_chunks(Context& ctx, const FlashAttention& a, const AttentionChunks& chunks) {
    const int64_t n_rows = a.n_tokens * a.n_head;
    const size_t smem = combine_smem_floats(chunks.n_chunks, a.dv) * sizeof(float);
    if (smem > 48 * 1024) raise_dynamic_smem_limit(reinterpret_cast<const void*>(combine_kernel), smem);
    launch_kernel(combine_kernel, static_cast<unsigned>(n_rows), kCombineThreads, smem, ctx.stream, chunks.part,
                  static_cast<int>(chunks.n_chunks), n_rows, a.dv, a.v_rot_chunk,
                  a.v_rot_chunk ? hadamard_scale(a.v_rot_chunk) : 1.0f, a.out);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void store_kv(Context& ctx, const KvLayer& layer, const float* k, const float* v, const int32_t* cells,
              int64_t n_tokens) {
    if (n_tokens <= 0) return;
    const StoreSide ks = store_side(layer.k, layer.k_row_bytes, layer.type_k, layer.n_embd_k, layer.k_rot_chunk, k);
    const bool with_v = v && layer.v && layer.n_embd_v > 0;
    const StoreSide vs =
        with_v ? store_side(layer.v, layer.v_row_bytes, layer.type_v, layer.n_embd_v, layer.v_rot_chunk, v)
               : StoreSide{};
    const size_t smem = std::max(ks.n, vs.n) * sizeof(float);
    if (smem > 48 * 1024) raise_dynamic_smem_limit(reinterpret_cast<const void*>(store_rows_kernel), smem);
    // K and V rows in one launch (grid y: the side).
    const dim3 grid(static_cast<unsigned>(n_tokens), with_v ? 2u : 1u);
    launch_kernel(store_rows_kernel, grid, 128, smem, ctx.stream, ks, vs, cells);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void attention(Context& ctx, const KvLayer& layer, const float* q, int64_t n_tokens, int n_head, int n_head_kv,
               int head_dim_k, int head_dim_v, const AttentionCells& cells, float scale, float* out) {
    if (n_tokens <= 0) return;
    if (static_cast<int64_t>(n_head_kv) * head_dim_k != layer.n_embd_k ||
        static_cast<int64_t>(n_head_kv) * head_dim_v != layer.n_embd_v)
        throw std::invalid_argument("attention: n_head_kv * head dims do not match the cache layer's row widths");
    // Scores against a rotated K need H·q (H orthonormal: q·k = Hq·Hk).
    q = layer.k_rot_chunk
            ? rotate_queries(ctx, layer.type_k, q, n_tokens * n_head, head_dim_k, layer.k_rot_chunk, decode_fusions())
            : round_queries(ctx, layer.type_k, q, n_tokens * n_head, head_dim_k, false);
    FlashAttention a;
    a.k = layer.k;
    a.v = layer.v;
    a.k_row_bytes = layer.k_row_bytes;
    a.v_row_bytes = layer.v_row_bytes;
    a.type_k = layer.type_k;
    a.type_v = layer.type_v;
    a.k_head_bytes = kv_bytes(layer.type_k, head_dim_k);
    a.v_head_bytes = kv_bytes(layer.type_v, head_dim_v);
    a.dk = head_dim_k;
    a.dv = head_dim_v;
    a.v_rot_chunk = layer.v_rot_chunk;
    a.q = q;
    a.n_tokens = n_tokens;
    a.n_head = n_head;
    a.n_head_kv = n_head_kv;
    a.cells = cells;
    a.scale = scale;
    a.out = out;
    flash_attention(ctx, a);
}

}  // namespace moeserve::cuda
