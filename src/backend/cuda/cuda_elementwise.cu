// Elementwise and normalization ops on the GPU: RMSNorm, RoPE, adds, row
// copies and gathers, fill, and the gated grouped RMSNorm of Mamba2.
//
// RoPE repeats the CPU's float operations one by one (the angle by repeated
// multiplication, the YaRN mix, the rotation, with FMAs exactly where the
// CPU has them) with the _rn intrinsics, which --use_fast_math does not turn
// into other FMAs or approximations, and takes cos
// and sin in double rounded to float (the fast-math sinf/cosf lose all
// accuracy at the angles of long contexts). So it matches the CPU closely
// even at positions near a million.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "backend/cuda/cuda_expert_activation.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_q8_rounding.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n, int threads = kThreads) {
    return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 1 << 30));
}

// Σ over the block; every thread gets the result. scratch: 32 floats.
__device__ float block_sum(float v, float* scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int n_warps = (blockDim.x + 31) / 32;
    float s = 0.0f;
    for (int w = 0; w < n_warps; ++w) s += scratch[w];
    return s;
}

// The most elements per thread that rms_norm_kernel keeps in registers
// (rows up to 16 * 256 = 4096 values); longer rows take the loop.
constexpr int kNormMaxPerThread = 16;

// grid: n_rows. With residual: x += residual first (the fused
// add_rms_norm; each thread adds the elements it then squares, so the sums
// are those of add followed by rms_norm). A decode step normalizes one row
// in one block, so the time is memory latency: the row and the weights are
// loaded into registers at once (all loads in flight together, the weights
// while the block reduces) instead of one dependent load per loop step; the
// same sums in the same order either way. ROUND: out's int8 forms too
// (q8_K into q8k, q8_0 into q80), each warp rounding 256-value spans of the
// row it just wrote, as the rounding kernel rounds them (rows of a multiple
// of 256 values, at most kNormMaxPerThread * blockDim.x).
template <bool ROUND>
__global__ void rms_norm_kernel(float* x, const float* residual, const float* w, float eps, int64_t n, float* out,
                                Q8Rows q8k, Q8Rows q80) {
    kernel_prologue();
    __shared__ float scratch[32];
    float* xr = x + blockIdx.x * n;
    float* yr = out + blockIdx.x * n;
    const float* rr = residual ? residual + blockIdx.x * n : nullptr;
    const int64_t step = blockDim.x;
    if (n <= kNormMaxPerThread * step) {
        float v[kNormMaxPerThread], wv[kNormMaxPerThread];
#pragma unroll
        for (int k = 0; k < kNormMaxPerThread; ++k) {
            const int64_t i = threadIdx.x + k * step;
            v[k] = i < n ? xr[i] : 0.0f;
            if (rr && i < n) v[k] += rr[i];
        }
#pragma unroll
        for (int k = 0; k < kNormMaxPerThread; ++k) {
            const int64_t i = threadIdx.x + k * step;
            wv[k] = i < n ? w[i] : 0.0f;
        }
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < kNormMaxPerThread; ++k) {
            const int64_t i = threadIdx.x + k * step;
            if (i < n) {
                if (rr) xr[i] = v[k];
                s += v[k] * v[k];
            }
        }
        const float mean = block_sum(s, scratch) / static_cast<float>(n);
        const float scale = 1.0f / sqrtf(mean + eps);
#pragma unroll
        for (int k = 0; k < kNormMaxPerThread; ++k) {
            const int64_t i = threadIdx.x + k * step;
            if (i < n) yr[i] = (v[k] * scale) * wv[k];
        }
        if constexpr (ROUND) {
            __syncthreads();  // the row, written by every thread, is visible to the whole block
            const int lane = threadIdx.x & 31;
            for (int64_t span = threadIdx.x / 32; span * kQ8Span < n; span += blockDim.x / 32) {
                const int64_t first = span * kQ8Span + lane * kQ8ValuesPerLane;
                float a[kQ8ValuesPerLane], b[kQ8ValuesPerLane];
                for (int j = 0; j < kQ8ValuesPerLane; ++j) a[j] = b[j] = yr[first + j];
                int q[kQ8ValuesPerLane];
                float d;
                round_q8_k(a, q, d);
                store_q8(q8k, true, blockIdx.x, n, span, q, d);
                round_q8_0(b, q, d);
                store_q8(q80, false, blockIdx.x, n, span, q, d);
            }
        }
        return;
    }
    float s = 0.0f;
    if (rr) {
        for (int64_t i = threadIdx.x; i < n; i += step) {
            const float v = xr[i] + rr[i];
            xr[i] = v;
            s += v * v;
        }
    } else {
        for (int64_t i = threadIdx.x; i < n; i += step) s += xr[i] * xr[i];
    }
    const float mean = block_sum(s, scratch) / static_cast<float>(n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < n; i += step) yr[i] = (xr[i] * scale) * w[i];
}

struct RopeConsts {
    RopeMode mode;
    int n_rot, half, n_head, head_dim;
    float theta_scale, freq_scale, ext_factor, corr_low, corr_high, mscale;
    const float* freq_factors;
};

// cos/sin of each rotated pair at `pos`, by the block's threads (the caller
// syncs before reading them).
__device__ void rope_table(int32_t pos, const RopeConsts& c, float* cos_t, float* sin_t) {
    for (int i = threadIdx.x; i < c.half; i += blockDim.x) {
        // theta_base after i multiplications, as the CPU's running product.
        float theta_base = static_cast<float>(pos);
        for (int k = 0; k < i; ++k) theta_base = __fmul_rn(theta_base, c.theta_scale);
        const float ff = c.freq_factors ? c.freq_factors[i] : 1.0f;
        const float theta_extrap = __fdiv_rn(theta_base, ff);
        const float theta_interp = __fmul_rn(c.freq_scale, theta_extrap);
        float theta = theta_interp;
        if (c.ext_factor != 0.0f) {
            const float y = __fdiv_rn(__fsub_rn(static_cast<float>(i), c.corr_low),
                                      fmaxf(0.001f, __fsub_rn(c.corr_high, c.corr_low)));
            const float ramp = __fsub_rn(1.0f, fminf(1.0f, fmaxf(0.0f, y)));
            const float mix = __fmul_rn(ramp, c.ext_factor);
            theta = __fmaf_rn(theta_interp, __fsub_rn(1.0f, mix), __fmul_rn(theta_extrap, mix));
        }
        cos_t[i] = __fmul_rn(static_cast<float>(cos(static_cast<double>(theta))), c.mscale);
        sin_t[i] = __fmul_rn(static_cast<float>(sin(static_cast<double>(theta))), c.mscale);
    }
}

// Pair i of a head: out (may be in) = the rotation of in's two values.
// NORM pairs adjacent dims; NEOX pairs dim i with i + n_rot/2.
__device__ __forceinline__ void rope_pair(const float* in, float* out, int i, const RopeConsts& c, const float* cos_t,
                                          const float* sin_t) {
    const int i0 = c.mode == RopeMode::Neox ? i : 2 * i;
    const int i1 = c.mode == RopeMode::Neox ? i + c.half : 2 * i + 1;
    const float x0 = in[i0], x1 = in[i1];
    out[i0] = __fmaf_rn(x0, cos_t[i], -__fmul_rn(x1, sin_t[i]));
    out[i1] = __fmaf_rn(x0, sin_t[i], __fmul_rn(x1, cos_t[i]));
}

// grid: n_tokens; dynamic smem: 2 * half floats (cos, sin of each pair).
__global__ void rope_kernel(float* x, const int32_t* positions, RopeConsts c) {
    kernel_prologue();
    extern __shared__ float cs[];
    float* cos_t = cs;
    float* sin_t = cs + c.half;
    const int64_t t = blockIdx.x;
    rope_table(positions[t], c, cos_t, sin_t);
    __syncthreads();
    for (int e = threadIdx.x; e < c.n_head * c.half; e += blockDim.x) {
        const int h = e / c.half, i = e % c.half;
        float* v = x + (t * c.n_head + h) * c.head_dim;
        rope_pair(v, v, i, c, cos_t, sin_t);
    }
}

// The most values per lane rms_norm_rope_kernel keeps in registers (heads
// up to 8 * 32 = 256 values); larger heads take the loop.
constexpr int kHeadMaxPerLane = 8;

// Per-head RMSNorm, then RoPE, one warp per head. grid: (n_tokens, head
// groups of one per warp), so that a decode step's heads run on as many SMs
// (each block makes its own cos/sin table); dynamic smem: 2 * half (cos,
// sin) + a head_dim row per warp. The head's values and weights are loaded
// at once (in registers) where they fit; the sums are the loop's either way.
// With x2 (n_head2 heads, weight w2): blocks past the first tensor's head
// groups take the second tensor's heads (q and k in one launch).
__global__ void rms_norm_rope_kernel(float* x, const float* w, float eps, const int32_t* positions, RopeConsts c,
                                     float* x2, const float* w2, int n_head2) {
    kernel_prologue();
    extern __shared__ float cs[];
    float* cos_t = cs;
    float* sin_t = cs + c.half;
    const int64_t t = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    float* row = cs + 2 * c.half + warp * c.head_dim;
    rope_table(positions[t], c, cos_t, sin_t);
    __syncthreads();
    const int groups1 = (c.n_head + n_warps - 1) / n_warps;  // blocks of the first tensor's heads
    const bool second = static_cast<int>(blockIdx.y) >= groups1;
    const int n_head = second ? n_head2 : c.n_head;
    const int h = (static_cast<int>(blockIdx.y) - (second ? groups1 : 0)) * n_warps + warp;
    if (h >= n_head) return;  // no block-wide sync follows
    if (second) x = x2, w = w2;
    float* v = x + (t * n_head + h) * c.head_dim;
    float scale;
    if (c.head_dim <= 32 * kHeadMaxPerLane) {
        float xv[kHeadMaxPerLane], wv[kHeadMaxPerLane];
#pragma unroll
        for (int k = 0; k < kHeadMaxPerLane; ++k) {
            const int j = lane + 32 * k;
            xv[k] = j < c.head_dim ? v[j] : 0.0f;
            wv[k] = j < c.head_dim ? w[j] : 0.0f;
        }
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < kHeadMaxPerLane; ++k)
            if (lane + 32 * k < c.head_dim) s += xv[k] * xv[k];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        scale = 1.0f / sqrtf(s / static_cast<float>(c.head_dim) + eps);  // as rms_norm_kernel
#pragma unroll
        for (int k = 0; k < kHeadMaxPerLane; ++k) {
            const int j = lane + 32 * k;
            if (j < c.head_dim) row[j] = (xv[k] * scale) * wv[k];
        }
    } else {
        float s = 0.0f;
        for (int j = lane; j < c.head_dim; j += 32) s += v[j] * v[j];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        scale = 1.0f / sqrtf(s / static_cast<float>(c.head_dim) + eps);
        for (int j = lane; j < c.head_dim; j += 32) row[j] = (v[j] * scale) * w[j];
    }
    __syncwarp();
    for (int i = lane; i < c.half; i += 32) rope_pair(row, v, i, c, cos_t, sin_t);
    for (int j = c.n_rot + lane; j < c.head_dim; j += 32) v[j] = row[j];  // past the rotated dims
}

float yarn_corr_dim(int n_rot, int n_ctx_orig, float beta, float base) {
    return n_rot * std::log(n_ctx_orig / (beta * 2.0f * static_cast<float>(M_PI))) / (2.0f * std::log(base));
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
    kernel_prologue();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        y[i] += x[i];
}

__global__ void add_row_broadcast_kernel(float* y, const float* b, int64_t n_rows, int64_t n) {
    kernel_prologue();
    const int64_t total = n_rows * n;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
        y[i] += b[i % n];
}

// grid: (ceil(width / threads), n_rows)
__global__ void copy_rows_kernel(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t width) {
    kernel_prologue();
    const int64_t r = blockIdx.y;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < width; i += int64_t(gridDim.x) * blockDim.x)
        dst[r * dst_stride + i] = src[r * src_stride + i];
}

__global__ void gather_rows_kernel(float* dst, const float* src, int64_t width, const int64_t* rows) {
    kernel_prologue();
    const int64_t r = blockIdx.y;
    const int64_t from = rows[r];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < width; i += int64_t(gridDim.x) * blockDim.x)
        dst[r * width + i] = src[from * width + i];
}

__global__ void fill_kernel(float* y, float value, int64_t n) {
    kernel_prologue();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        y[i] = value;
}

// grid: (n_group, n_rows); y := RMSNorm(y ⊙ silu(z)) * w over one group.
__global__ void gated_group_norm_kernel(float* y, const float* z, int64_t z_stride, const float* w, float eps,
                                        int64_t n, int64_t gs) {
    kernel_prologue();
    __shared__ float scratch[32];
    const int64_t r = blockIdx.y, g0 = blockIdx.x * gs;
    float* yr = y + r * n + g0;
    const float* zr = z + r * z_stride + g0;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < gs; i += blockDim.x) {
        const float v = __fmul_rn(cpu_silu(zr[i]), yr[i]);
        yr[i] = v;  // each thread rereads only its own elements below
        s += v * v;
    }
    const float mean = block_sum(s, scratch) / static_cast<float>(gs);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < gs; i += blockDim.x) yr[i] = (yr[i] * scale) * w[g0 + i];
}

}  // namespace

void rms_norm(Context& ctx, const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) {
    if (n_rows <= 0 || n <= 0) return;
    // x is only read without a residual.
    launch_kernel(rms_norm_kernel<false>, static_cast<unsigned>(n_rows), kThreads, 0, ctx.stream, const_cast<float*>(x),
                  nullptr, w, eps, n, out, Q8Rows{}, Q8Rows{});
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void add_rms_norm(Context& ctx, float* x, const float* y, const float* w, float eps, int64_t n_rows, int64_t n,
                  float* out) {
    if (n_rows <= 0 || n <= 0) return;
    launch_kernel(rms_norm_kernel<false>, static_cast<unsigned>(n_rows), kThreads, 0, ctx.stream, x, y, w, eps, n, out,
                  Q8Rows{}, Q8Rows{});
    MOESERVE_CUDA_CHECK_LAUNCH();
}

NormRows rms_norm_rounded(Context& ctx, float* x, const float* residual, const float* w, float eps, int64_t n_rows,
                          int64_t n, float* out) {
    NormRows r;
    if (n_rows <= 0 || n <= 0) return r;
    if (n % kQ8Span != 0 || n > kNormMaxPerThread * kThreads) {  // no int8 form, or the kernel's looping path
        if (residual)
            add_rms_norm(ctx, x, residual, w, eps, n_rows, n, out);
        else
            rms_norm(ctx, x, w, eps, n_rows, n, out);
        return r;
    }
    r.rows = out, r.n_rows = n_rows, r.width = n;
    r.q8k = take_q8_rows(ctx, n_rows, n, GgmlType::Q8_K);
    r.q80 = take_q8_rows(ctx, n_rows, n, GgmlType::Q8_0);
    launch_kernel(rms_norm_kernel<true>, static_cast<unsigned>(n_rows), kThreads, 0, ctx.stream, x, residual, w, eps, n,
                  out, r.q8k, r.q80);
    MOESERVE_CUDA_CHECK_LAUNCH();
    return r;
}

namespace {

// The per-call constants exactly as the CPU backend computes them (host float math).
RopeConsts rope_consts(const RopeParams& p, int n_head, int head_dim) {
    if (p.n_rot > head_dim || p.n_rot % 2 != 0)
        throw std::invalid_argument("rope: n_rot must be even and at most the head size");
    RopeConsts c{};
    c.mode = p.mode;
    c.n_rot = p.n_rot;
    c.half = p.n_rot / 2;
    c.n_head = n_head;
    c.head_dim = head_dim;
    c.theta_scale = std::pow(p.freq_base, -2.0f / p.n_rot);
    c.freq_scale = p.freq_scale;
    c.ext_factor = p.ext_factor;
    c.mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
        c.corr_low = std::max(0.0f, std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
        c.corr_high = std::min(static_cast<float>(p.n_rot - 1),
                               std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
        c.mscale *= std::fma(0.1f, std::log(1.0f / p.freq_scale), 1.0f);
    }
    c.freq_factors = p.freq_factors;
    return c;
}

}  // namespace

void rope(Context& ctx, float* x, int64_t n_tokens, int n_head, int head_dim, const int32_t* positions,
          const RopeParams& p) {
    if (n_tokens <= 0 || p.n_rot <= 0) return;
    const RopeConsts c = rope_consts(p, n_head, head_dim);
    launch_kernel(rope_kernel, static_cast<unsigned>(n_tokens), 128, 2 * c.half * sizeof(float), ctx.stream, x,
                  positions, c);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

namespace {

// rms_norm_rope over x (n_head heads) and, when n_head2 > 0, x2 in the same launch.
void launch_rms_norm_rope(Context& ctx, float* x, const float* w, int n_head, float* x2, const float* w2, int n_head2,
                          float eps, int64_t n_tokens, int head_dim, const int32_t* positions, const RopeParams& p) {
    constexpr int kNormRopeThreads = 128, kWarps = kNormRopeThreads / 32;
    const RopeConsts c = rope_consts(p, n_head, head_dim);
    const size_t smem = (2 * c.half + kWarps * head_dim) * sizeof(float);
    if (smem > 48 * 1024) raise_dynamic_smem_limit(reinterpret_cast<const void*>(rms_norm_rope_kernel), smem);
    const int groups = (n_head + kWarps - 1) / kWarps + (n_head2 + kWarps - 1) / kWarps;
    const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>(groups));
    launch_kernel(rms_norm_rope_kernel, grid, kNormRopeThreads, smem, ctx.stream, x, w, eps, positions, c, x2, w2,
                  n_head2);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rms_norm_rope(Context& ctx, float* x, const float* w, float eps, int64_t n_tokens, int n_head, int head_dim,
                   const int32_t* positions, const RopeParams& p) {
    if (n_tokens <= 0 || n_head <= 0 || head_dim <= 0) return;
    if (p.n_rot <= 0) {  // nothing to rotate
        rms_norm(ctx, x, w, eps, n_tokens * n_head, head_dim, x);
        return;
    }
    launch_rms_norm_rope(ctx, x, w, n_head, nullptr, nullptr, 0, eps, n_tokens, head_dim, positions, p);
}

void rms_norm_rope_qk(Context& ctx, float* q, const float* wq, int n_head_q, float* k, const float* wk, int n_head_k,
                      float eps, int64_t n_tokens, int head_dim, const int32_t* positions, const RopeParams& p) {
    if (n_tokens <= 0 || n_head_q <= 0 || n_head_k <= 0 || head_dim <= 0 || p.n_rot <= 0) {
        rms_norm_rope(ctx, q, wq, eps, n_tokens, n_head_q, head_dim, positions, p);
        rms_norm_rope(ctx, k, wk, eps, n_tokens, n_head_k, head_dim, positions, p);
        return;
    }
    launch_rms_norm_rope(ctx, q, wq, n_head_q, k, wk, n_head_k, eps, n_tokens, head_dim, positions, p);
}

void add(Context& ctx, float* y, const float* x, int64_t n) {
    if (n <= 0) return;
    launch_kernel(add_kernel, blocks_for(n), kThreads, 0, ctx.stream, y, x, n);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void add_row_broadcast(Context& ctx, float* y, const float* b, int64_t n_rows, int64_t n) {
    if (n_rows <= 0 || n <= 0) return;
    launch_kernel(add_row_broadcast_kernel, blocks_for(n_rows * n), kThreads, 0, ctx.stream, y, b, n_rows, n);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void copy_rows(Context& ctx, float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
               int64_t width) {
    if (n_rows <= 0 || width <= 0) return;
    if (n_rows > 65535) {  // grid.y limit: split into pieces
        for (int64_t r0 = 0; r0 < n_rows; r0 += 65535)
            copy_rows(ctx, dst + r0 * dst_stride, dst_stride, src + r0 * src_stride, src_stride,
                      std::min<int64_t>(65535, n_rows - r0), width);
        return;
    }
    const dim3 grid(blocks_for(width), static_cast<unsigned>(n_rows));
    launch_kernel(copy_rows_kernel, grid, kThreads, 0, ctx.stream, dst, dst_stride, src, src_stride, width);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void gather_rows(Context& ctx, float* dst, const float* src, int64_t width, const int64_t* rows, int64_t n_rows) {
    if (n_rows <= 0 || width <= 0) return;
    if (n_rows > 65535) {
        for (int64_t r0 = 0; r0 < n_rows; r0 += 65535)
            gather_rows(ctx, dst + r0 * width, src, width, rows + r0, std::min<int64_t>(65535, n_rows - r0));
        return;
    }
    const dim3 grid(blocks_for(width), static_cast<unsigned>(n_rows));
    launch_kernel(gather_rows_kernel, grid, kThreads, 0, ctx.stream, dst, src, width, rows);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void fill(Context& ctx, float* y, float value, int64_t n) {
    if (n <= 0) return;
    launch_kernel(fill_kernel, blocks_for(n), kThreads, 0, ctx.stream, y, value, n);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void gated_group_norm(Context& ctx, float* y, const float* z, int64_t z_stride, const float* w, float eps,
                      int64_t n_rows, int64_t n, int n_group) {
    if (n_rows <= 0 || n <= 0) return;
    if (n_group <= 0 || n % n_group != 0)
        throw std::invalid_argument("gated_group_norm: the width is not a multiple of the group count");
    if (n_rows > 65535) {
        for (int64_t r0 = 0; r0 < n_rows; r0 += 65535)
            gated_group_norm(ctx, y + r0 * n, z + r0 * z_stride, z_stride, w, eps,
                             std::min<int64_t>(65535, n_rows - r0), n, n_group);
        return;
    }
    const dim3 grid(static_cast<unsigned>(n_group), static_cast<unsigned>(n_rows));
    launch_kernel(gated_group_norm_kernel, grid, kThreads, 0, ctx.stream, y, z, z_stride, w, eps, n, n / n_group);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
