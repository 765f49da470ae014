// Mamba2 ops on the GPU (spec architectures §6.7): the causal depthwise conv
// over each sequence's rolling conv state and the selective scan.
//
// A batch may interleave sequences and the host does not look at seq_ids
// (device memory), so a first kernel links each token to the previous token
// of its sequence in the batch (prev) and marks each sequence's last token.
// The conv is then fully parallel over (token, channel): the K-1 earlier
// inputs come from the prev chain and, past its start, from the sequence's
// conv state; a second kernel writes the new states.
//
// The scan is sequential in tokens, as the CPU's, and parallel over heads and
// state rows: one warp owns one row S[h][p][0..N) in registers (N/32 values a
// lane) while the batch's tokens stream past, switching states when the
// sequence changes. No chunked (SSD) form for prefill: the CPU needs one to
// use its cores on a single sequence, but here one sequence already gives
// H*P independent rows (4,096 warps for Nemotron-3-Nano, about 31 per SM of
// an H100), each step a few FMAs per lane on B/C rows that every warp of a
// group shares through L1/L2. Estimated at about 0.1 ms per layer for a
// 512-token batch, against tens of ms for the batch's matrix products; the
// gpu-check benchmark's prefill row is where a surprise would show.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_expert_activation.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_ops.h"

namespace moeserve::cuda {
namespace {

constexpr int kMaxConvTaps = 8;      // K <= 8 (Mamba2 uses 4)
constexpr int kMaxStatePerLane = 8;  // d_state <= 256

// prev[t]: the previous token of seq_ids[t] in the batch, or -1; last[t]: no later one.
__global__ void seq_links_kernel(const int32_t* seq_ids, int64_t n_tokens, int32_t* prev, uint8_t* last) {
    kernel_prologue();
    const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (t >= n_tokens) return;
    const int32_t s = seq_ids[t];
    int64_t p = t - 1;
    while (p >= 0 && seq_ids[p] != s) --p;
    prev[t] = static_cast<int32_t>(p);
    int64_t nx = t + 1;
    while (nx < n_tokens && seq_ids[nx] != s) ++nx;
    last[t] = nx >= n_tokens;
}

// The conv input d steps before token t (d = 0: t itself) of channel c.
__device__ __forceinline__ void conv_window(const float* x, int64_t x_stride, const float* state, int K, int64_t t,
                                            int64_t c, const int32_t* prev, float* win /* [K], oldest first */) {
    int64_t cur = t;
    int in_batch = 0;  // how many of the steps back are tokens of the batch
    win[K - 1] = x[t * x_stride + c];
    for (int d = 1; d < K; ++d) {
        if (cur >= 0) cur = prev[cur];
        if (cur >= 0) {
            win[K - 1 - d] = x[cur * x_stride + c];
            ++in_batch;
        } else {
            // state[c][K-2] is the sequence's newest earlier input
            win[K - 1 - d] = state[c * (K - 1) + (K - 1) - (d - in_batch)];
        }
    }
}

// grid: (ceil(C / threads), n_tokens)
__global__ void conv_kernel(const float* x, int64_t x_stride, int64_t C, int K, const float* w, const float* bias,
                            const int32_t* seq_ids, const int32_t* prev, const float* conv_states, int64_t seq_stride,
                            float* out) {
    kernel_prologue();
    const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    const int64_t t = blockIdx.y;
    if (c >= C) return;
    float win[kMaxConvTaps];
    conv_window(x, x_stride, conv_states + seq_ids[t] * seq_stride, K, t, c, prev, win);
    const float* wc = w + c * K;  // [K], oldest tap first
    float sum = 0.0f;
    for (int k = 0; k < K - 1; ++k) sum += win[k] * wc[k];
    float s = sum + win[K - 1] * wc[K - 1];
    if (bias) s += bias[c];
    out[t * C + c] = cpu_silu(s);
}

// The new conv state of each sequence: its last K-1 inputs. grid as conv_kernel.
__global__ void conv_state_kernel(const float* x, int64_t x_stride, int64_t C, int K, const int32_t* seq_ids,
                                  const int32_t* prev, const uint8_t* last, float* conv_states, int64_t seq_stride) {
    kernel_prologue();
    const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    const int64_t t = blockIdx.y;
    if (c >= C || !last[t]) return;
    float* state = conv_states + seq_ids[t] * seq_stride;
    float win[kMaxConvTaps];
    conv_window(x, x_stride, state, K, t, c, prev, win);  // reads this thread's channel only
    for (int k = 0; k + 1 < K; ++k) state[c * (K - 1) + k] = win[k + 1];
}

__device__ __forceinline__ float softplus(float v) {
    return v > 20.0f ? v : log1pf(__expf(v));
}

struct ScanArgs {
    const float* xbc;
    const float* dt;
    int64_t dt_stride, n_tokens;
    const int32_t* seq_ids;
    float* ssm;
    int64_t seq_stride;
    int H, P, N, G;
    const float *dt_bias, *a, *d;
    float* y;
};

// grid: (ceil(P / warps), H); one warp per state row (h, p).
__global__ void scan_kernel(ScanArgs s) {
    kernel_prologue();
    const int lane = threadIdx.x % 32;
    const int p = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int h = blockIdx.y;
    if (p >= s.P) return;  // whole warps only: P rows per head
    const int g = h / (s.H / s.G);
    const int64_t d_inner = static_cast<int64_t>(s.H) * s.P;
    const int64_t C = d_inner + 2 * static_cast<int64_t>(s.G) * s.N;
    const int64_t row = (static_cast<int64_t>(h) * s.P + p) * s.N;  // S[h][p][0..N) within a sequence's state
    const float a = s.a[h], dt_bias = s.dt_bias[h], dskip = s.d[h];
    float S[kMaxStatePerLane];
    int32_t cur = -1;
    for (int64_t t = 0; t < s.n_tokens; ++t) {
        const int32_t seq = s.seq_ids[t];
        if (seq != cur) {  // switch states: write back the old one, load the new
            if (cur >= 0) {
                float* st = s.ssm + cur * s.seq_stride + row;
#pragma unroll
                for (int k = 0; k < kMaxStatePerLane; ++k)
                    if (lane + 32 * k < s.N) st[lane + 32 * k] = S[k];
            }
            const float* st = s.ssm + seq * s.seq_stride + row;
#pragma unroll
            for (int k = 0; k < kMaxStatePerLane; ++k) S[k] = lane + 32 * k < s.N ? st[lane + 32 * k] : 0.0f;
            cur = seq;
        }
        const float* xt = s.xbc + t * C;
        const float xv = xt[static_cast<int64_t>(h) * s.P + p];
        const float* B = xt + d_inner + static_cast<int64_t>(g) * s.N;
        const float* Cm = B + static_cast<int64_t>(s.G) * s.N;
        const float sp = softplus(s.dt[t * s.dt_stride + h] + dt_bias);
        const float dA = __expf(sp * a);
        const float xdt = xv * sp;
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < kMaxStatePerLane; ++k) {
            const int n = lane + 32 * k;
            if (n < s.N) {
                S[k] = S[k] * dA + B[n] * xdt;
                sum += S[k] * Cm[n];
            }
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) s.y[t * d_inner + static_cast<int64_t>(h) * s.P + p] = sum + xv * dskip;
    }
    if (cur >= 0) {
        float* st = s.ssm + cur * s.seq_stride + row;
#pragma unroll
        for (int k = 0; k < kMaxStatePerLane; ++k)
            if (lane + 32 * k < s.N) st[lane + 32 * k] = S[k];
    }
}

}  // namespace

void ssm_conv(Context& ctx, const RecurrentLayer& state, const float* x, int64_t x_stride, int64_t n_tokens,
              const int32_t* seq_ids, const Weight& conv, const Weight& bias, float* out) {
    if (n_tokens <= 0) return;
    const int K = static_cast<int>(conv.ne[0]);
    const int64_t C = conv.ne[1];
    if (conv.type != GgmlType::F32 || K < 1 || K > kMaxConvTaps)
        throw std::invalid_argument("ssm_conv: " + conv.name + " must be an f32 kernel of at most " +
                                    std::to_string(kMaxConvTaps) + " taps");
    if (n_tokens > 65535) throw std::invalid_argument("ssm_conv: at most 65535 tokens per batch");
    int32_t* prev = ctx.scratch->take_n<int32_t>(n_tokens);
    uint8_t* last = ctx.scratch->take_n<uint8_t>(n_tokens);
    launch_kernel(seq_links_kernel, static_cast<unsigned>((n_tokens + 127) / 128), 128, 0, ctx.stream, seq_ids,
                  n_tokens, prev, last);
    MOESERVE_CUDA_CHECK_LAUNCH();
    const dim3 grid(static_cast<unsigned>((C + 127) / 128), static_cast<unsigned>(n_tokens));
    launch_kernel(conv_kernel, grid, 128, 0, ctx.stream, x, x_stride, C, K, conv.f32(), bias ? bias.f32() : nullptr,
                  seq_ids, prev, state.conv, state.seq_stride, out);
    MOESERVE_CUDA_CHECK_LAUNCH();
    if (K > 1) {
        launch_kernel(conv_state_kernel, grid, 128, 0, ctx.stream, x, x_stride, C, K, seq_ids, prev, last, state.conv,
                      state.seq_stride);
        MOESERVE_CUDA_CHECK_LAUNCH();
    }
}

void ssm_scan(Context& ctx, const RecurrentLayer& state, const float* xbc, const float* dt, int64_t dt_stride,
              int64_t n_tokens, const int32_t* seq_ids, const SsmParams& p, float* y) {
    if (n_tokens <= 0) return;
    if (p.n_head <= 0 || p.n_group <= 0 || p.n_head % p.n_group != 0 || p.d_state <= 0 ||
        p.d_state > 32 * kMaxStatePerLane || p.head_dim <= 0)
        throw std::invalid_argument("ssm_scan: unsupported shape (heads " + std::to_string(p.n_head) + ", groups " +
                                    std::to_string(p.n_group) + ", state " + std::to_string(p.d_state) + ")");
    ScanArgs s{xbc,       dt,        dt_stride, n_tokens, seq_ids, state.ssm, state.seq_stride, p.n_head, p.head_dim,
               p.d_state, p.n_group, p.dt_bias, p.a,      p.d,     y};
    constexpr int kWarpsPerBlock = 4;
    const dim3 grid(static_cast<unsigned>((p.head_dim + kWarpsPerBlock - 1) / kWarpsPerBlock),
                    static_cast<unsigned>(p.n_head));
    launch_kernel(scan_kernel, grid, 32 * kWarpsPerBlock, 0, ctx.stream, s);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
