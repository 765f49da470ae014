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
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_int8_blocks.cuh"
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

template <GgmlType T>
__global__ void __launch_bounds__(32 * kWarps) mmq_kernel(MmqArgs a) {
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

    __shared__ __align__(16) int8_t ws[kRows * kLd];    // weight codes
    __shared__ __align__(16) int8_t xs[kTokens * kLd];  // token codes
    __shared__ float wsc[kRows][16];                    // d·sc per 32 (Q4_K, Q5_K) or 16 (Q6_K) values
    __shared__ float wmn[kRows][8];                     // dmin·m per 32 values (Q4_K, Q5_K)
    __shared__ float xd[kTokens][8];                    // the token's scale of each 32 values
    __shared__ int xsum[kTokens][8];                    // Σ of each 32 token codes (q8_K)

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tid = lane & 3;
    const int n_groups = (n_tok + 7) / 8;  // token groups of 8 with any real token
    const uint8_t* wm = a.w + static_cast<size_t>(matrix) * a.matrix_bytes;
    const int n_blocks = static_cast<int>(a.in / kQK);
    float acc[kTokens / 8][4];
#pragma unroll
    for (int n = 0; n < kTokens / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    for (int kb = 0; kb < n_blocks; ++kb) {
        __syncthreads();  // the previous step's tiles are consumed
        // Rows past the last feature keep stale values: their sums are never stored.
        for (int i = threadIdx.x; i < kRows * kInt8BlockParts; i += blockDim.x) {
            const int r = i / kInt8BlockParts, part = i % kInt8BlockParts;
            if (row0 + r < a.out) {
                typename B::Lane L;
                B::load(wm + (row0 + r) * a.row_bytes + static_cast<size_t>(kb) * B::kBytes, part, L);
                B::stage(L, ws + r * kLd, wsc[r], wmn[r]);
            }
        }
        for (int i = threadIdx.x; i < kTokens * (kQK / 16); i += blockDim.x) {
            const int t = i / (kQK / 16), c = i % (kQK / 16);
            uint4 v = make_uint4(0, 0, 0, 0);
            if (t < n_tok) v = *reinterpret_cast<const uint4*>(a.x.q + (first + t) * a.in + kb * kQK + 16 * c);
            *reinterpret_cast<uint4*>(xs + t * kLd + 16 * c) = v;
        }
        for (int i = threadIdx.x; i < kTokens * 8; i += blockDim.x) {
            const int t = i / 8, j = i % 8;
            int s = 0;
            float d = 0.0f;
            if (t < n_tok) {
                if constexpr (B::kAct == GgmlType::Q8_K) {
                    const int32_t* bs = a.x.bsum + (first + t) * (a.in / 16) + kb * (kQK / 16) + 2 * j;
                    s = bs[0] + bs[1];
                    d = a.x.d[(first + t) * (a.in / kQK) + kb];
                } else {
                    d = a.x.d[(first + t) * (a.in / 32) + kb * 8 + j];
                }
            }
            xsum[t][j] = s, xd[t][j] = d;
        }
        __syncthreads();

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
    dispatch_int8_type(w.type, [&]<GgmlType T>() { mmq_kernel<T><<<grid, 32 * kWarps, 0, ctx.stream>>>(a); });
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
