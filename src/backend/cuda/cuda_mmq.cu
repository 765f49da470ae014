// Prompt-sized products of the int8 weight types (Q4_K, Q5_K, Q6_K with
// q8_K activations; Q8_0, Q5_0, Q4_0 with q8_0) on the tensor cores' integer
// path, the arithmetic of llama.cpp's CPU dot products: activations rounded
// to their q8 type (Q8Rows), each 32-value sub-block of weight codes times
// activation codes summed exactly in int32 (MMA m16n8k32, s8 x s8), then
// scaled in float by the weight's sub-block scale (and min) and the
// activation block's scale. The f16 path (dequantize + cuBLAS / moe_gemm)
// rounds every weight and activation to 11 bits and so drifts from the CPU's
// logits by more than a chunked prompt may differ from one evaluated token by
// token.
//
// A block computes 64 weight rows x 64 token rows (one MatvecTile of the
// MoE tile list, or a dense slice of tokens) with 4 warps of 16 rows each.
// Per 256-value step of K it stages the 64 rows' weight block as int8 codes
// with float sub-block scales (Int8Block::stage), and the 64 tokens' codes,
// scales and 32-value sums, in shared memory; then each warp multiplies its
// 16 rows with the 8 token groups of 8 for each of the 8 sub-blocks.
// Fragment layouts (PTX ISA, mma.m16n8k32 with .s8), lane = 4 gid + tid:
//   A a0 = A[gid][4tid..+3], a1 = A[gid+8][4tid..], a2 = A[gid][16+4tid..], a3 = A[gid+8][16+4tid..]
//   B b0 = B[4tid..+3][gid], b1 = B[16+4tid..][gid]
//   C c0 = C[gid][2tid], c1 = C[gid][2tid+1], c2 = C[gid+8][2tid], c3 = C[gid+8][2tid+1]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_int8_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"

namespace moeserve::cuda {
namespace {

constexpr int kRows = 64;                    // weight rows per block
constexpr int kTokens = kMoeGemmTileTokens;  // token rows per block
constexpr int kWarps = 4;                    // warp w: rows 16w..16w+15
constexpr int kQK = 256;
constexpr int kLd = kQK + 16;  // bytes per staged row: 16-byte aligned, rows 4 banks apart
static_assert(kTokens == 64 && kRows == 16 * kWarps);

struct MmqArgs {
    const uint8_t* w;  // matrix 0
    size_t matrix_bytes, row_bytes;
    int64_t in, out;
    Q8Rows x;  // token rows of `in` values
    // The tile list (device), or null: tile y is tokens [64y, 64y + 64) of
    // n_tokens, all with matrix0.
    const MatvecTile* tiles;
    const int* n_tiles;
    int matrix0;
    int64_t n_tokens;
    float* y;  // y[token * ldy + o]
    int64_t ldy;
};

// d = a·b (m16n8k32, s8 inputs, s32 sums).
__device__ __forceinline__ void mma_s8(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}

__device__ __forceinline__ uint32_t ld_s32(const int8_t* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}

// Asynchronous 16-byte copy global -> shared (zero-filled when !valid; src
// is not read then), and the group bookkeeping of cp.async.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

// Whether the pipelined form can copy type T's blocks in 16-byte pieces.
template <GgmlType T>
constexpr bool kPipelinable = Int8Block<T>::kBytes % 16 == 0;

// Shared-memory layout (bytes) of mmq_kernel: the staged weight codes, the
// token codes (two stages when pipelined), the raw weight blocks (pipelined
// only, two stages), scales and sums.
struct MmqLayout {
    size_t ws, xs, wraw, wsc, wmn, xd, xsum, total;
};
template <GgmlType T, bool PIPE>
__host__ __device__ constexpr MmqLayout mmq_layout() {
    MmqLayout l{};
    size_t at = 0;
    l.ws = at, at += kRows * kLd;
    l.xs = at, at += (PIPE ? 2 : 1) * kTokens * kLd;
    l.wraw = at, at += PIPE ? 2 * kRows * Int8Block<T>::kBytes : 0;
    l.wsc = at, at += sizeof(float) * kRows * 16;
    l.wmn = at, at += sizeof(float) * kRows * 8;
    l.xd = at, at += sizeof(float) * kTokens * 8;
    l.xsum = at, at += sizeof(int) * kTokens * 8;
    l.total = at;
    return l;
}

// PIPE: the next 256-value step's weight blocks and token codes are copied
// (cp.async) while this step multiplies, into a second buffer; the weight
// blocks are then unpacked from shared memory. Without it each step loads
// from global memory and waits before it multiplies.
template <GgmlType T, bool PIPE>
__global__ void __launch_bounds__(32 * kWarps) mmq_kernel(MmqArgs a) {
    kernel_prologue();
    using B = Int8Block<T>;
    int matrix, n_tok;
    int64_t first;
    if (a.tiles) {
        if (static_cast<int>(blockIdx.y) >= *a.n_tiles) return;  // whole block: no sync was reached
        const MatvecTile tile = a.tiles[blockIdx.y];
        matrix = tile.matrix, first = tile.first_row, n_tok = tile.n_rows;
    } else {
        matrix = a.matrix0, first = static_cast<int64_t>(blockIdx.y) * kTokens;
        n_tok = static_cast<int>(min(static_cast<int64_t>(kTokens), a.n_tokens - first));
    }
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;

    constexpr MmqLayout L = mmq_layout<T, PIPE>();
    extern __shared__ __align__(16) unsigned char smem[];
    int8_t* ws = reinterpret_cast<int8_t*>(smem + L.ws);   // weight codes
    int8_t* xs0 = reinterpret_cast<int8_t*>(smem + L.xs);  // token codes (stage 0, then 1)
    uint8_t* wraw0 = smem + L.wraw;                        // raw weight blocks (stage 0, then 1)
    auto wsc = reinterpret_cast<float(*)[16]>(
        smem + L.wsc);  // d·sc per 32 (K-quants but Q6_K; 32-value types) or 16 (Q6_K) values
    auto wmn = reinterpret_cast<float(*)[8]>(smem + L.wmn);  // dmin·m per 32 values (Q4_K, Q5_K)
    auto xd = reinterpret_cast<float(*)[8]>(smem + L.xd);    // the token's scale of each 32 values
    auto xsum = reinterpret_cast<int(*)[8]>(smem + L.xsum);  // Σ of each 32 token codes (q8_K)

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tid = lane & 3;
    const int n_groups = (n_tok + 7) / 8;  // token groups of 8 with any real token
    const uint8_t* wm = a.w + static_cast<size_t>(matrix) * a.matrix_bytes;
    const int n_blocks = static_cast<int>(a.in / kQK);
    float acc[kTokens / 8][4];
#pragma unroll
    for (int n = 0; n < kTokens / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    // Step kb's raw weight blocks and token codes into stage `st` (pipelined form).
    auto issue = [&](int kb, int st) {
        constexpr int pieces = B::kBytes / 16;
        uint8_t* wraw = wraw0 + st * kRows * B::kBytes;
        for (int i = threadIdx.x; i < kRows * pieces; i += blockDim.x) {
            const int r = i / pieces, c = i % pieces;
            const bool valid = row0 + r < a.out;
            const uint8_t* src =
                valid ? wm + (row0 + r) * a.row_bytes + static_cast<size_t>(kb) * B::kBytes + 16 * c : wm;
            cp_async16(wraw + r * B::kBytes + 16 * c, src, valid);
        }
        int8_t* xs = xs0 + st * kTokens * kLd;
        for (int i = threadIdx.x; i < kTokens * (kQK / 16); i += blockDim.x) {
            const int t = i / (kQK / 16), c = i % (kQK / 16);
            const bool valid = t < n_tok;
            const int8_t* src = valid ? a.x.q + (first + t) * a.in + kb * kQK + 16 * c : a.x.q;
            cp_async16(xs + t * kLd + 16 * c, src, valid);
        }
        cp_async_commit();
    };
    if constexpr (PIPE) issue(0, 0);

    for (int kb = 0; kb < n_blocks; ++kb) {
        const int st = PIPE ? kb & 1 : 0;
        // The token scales and sums of this step, loaded before the wait.
        constexpr int kPer = kTokens * 8 / (32 * kWarps);
        int sums[kPer];
        float ds[kPer];
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int i = threadIdx.x + k * 32 * kWarps, t = i / 8, j = i % 8;
            sums[k] = 0, ds[k] = 0.0f;
            if (t < n_tok) {
                if constexpr (B::kAct == GgmlType::Q8_K) {
                    const int32_t* bs = a.x.bsum + (first + t) * (a.in / 16) + kb * (kQK / 16) + 2 * j;
                    sums[k] = bs[0] + bs[1];
                    ds[k] = a.x.d[(first + t) * (a.in / kQK) + kb];
                } else {
                    ds[k] = a.x.d[(first + t) * (a.in / 32) + kb * 8 + j];
                }
            }
        }
        if constexpr (PIPE) {
            __syncthreads();  // every warp is done with the last step, which read the other stage
            if (kb + 1 < n_blocks) {
                issue(kb + 1, st ^ 1);
                cp_async_wait<1>();  // this thread's copies of this step have landed (the next step's may not)
            } else {
                cp_async_wait<0>();
            }
        }
        __syncthreads();  // this step's copies are visible to all; the previous step's tiles are consumed
        // Rows past the last feature keep stale (or zero) values: their sums are never stored.
        for (int i = threadIdx.x; i < kRows * kInt8BlockParts; i += blockDim.x) {
            const int r = i / kInt8BlockParts, part = i % kInt8BlockParts;
            if (row0 + r < a.out) {
                typename B::Lane lane_w;
                const uint8_t* blk = PIPE ? wraw0 + st * kRows * B::kBytes + r * B::kBytes
                                          : wm + (row0 + r) * a.row_bytes + static_cast<size_t>(kb) * B::kBytes;
                B::load(blk, part, lane_w);
                B::stage(lane_w, ws + r * kLd, wsc[r], wmn[r]);
            }
        }
        if constexpr (!PIPE) {
            for (int i = threadIdx.x; i < kTokens * (kQK / 16); i += blockDim.x) {
                const int t = i / (kQK / 16), c = i % (kQK / 16);
                uint4 v = make_uint4(0, 0, 0, 0);
                if (t < n_tok) v = *reinterpret_cast<const uint4*>(a.x.q + (first + t) * a.in + kb * kQK + 16 * c);
                *reinterpret_cast<uint4*>(xs0 + t * kLd + 16 * c) = v;
            }
        }
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int i = threadIdx.x + k * 32 * kWarps;
            xsum[i / 8][i % 8] = sums[k], xd[i / 8][i % 8] = ds[k];
        }
        __syncthreads();
        const int8_t* xs = xs0 + st * kTokens * kLd;

        const int r0 = 16 * warp + gid, r1 = r0 + 8;
#pragma unroll
        for (int j = 0; j < kQK / 32; ++j) {
            const int8_t* pa0 = ws + r0 * kLd + 32 * j + 4 * tid;
            const int8_t* pa1 = ws + r1 * kLd + 32 * j + 4 * tid;
            const uint32_t a0 = ld_s32(pa0), a1 = ld_s32(pa1), a2 = ld_s32(pa0 + 16), a3 = ld_s32(pa1 + 16);
#pragma unroll
            for (int n = 0; n < kTokens / 8; ++n) {
                if (n < n_groups) {
                    const int8_t* pb = xs + (8 * n + gid) * kLd + 32 * j + 4 * tid;
                    const uint32_t b0 = ld_s32(pb), b1 = ld_s32(pb + 16);
                    const int t0 = 8 * n + 2 * tid, t1 = t0 + 1;
                    const float d0 = xd[t0][j], d1 = xd[t1][j];
                    if constexpr (T != GgmlType::Q6_K) {  // a scale (and a min, K-quants) per 32 values
                        int c[4];
                        mma_s8(c, a0, a1, a2, a3, b0, b1);
                        const float s0 = wsc[r0][j], s1 = wsc[r1][j], m0 = wmn[r0][j], m1 = wmn[r1][j];
                        const float x0 = static_cast<float>(xsum[t0][j]), x1 = static_cast<float>(xsum[t1][j]);
                        acc[n][0] += d0 * (s0 * static_cast<float>(c[0]) - m0 * x0);
                        acc[n][1] += d1 * (s0 * static_cast<float>(c[1]) - m0 * x1);
                        acc[n][2] += d0 * (s1 * static_cast<float>(c[2]) - m1 * x0);
                        acc[n][3] += d1 * (s1 * static_cast<float>(c[3]) - m1 * x1);
                    } else {  // Q6_K: a scale per 16 values, so the two halves of K apart
                        int lo[4], hi[4];
                        mma_s8(lo, a0, a1, 0u, 0u, b0, b1);
                        mma_s8(hi, 0u, 0u, a2, a3, b0, b1);
                        const float l0 = wsc[r0][2 * j], h0 = wsc[r0][2 * j + 1];
                        const float l1 = wsc[r1][2 * j], h1 = wsc[r1][2 * j + 1];
                        acc[n][0] += d0 * (l0 * static_cast<float>(lo[0]) + h0 * static_cast<float>(hi[0]));
                        acc[n][1] += d1 * (l0 * static_cast<float>(lo[1]) + h0 * static_cast<float>(hi[1]));
                        acc[n][2] += d0 * (l1 * static_cast<float>(lo[2]) + h1 * static_cast<float>(hi[2]));
                        acc[n][3] += d1 * (l1 * static_cast<float>(lo[3]) + h1 * static_cast<float>(hi[3]));
                    }
                }
            }
        }
    }

    const int64_t o0 = row0 + 16 * warp + gid, o1 = o0 + 8;
#pragma unroll
    for (int n = 0; n < kTokens / 8; ++n) {
        const int t0 = 8 * n + 2 * tid, t1 = t0 + 1;
        float* y0 = a.y + (first + t0) * a.ldy;
        float* y1 = a.y + (first + t1) * a.ldy;
        if (t0 < n_tok && o0 < a.out) y0[o0] = acc[n][0];
        if (t1 < n_tok && o0 < a.out) y1[o0] = acc[n][1];
        if (t0 < n_tok && o1 < a.out) y0[o1] = acc[n][2];
        if (t1 < n_tok && o1 < a.out) y1[o1] = acc[n][3];
    }
}

// The pipelined form (MOESERVE_CUDA_MMQ_PIPELINE=1, opt-in while it is measured): the same sums.
bool mmq_pipelined() {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_MMQ_PIPELINE");
        return v && std::string(v) == "1";
    }();
    return on;
}

}  // namespace

bool mmq_supports(const Weight& w) {
    return matvec_int8_supports(w.type) && w.ne[0] % kQK == 0;
}

void launch_mmq(Context& ctx, const Weight& w, int matrix, const Q8Rows& x, const MatvecTile* tiles, const int* n_tiles,
                int max_tiles, int64_t n_tokens, float* y, int64_t ldy) {
    if (!mmq_supports(w)) throw std::invalid_argument("mmq: weight " + w.name + " has no int8 product");
    const unsigned grid_y =
        tiles ? static_cast<unsigned>(max_tiles) : static_cast<unsigned>((n_tokens + kTokens - 1) / kTokens);
    if (grid_y == 0 || w.ne[1] == 0) return;
    if (grid_y > kMaxGridY) {  // dense token slices beyond the grid's y: in pieces
        const int64_t step = kMaxGridY * kTokens;
        for (int64_t t0 = 0; t0 < n_tokens; t0 += step) {
            const GgmlType act = activation_rounding(w.type);
            const Q8Rows part{x.q + t0 * w.ne[0], x.d + t0 * (w.ne[0] / q8_block(act)),
                              x.bsum ? x.bsum + t0 * (w.ne[0] / 16) : nullptr};
            launch_mmq(ctx, w, matrix, part, nullptr, nullptr, 0, std::min(step, n_tokens - t0), y + t0 * ldy, ldy);
        }
        return;
    }
    MmqArgs a{w.data, w.matrix_bytes, w.row_bytes, w.ne[0], w.ne[1], x, tiles, n_tiles, matrix, n_tokens, y, ldy};
    const dim3 grid(static_cast<unsigned>((w.ne[1] + kRows - 1) / kRows), grid_y);
    const bool pipelined = mmq_pipelined();
    auto launch = [&]<GgmlType T, bool PIPE>() {
        constexpr size_t smem = mmq_layout<T, PIPE>().total;
        if (smem > 48 * 1024) raise_dynamic_smem_limit(reinterpret_cast<const void*>(mmq_kernel<T, PIPE>), smem);
        launch_kernel(mmq_kernel<T, PIPE>, grid, 32 * kWarps, smem, ctx.stream, a);
    };
    dispatch_int8_type(w.type, [&]<GgmlType T>() {
        // The raw blocks must be whole 16-byte pieces (and rows start on 16 bytes) for cp.async.
        if constexpr (kPipelinable<T>) {
            if (pipelined && a.row_bytes % 16 == 0 && a.matrix_bytes % 16 == 0 &&
                reinterpret_cast<uintptr_t>(a.w) % 16 == 0) {
                launch.template operator()<T, true>();
                return;
            }
        }
        launch.template operator()<T, false>();
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
