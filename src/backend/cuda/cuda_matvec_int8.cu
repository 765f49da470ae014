// The matrix-vector products of quantized weights (Q4_K, Q5_K, Q6_K, Q8_0, Q5_0, Q4_0) with int8
// activations, the way llama.cpp's CPU computes them: the activations rounded to q8_K / q8_0 blocks
// (Q8Rows), then per block integer dot products of the weight codes with the activation codes (dp4a:
// four int8 products and their sum per instruction), scaled by the block's integer sub-block scales,
// and only then float arithmetic with the block scales. About a tenth of the instructions of
// dequantizing every weight to float: the float kernel (cuda_matmul.cu) keeps the SMs busy at a
// fraction of the memory bandwidth.
//
// Two forms:
// - block-parallel (the default): 8 lanes per 256-value block, a warp reads 4 consecutive blocks
//   of one row per step with 16-byte loads and sums the lanes at the end: the CPU's integer sums,
//   its float additions in another order.
// - x86 order (MOESERVE_CUDA_X86_ORDER=1, opt-in until a GPU run has checked and timed it): eight
//   lanes per weight row are the eight int32 lanes of ggml's AVX2 kernels (quant/x86_dot_lanes.h,
//   whose host test shows vec_dot's float bit for bit), each with its own float accumulator over the
//   row's blocks in order and hsum_float_8's tree at the end, so a product is the CPU backend's float
//   bit for bit (a last bit can move a later int8 rounding, and with it a token). A warp works on 4
//   rows.
// Each lane multiplies its weights with up to 8 tokens' codes, read through L1.
#include <cuda_runtime.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_expert_activation.cuh"
#include "backend/cuda/cuda_int8_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_matvec_tile.cuh"
#include "backend/cuda/cuda_quant_blocks.cuh"
#include "quant/x86_dot_lanes.h"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 4;  // weight rows per block
constexpr int kLanesPerBlock = kInt8BlockParts;
constexpr int kQK = 256;
constexpr int kX86RowsPerBlock = kWarps * 4;  // the x86-order form: 4 rows a warp

// As matvec_kernel (cuda_matmul.cu), the activations from a.xq. DUAL: the
// gate and up weights of a SwiGLU in one pass (act(W·x, W2·x)).
template <GgmlType T, int NT, bool DUAL>
__global__ void __launch_bounds__(32 * kWarps) matvec_int8_kernel(MatvecArgs a) {
    kernel_prologue();
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

// The x86-order form: a warp holds 4 rows, 8 lanes each (lane l: the CPU's int32 lane l), every
// lane over all the row's 256-value units in order. Rows past the end compute a copy of the last row
// (the shuffles need all lanes) and write nothing.
template <GgmlType T, int NT, bool DUAL>
__global__ void __launch_bounds__(32 * kWarps) matvec_x86_kernel(MatvecArgs a) {
    kernel_prologue();
    using L = x86_lanes::Lane<T>;
    MatvecBlock mb;
    if (!matvec_block<NT>(a, mb)) return;
    const int l = threadIdx.x & 7;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kX86RowsPerBlock + (threadIdx.x >> 3);
    const bool live = row < a.out;
    const int64_t r = live ? row : a.out - 1;
    const uint8_t* wr = a.w + mb.matrix * a.matrix_bytes + r * a.row_bytes;
    const uint8_t* wr2 = DUAL ? a.w2 + mb.matrix * a.matrix_bytes + r * a.row_bytes : nullptr;
    const int64_t stride = a.x_stride;
    constexpr int scales_per_unit = L::kQ8K ? 1 : 8;
    int32_t xrow[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t)
        xrow[t] = a.xq_rows && (NT == 1 || t < mb.count) ? a.xq_rows[mb.first + t] : static_cast<int32_t>(mb.first + t);

    float acc[NT], aux[NT], acc2[NT], aux2[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = aux[t] = acc2[t] = aux2[t] = 0.0f;
    const int n_units = static_cast<int>(a.in / x86_lanes::kUnit);
    for (int u = 0; u < n_units; ++u) {
        typename L::W w, w2;
        L::load(wr + static_cast<size_t>(u) * L::kBytes, l, w);
        if constexpr (DUAL) L::load(wr2 + static_cast<size_t>(u) * L::kBytes, l, w2);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (NT == 1 || t < mb.count) {
                const int64_t xr = xrow[t];
                const int8_t* q = a.xq.q + xr * stride + static_cast<int64_t>(u) * x86_lanes::kUnit;
                const int32_t* bs = L::kQ8K ? a.xq.bsum + xr * (stride / 16) + u * 16 : nullptr;
                const float* d = a.xq.d + xr * (stride / x86_lanes::kUnit * scales_per_unit) + u * scales_per_unit;
                L::step(w, q, bs, d, l, acc[t], aux[t]);
                if constexpr (DUAL) L::step(w2, q, bs, d, l, acc2[t], aux2[t]);
            }
        }
    }
    // hsum_float_8's tree over the 8 lanes ((l + l^4), then ^2, then ^1), and the aux term.
    auto finish = [](float v, float m) {
        v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, 4));
        v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, 2));
        v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, 1));
        if constexpr (L::kAux == x86_lanes::Aux::min_lanes) {
            m = __fadd_rn(m, __shfl_xor_sync(0xffffffffu, m, 2));
            m = __fadd_rn(m, __shfl_xor_sync(0xffffffffu, m, 1));
        }
        return L::kAux == x86_lanes::Aux::none ? v : __fadd_rn(v, m);
    };
    float* y = a.y + mb.first * a.y_stride;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        float s = finish(acc[t], aux[t]);
        if constexpr (DUAL) s = expert_activation(s, finish(acc2[t], aux2[t]), a.act);
        if (!DUAL && a.fused) s = expert_activation(s, 0.0f, a.act);
        if (live && l == 0 && t < mb.count) y[t * a.y_stride + row] = s;
    }
}

bool env_is_one(const char* name) {
    const char* v = std::getenv(name);
    return v && std::string(v) == "1";
}

// The x86 order: MOESERVE_CUDA_X86_ORDER=1, or exact prompts (which need it). Read once.
bool x86_order() {
    static const bool on = env_is_one("MOESERVE_CUDA_X86_ORDER") || env_is_one("MOESERVE_CUDA_EXACT_PROMPTS");
    return on;
}

}  // namespace

bool matvec_int8_supports(GgmlType type) {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_INT8");
        return !(v && std::string(v) == "0");
    }();
    return on && dispatch_int8_type(type, []<GgmlType>() {});
}

bool exact_prompt_products(const Weight& w) {
    static const bool on = env_is_one("MOESERVE_CUDA_EXACT_PROMPTS");
    return on && matvec_int8_supports(w.type) && w.ne[0] % kQK == 0;
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
    const bool x86 = x86_order();
    const int64_t rows_per_block = x86 ? kX86RowsPerBlock : kWarps;
    const dim3 grid(static_cast<unsigned>((a.out + rows_per_block - 1) / rows_per_block), grid_y, 1u);
    auto launch_nt = [&]<GgmlType T, int NT, bool DUAL>() {
        if (x86)
            launch_kernel(matvec_x86_kernel<T, NT, DUAL>, grid, 32 * kWarps, 0, ctx.stream, a);
        else
            launch_kernel(matvec_int8_kernel<T, NT, DUAL>, grid, 32 * kWarps, 0, ctx.stream, a);
    };
    auto launch = [&]<GgmlType T, bool DUAL>() {
        switch (tile_tokens) {
            case 1:
                launch_nt.template operator()<T, 1, DUAL>();
                break;
            case 2:
                launch_nt.template operator()<T, 2, DUAL>();
                break;
            case 4:
                launch_nt.template operator()<T, 4, DUAL>();
                break;
            default:
                launch_nt.template operator()<T, 8, DUAL>();
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
