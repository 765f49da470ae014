// The matrix-vector products of K-quant weights (Q4_K, Q5_K, Q6_K) with int8 activations, the
// way llama.cpp's CPU computes them: the activations rounded to q8_K blocks
// (Q8Rows), then per block integer dot products of the weight codes with
// the activation codes (dp4a: four int8 products and their sum per
// instruction), scaled by the block's integer sub-block scales, and only
// then one float multiply by the two block scales. That is the CPU's
// arithmetic for these types (ggml's vec_dot_q4_K_q8_K and its Q5_K, Q6_K kin)
// up to the order of the float additions over blocks, and about a tenth of
// the instructions of dequantizing every weight to float: the float kernel
// (cuda_matmul.cu) keeps the SMs busy at a fraction of the memory bandwidth.
//
// Lanes: 8 per 256-value block (its 144, 176 or 210 bytes), so a warp reads 4
// consecutive blocks of its row per step with 16-byte (Q4_K, Q5_K) or 4-byte
// (Q6_K, 2-byte aligned blocks) loads; each lane holds 32 weights of its
// block and multiplies them with up to 8 tokens' codes, read through L1.
#include <cuda_runtime.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_expert_activation.cuh"
#include "backend/cuda/cuda_int8_blocks.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_matvec_tile.cuh"
#include "backend/cuda/cuda_quant_blocks.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 4;  // weight rows per block
constexpr int kLanesPerBlock = kInt8BlockParts;
constexpr int kQK = 256;

// As matvec_kernel (cuda_matmul.cu), the activations from a.xq. DUAL: the
// gate and up weights of a SwiGLU in one pass (act(W·x, W2·x)).
template <GgmlType T, int NT, bool DUAL>
__global__ void __launch_bounds__(32 * kWarps) matvec_int8_kernel(MatvecArgs a) {
    using B = Int8Block<T>;
    MatvecBlock mb;
    if (!matvec_block<NT>(a, mb)) return;
    const int lane = threadIdx.x & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
    if (row >= a.out) return;  // whole warps leave; no block-wide sync follows
    const uint8_t* wr = a.w + mb.matrix * a.matrix_bytes + row * a.row_bytes;
    const uint8_t* wr2 = DUAL ? a.w2 + mb.matrix * a.matrix_bytes + row * a.row_bytes : nullptr;
    const int64_t stride = a.x_stride;                               // values per activation row (a multiple of 256)
    constexpr int act_block = B::kAct == GgmlType::Q8_K ? 256 : 32;  // values per activation scale
    // Each token's activation row (its own, or the one xq_rows names).
    int32_t xrow[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t)
        xrow[t] = a.xq_rows && (NT == 1 || t < mb.count) ? a.xq_rows[mb.first + t] : static_cast<int32_t>(mb.first + t);
    float* y = a.y + mb.first * a.y_stride;

    float acc[NT], acc2[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = acc2[t] = 0.0f;
    const int n_blocks = static_cast<int>(a.in / kQK), part = lane % kLanesPerBlock;
#pragma unroll 2
    for (int blk = lane / kLanesPerBlock; blk < n_blocks; blk += 32 / kLanesPerBlock) {
        typename B::Lane L, L2;
        B::load(wr + static_cast<size_t>(blk) * B::kBytes, part, L);
        if constexpr (DUAL) B::load(wr2 + static_cast<size_t>(blk) * B::kBytes, part, L2);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (NT == 1 || t < mb.count) {  // a block with work has at least one token
                const int8_t* qt = a.xq.q + static_cast<int64_t>(xrow[t]) * stride + static_cast<int64_t>(blk) * kQK;
                const int32_t* bt =  // q8_K only
                    B::kAct == GgmlType::Q8_K
                        ? a.xq.bsum + static_cast<int64_t>(xrow[t]) * (stride / 16) + blk * (kQK / 16)
                        : nullptr;
                const float* dt =
                    a.xq.d + static_cast<int64_t>(xrow[t]) * (stride / act_block) + blk * (kQK / act_block);
                acc[t] += B::dot(L, qt, bt, dt);
                if constexpr (DUAL) acc2[t] += B::dot(L2, qt, bt, dt);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        float s = warp_sum(acc[t]);
        if constexpr (DUAL) s = expert_activation(s, warp_sum(acc2[t]), a.act);
        if (!DUAL && a.fused) s = expert_activation(s, 0.0f, a.act);
        if (lane == 0 && t < mb.count) y[t * a.y_stride + row] = s;
    }
}

}  // namespace

bool matvec_int8_supports(GgmlType type) {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_INT8");
        return !(v && std::string(v) == "0");
    }();
    return on && dispatch_int8_type(type, []<GgmlType>() {});
}

void launch_matvec_int8(Context& ctx, GgmlType type, const MatvecArgs& a) {
    if (a.in % kQK != 0 || a.x_stride % kQK != 0 || a.n_groups != 1 || a.x_group_stride != 0)
        throw std::invalid_argument("matvec_int8: rows of " + std::to_string(a.in) + " values, activation stride " +
                                    std::to_string(a.x_stride) + " (both must be multiples of 256, one group)");
    if (a.fused && (a.act == ExpertActivation::SwiGlu) != (a.w2 != nullptr))
        throw std::invalid_argument("matvec: a fused SwiGLU reads two weights, a fused ReLU² one");
    const int tile_tokens = a.tile_tokens;
    const unsigned grid_y = a.tiles ? static_cast<unsigned>(a.max_tiles)
                                    : static_cast<unsigned>((a.n_tokens + tile_tokens - 1) / tile_tokens);
    if (grid_y == 0 || a.out == 0) return;
    const dim3 grid(static_cast<unsigned>((a.out + kWarps - 1) / kWarps), grid_y, 1u);
    auto launch = [&]<GgmlType T, bool DUAL>() {
        switch (tile_tokens) {
            case 1:
                matvec_int8_kernel<T, 1, DUAL><<<grid, 32 * kWarps, 0, ctx.stream>>>(a);
                break;
            case 2:
                matvec_int8_kernel<T, 2, DUAL><<<grid, 32 * kWarps, 0, ctx.stream>>>(a);
                break;
            case 4:
                matvec_int8_kernel<T, 4, DUAL><<<grid, 32 * kWarps, 0, ctx.stream>>>(a);
                break;
            default:
                matvec_int8_kernel<T, 8, DUAL><<<grid, 32 * kWarps, 0, ctx.stream>>>(a);
                break;
        }
    };
    auto launch_type = [&]<GgmlType T>() {
        if (a.w2)
            launch.template operator()<T, true>();
        else
            launch.template operator()<T, false>();
    };
    if (!dispatch_int8_type(type, launch_type))
        throw std::invalid_argument("matvec_int8: no int8 kernel for " + std::string(ggml_type_name(type)));
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
