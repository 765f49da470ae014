// The routed experts' products for prefill-sized batches in one launch per
// projection: a grouped GEMM over the device-built tile list of moe_ffn
// (cuda_moe.cu), each tile one expert's run of up to 64 token rows.
//
// Why not one cuBLAS call per expert: a 48-layer model with 128 experts
// would need ~18,000 dequantize + GEMM launches per 512-token batch, and the
// launches, not the arithmetic, would set the prefill speed. Here a block
// computes a 64-output x 64-token tile of one expert: per step of K it
// dequantizes its 64 weight rows' blocks into shared memory as f16 (the
// same values the dequantize-to-f16 path hands cuBLAS), copies the tokens'
// f16 inputs next to them, and multiplies on tensor cores (WMMA 16x16x16,
// f32 accumulation). Each weight block is read once per tile of 64 tokens.
#include <mma.h>

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_quant_blocks.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kRows = 64;                    // output features per block
constexpr int kTokens = kMoeGemmTileTokens;  // token rows per block (one tile)
constexpr int kWarps = 4;                    // warp w: features 16w..16w+15, all 64 tokens
constexpr int kPad = 8;                      // halves of padding per shared row (bank spread, 16-byte rows)

// Values of K per step: one weight block (32 or 256 values), or four 8-value
// blocks of the float types.
template <GgmlType T>
inline constexpr int kStepValues = BlockDequant<T>::kElems < 32 ? 32 : BlockDequant<T>::kElems;

template <GgmlType T>
constexpr size_t moe_gemm_smem() {
    constexpr int ks = kStepValues<T>;
    const size_t tiles = sizeof(__half) * 2 * kRows * (ks + kPad);
    const size_t out = sizeof(float) * kRows * (kTokens + 4);
    return tiles > out ? tiles : out;
}

struct MoeGemmArgs {
    const uint8_t* w;  // matrix 0
    size_t matrix_bytes, row_bytes;
    int64_t in, out;
    const __half* x16;  // [items, in], rows sorted by expert
    const MatvecTile* tiles;
    const int* n_tiles;
    float* y;  // [items, out]
};

// grid: (ceil(out / 64), max_tiles); 128 threads.
template <GgmlType T>
__global__ void __launch_bounds__(32 * kWarps) moe_gemm_kernel(MoeGemmArgs a) {
    kernel_prologue();
    using namespace nvcuda;
    using B = BlockDequant<T>;
    constexpr int ks = kStepValues<T>;
    constexpr int ld = ks + kPad;
    constexpr int chunks_per_row = ks / 8;

    if (static_cast<int>(blockIdx.y) >= *a.n_tiles) return;  // whole block: no sync was reached
    const MatvecTile tile = a.tiles[blockIdx.y];
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
    const int n_tok = tile.n_rows;
    const int n_frag = (n_tok + 15) / 16;  // token fragments with any real row
    const uint8_t* wm = a.w + static_cast<size_t>(tile.matrix) * a.matrix_bytes;
    const __half* xt = a.x16 + static_cast<int64_t>(tile.first_row) * a.in;

    extern __shared__ __align__(128) unsigned char smem[];
    __half* ws = reinterpret_cast<__half*>(smem);  // [kRows][ld]: weight rows
    __half* xs = ws + kRows * ld;                  // [kTokens][ld]: token inputs
    const int warp = threadIdx.x / 32;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kTokens / 16];
#pragma unroll
    for (int j = 0; j < kTokens / 16; ++j) wmma::fill_fragment(acc[j], 0.0f);

    for (int64_t k0 = 0; k0 < a.in; k0 += ks) {
        __syncthreads();  // the previous step's tiles are consumed
        // Weight rows: chunk ci of row r holds 8 values of block ci / kChunks.
        for (int i = threadIdx.x; i < kRows * chunks_per_row; i += blockDim.x) {
            const int r = i / chunks_per_row, ci = i % chunks_per_row;
            const int blk = ci / B::kChunks, c = ci % B::kChunks;
            __half* dst = ws + r * ld + blk * B::kElems;
            if (row0 + r < a.out) {
                const uint8_t* wb =
                    wm + (row0 + r) * a.row_bytes + static_cast<size_t>(k0 / B::kElems + blk) * B::kBytes;
                float v[8];
                int e0, e1;
                B::chunk(wb, c, v, e0, e1);
                reinterpret_cast<__half2*>(dst + e0)[0] = __floats2half2_rn(v[0], v[1]);
                reinterpret_cast<__half2*>(dst + e0)[1] = __floats2half2_rn(v[2], v[3]);
                reinterpret_cast<__half2*>(dst + e1)[0] = __floats2half2_rn(v[4], v[5]);
                reinterpret_cast<__half2*>(dst + e1)[1] = __floats2half2_rn(v[6], v[7]);
            } else {  // past the last feature (never stored): the chunks zero the row in order
                *reinterpret_cast<uint4*>(ws + r * ld + 8 * ci) = make_uint4(0, 0, 0, 0);
            }
        }
        // Token rows: 8 halves per copy; rows past the tile's end are zeros.
        for (int i = threadIdx.x; i < kTokens * chunks_per_row; i += blockDim.x) {
            const int t = i / chunks_per_row, q = i % chunks_per_row;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (t < n_tok) v = *reinterpret_cast<const uint4*>(xt + t * a.in + k0 + 8 * q);
            *reinterpret_cast<uint4*>(xs + t * ld + 8 * q) = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < ks; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> af;
            wmma::load_matrix_sync(af, ws + warp * 16 * ld + kk, ld);
#pragma unroll
            for (int j = 0; j < kTokens / 16; ++j) {
                if (j < n_frag) {
                    // B[k][n] = token n's input k: column-major in xs.
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> bf;
                    wmma::load_matrix_sync(bf, xs + j * 16 * ld + kk, ld);
                    wmma::mma_sync(acc[j], af, bf, acc[j]);
                }
            }
        }
    }

    // Results through shared memory, so the stores run along each token's outputs.
    __syncthreads();
    constexpr int ldo = kTokens + 4;
    float* os = reinterpret_cast<float*>(smem);  // [kRows][ldo]: feature-major
#pragma unroll
    for (int j = 0; j < kTokens / 16; ++j)
        if (j < n_frag) wmma::store_matrix_sync(os + warp * 16 * ldo + j * 16, acc[j], ldo, wmma::mem_row_major);
    __syncthreads();
    float* yt = a.y + static_cast<int64_t>(tile.first_row) * a.out;
    for (int i = threadIdx.x; i < kRows * n_tok; i += blockDim.x) {
        const int t = i / kRows, r = i % kRows;
        if (row0 + r < a.out) yt[t * a.out + row0 + r] = os[r * ldo + t];
    }
}

}  // namespace

bool moe_gemm_supports(const Weight& w) {
    bool ok = false;
    if (w.type == GgmlType::F32) return false;  // kept in f32 by the per-expert path
    dispatch_weight_type(w.type, [&]<GgmlType T>() { ok = w.ne[0] % kStepValues<T> == 0; });
    return ok;
}

void launch_moe_gemm(Context& ctx, const Weight& w, const __half* x16, const MatvecTile* tiles, const int* n_tiles,
                     int max_tiles, float* y) {
    if (max_tiles == 0 || w.ne[1] == 0) return;
    if (!moe_gemm_supports(w)) throw std::invalid_argument("moe_gemm: weight " + w.name + " needs the per-expert path");
    MoeGemmArgs a{w.data, w.matrix_bytes, w.row_bytes, w.ne[0], w.ne[1], x16, tiles, n_tiles, y};
    const dim3 grid(static_cast<unsigned>((w.ne[1] + kRows - 1) / kRows), static_cast<unsigned>(max_tiles));
    dispatch_weight_type(w.type, [&]<GgmlType T>() {
        constexpr size_t smem = moe_gemm_smem<T>();
        raise_dynamic_smem_limit(reinterpret_cast<const void*>(moe_gemm_kernel<T>), smem);
        launch_kernel(moe_gemm_kernel<T>, grid, 32 * kWarps, smem, ctx.stream, a);
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
