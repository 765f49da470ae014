// The activations of a product rounded the way llama.cpp's CPU backend
// rounds them before its dot products: to the dot partner type of the weight
// (or KV cache) they meet, vec_dot_type: q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL,
// q8_1 for Q4_1/Q5_1, q8_K for the K-quants and IQ4_XS, f16 for F16, bf16
// for BF16, nothing for F32. The kernels then multiply the values those
// blocks hold with the dequantized weights in floating point: each product
// is the CPU's integer product scaled, up to the order of float additions,
// so the GPU computes llama.cpp's numbers, not more precise different ones.
//
// Rounding rules as src/quant/quantize.cpp (quantize_row_activation): q8_0
// and q8_1 with the x86 rule (d = fp16(amax/127), q = rint(x * 127/amax)),
// q8_K with ggml's rule (iscale = -127/max of the signed largest value, the
// first on a tie; q = min(127, rint(iscale*x)); d = 1/iscale). The _rn
// intrinsics keep --use_fast_math from changing any of these operations.
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_q8_rounding.cuh"
#include "quant/vec_dot.h"

namespace moeserve::cuda {
namespace {

constexpr int kSpan = kQ8Span;
constexpr int kValuesPerLane = kQ8ValuesPerLane;
constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ void store(float* d, float v) {
    *d = v;
}
__device__ __forceinline__ void store(__half* d, float v) {
    *d = __float2half_rn(v);
}

// dst[g][r] (dense [n_groups, n_rows, width]) = rounded row r of group g of
// src (row rows[r] when rows is given). grid: (spans / kWarpsPerBlock, rows
// from row0, n_groups); one warp per 256-value span, 8 consecutive values per
// lane.
template <class Out>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    round_rows_kernel(GgmlType act, const float* src, int64_t row_stride, int64_t group_stride, const int32_t* rows,
                      int64_t n_rows, int64_t width, int64_t row0, Out* dst, Q8Rows q8) {
    kernel_prologue();
    const int64_t span = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (span * kSpan >= width) return;  // whole warps leave: the shuffles below see full warps
    const int64_t r = row0 + blockIdx.y, g = blockIdx.z;
    const int64_t first = span * kSpan + (threadIdx.x & 31) * kValuesPerLane;
    const float* s = src + g * group_stride + (rows ? rows[r] : r) * row_stride;
    Out* d = dst ? dst + (g * n_rows + r) * width : nullptr;
    float v[kValuesPerLane];
    for (int j = 0; j < kValuesPerLane; ++j) v[j] = first + j < width ? s[first + j] : 0.0f;
    switch (act) {
        case GgmlType::Q8_0:
        case GgmlType::Q8_1: {
            int q[kValuesPerLane];
            float d;
            round_q8_0(v, q, d);
            if (q8.q) store_q8(q8, false, g * n_rows + r, width, span, q, d);
            break;
        }
        case GgmlType::Q8_K: {
            int q[kValuesPerLane];
            float d;
            round_q8_k(v, q, d);
            if (q8.q) store_q8(q8, true, g * n_rows + r, width, span, q, d);
            break;
        }
        case GgmlType::F16:
            for (int j = 0; j < kValuesPerLane; ++j) v[j] = __half2float(__float2half_rn(v[j]));
            break;
        case GgmlType::BF16:
            for (int j = 0; j < kValuesPerLane; ++j) v[j] = bf16_bits_to_f32(f32_to_bf16_bits(v[j]));
            break;
        default:  // F32: as it is
            break;
    }
    if (dst)  // null: only the int8 form is wanted
        for (int j = 0; j < kValuesPerLane; ++j)
            if (first + j < width) store(d + first + j, v[j]);
}

template <class Out>
void launch_round_rows(Context& ctx, GgmlType act, const float* src, int64_t row_stride, int64_t group_stride,
                       const int32_t* rows, int64_t n_rows, int64_t width, int n_groups, Out* dst,
                       const Q8Rows* q8 = nullptr) {
    if (n_rows == 0 || width == 0 || n_groups == 0) return;
    if (q8 && ((act != GgmlType::Q8_K && act != GgmlType::Q8_0) || width % kSpan != 0))
        throw std::invalid_argument("activation rounding: no int8 form for " + std::string(ggml_type_name(act)) +
                                    " rows of " + std::to_string(width) + " values (q8_K and q8_0, whole 256s)");
    const int64_t block = act == GgmlType::Q8_K ? kSpan : act == GgmlType::Q8_0 || act == GgmlType::Q8_1 ? 32 : 1;
    if (width % block != 0)
        throw std::invalid_argument("activation rounding: rows of " + std::to_string(width) +
                                    " values are not whole blocks of " + std::string(ggml_type_name(act)));
    const int64_t spans = (width + kSpan - 1) / kSpan;
    const unsigned grid_x = static_cast<unsigned>((spans + kWarpsPerBlock - 1) / kWarpsPerBlock);
    for (int64_t row0 = 0; row0 < n_rows; row0 += kMaxGridY) {
        const dim3 grid(grid_x, static_cast<unsigned>(std::min(kMaxGridY, n_rows - row0)),
                        static_cast<unsigned>(n_groups));
        launch_kernel(round_rows_kernel<Out>, grid, 32 * kWarpsPerBlock, 0, ctx.stream, act, src, row_stride,
                      group_stride, rows, n_rows, width, row0, dst, q8 ? *q8 : Q8Rows{});
        MOESERVE_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace

GgmlType activation_rounding(GgmlType partner) {
    return vec_dot_type(partner);
}

void round_rows_f32(Context& ctx, GgmlType act, const float* src, int64_t row_stride, int64_t group_stride,
                    int64_t n_rows, int64_t width, int n_groups, float* dst, const Q8Rows* q8) {
    launch_round_rows(ctx, act, src, row_stride, group_stride, nullptr, n_rows, width, n_groups, dst, q8);
}

void round_rows_f16(Context& ctx, GgmlType act, const float* src, int64_t row_stride, int64_t group_stride,
                    int64_t n_rows, int64_t width, int n_groups, __half* dst) {
    launch_round_rows(ctx, act, src, row_stride, group_stride, nullptr, n_rows, width, n_groups, dst);
}

void gather_round_rows_f32(Context& ctx, GgmlType act, const float* src, int64_t row_stride, const int32_t* rows,
                           int64_t n_rows, int64_t width, float* dst, const Q8Rows* q8) {
    launch_round_rows(ctx, act, src, row_stride, 0, rows, n_rows, width, 1, dst, q8);
}

Q8Rows take_q8_rows(Context& ctx, int64_t n_rows, int64_t width, GgmlType act) {
    Q8Rows r;
    r.q = ctx.scratch->take_n<int8_t>(static_cast<size_t>(n_rows * width));
    r.d = ctx.scratch->take_n<float>(static_cast<size_t>(n_rows * (width / q8_block(act))));
    if (act == GgmlType::Q8_K) r.bsum = ctx.scratch->take_n<int32_t>(static_cast<size_t>(n_rows * (width / 16)));
    return r;
}

}  // namespace moeserve::cuda
