// Matrix products on the GPU straight from the GGUF weight blocks.
//
// Small batches (decode): one warp per weight row; lanes take consecutive
// 8-value chunks of the row's blocks (coalesced loads), dequantize them in
// registers and multiply with up to 8 tokens' f32 activations, so each weight
// byte is read once per 8 tokens; f32 accumulation, warp-shuffle reduction.
// Activations are read through the read-only cache: every warp of an SM reads
// the same few rows, so they stay in L1.
//
// Large batches (prefill): the weight is dequantized to f16 (in slices of
// rows) and multiplied with the f16-converted activations by cuBLAS with f32
// accumulation (tensor cores); F32 weights go through an f32 GEMM as they are.
//
// Either way the activations are first rounded as llama.cpp's CPU rounds
// them for the weight's type (q8_0, q8_K, f16, ...: cuda_activation_rounding.cu).
#include <algorithm>
#include <array>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_expert_activation.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_matvec_tile.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_quant_blocks.cuh"

// (No fmt here: its headers do not compile under nvcc.)

namespace moeserve::cuda {
namespace {

constexpr int kMatvecWarps = 4;  // weight rows per block

// Where lane data for chunk ci of a row lies: its block, and a spot inside
// the block spread evenly over the chunks, so that the 32 lanes of a step
// touch every 32-byte sector of the step's blocks.
template <typename B>
__device__ __forceinline__ const uint8_t* chunk_spot(const uint8_t* row, int ci) {
    return row + static_cast<size_t>(ci / B::kChunks) * B::kBytes + (ci % B::kChunks) * B::kBytes / B::kChunks;
}

__device__ __forceinline__ void prefetch_l1(const uint8_t* p) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}

// DUAL: each warp also takes the same row of a second weight (a.w2, same
// type and shape) and writes act(W·x, W2·x) (the gate and up projections of
// a SwiGLU FFN in one pass, reading x once); without it an a.fused act
// (ReLU²) applies to W·x.
template <GgmlType T, int NT, bool DUAL>
__global__ void __launch_bounds__(32 * kMatvecWarps) matvec_kernel(MatvecArgs a) {
    kernel_prologue();
    using B = BlockDequant<T>;
    MatvecBlock mb;
    if (!matvec_block<NT>(a, mb)) return;
    const int matrix = mb.matrix, count = mb.count;
    const float* x = a.x + mb.x_off + mb.first * a.x_stride;
    float* y = a.y + mb.y_off + mb.first * a.y_stride;
    const int lane = threadIdx.x & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kMatvecWarps + (threadIdx.x >> 5);
    if (row >= a.out) return;  // whole warps leave; no block-wide sync follows
    const uint8_t* wr = a.w + matrix * a.matrix_bytes + row * a.row_bytes;
    const uint8_t* wr2 = DUAL ? a.w2 + matrix * a.matrix_bytes + row * a.row_bytes : nullptr;

    float acc[NT], acc2[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = acc2[t] = 0.0f;
    const int n_chunks = static_cast<int>(a.in / 8);
    // A step's loads depend on each other (block header, then the lane's
    // codes), so each waits for memory in turn; with the row's next steps
    // already on their way to L1, only the first step does.
    const int ahead = 32 * a.prefetch_steps;
    for (int ci = lane; ci < min(n_chunks, lane + ahead); ci += 32) {
        prefetch_l1(chunk_spot<B>(wr, ci));
        if constexpr (DUAL) prefetch_l1(chunk_spot<B>(wr2, ci));
    }
#pragma unroll 2
    for (int ci = lane; ci < n_chunks; ci += 32) {
        if (ahead > 0 && ci + ahead < n_chunks) {
            prefetch_l1(chunk_spot<B>(wr, ci + ahead));
            if constexpr (DUAL) prefetch_l1(chunk_spot<B>(wr2, ci + ahead));
        }
        const int blk = ci / B::kChunks, c = ci % B::kChunks;
        float v[8], v2[8];
        int e0, e1;
        B::chunk(wr + static_cast<size_t>(blk) * B::kBytes, c, v, e0, e1);
        if constexpr (DUAL) B::chunk(wr2 + static_cast<size_t>(blk) * B::kBytes, c, v2, e0, e1);
        const float* xb = x + static_cast<int64_t>(blk) * B::kElems;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (NT == 1 || t < count) {  // a block with work has at least one token
                const float4 p = __ldg(reinterpret_cast<const float4*>(xb + t * a.x_stride + e0));
                const float4 q = __ldg(reinterpret_cast<const float4*>(xb + t * a.x_stride + e1));
                float s = acc[t];
                s = fmaf(v[0], p.x, s), s = fmaf(v[1], p.y, s), s = fmaf(v[2], p.z, s), s = fmaf(v[3], p.w, s);
                s = fmaf(v[4], q.x, s), s = fmaf(v[5], q.y, s), s = fmaf(v[6], q.z, s), s = fmaf(v[7], q.w, s);
                acc[t] = s;
                if constexpr (DUAL) {
                    float s2 = acc2[t];
                    s2 = fmaf(v2[0], p.x, s2), s2 = fmaf(v2[1], p.y, s2), s2 = fmaf(v2[2], p.z, s2);
                    s2 = fmaf(v2[3], p.w, s2), s2 = fmaf(v2[4], q.x, s2), s2 = fmaf(v2[5], q.y, s2);
                    s2 = fmaf(v2[6], q.z, s2), s2 = fmaf(v2[7], q.w, s2);
                    acc2[t] = s2;
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        float s = warp_sum(acc[t]);
        if constexpr (DUAL) s = expert_activation(s, warp_sum(acc2[t]), a.act);
        if (!DUAL && a.fused) s = expert_activation(s, 0.0f, a.act);
        if (lane == 0 && t < count) y[t * a.y_stride + row] = s;
    }
}

// One thread per 8-value chunk of rows [0, n_rows) of w (row stride row_bytes).
template <GgmlType T>
__global__ void dequantize_f16_kernel(const uint8_t* w, size_t row_bytes, int64_t in, int64_t n_rows, __half* dst) {
    kernel_prologue();
    using B = BlockDequant<T>;
    const int64_t chunks_per_row = in / 8;
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n_rows * chunks_per_row) return;
    const int64_t r = i / chunks_per_row;
    const int ci = static_cast<int>(i % chunks_per_row);
    const int blk = ci / B::kChunks, c = ci % B::kChunks;
    float v[8];
    int e0, e1;
    B::chunk(w + r * row_bytes + static_cast<size_t>(blk) * B::kBytes, c, v, e0, e1);
    __half* o = dst + r * in + static_cast<int64_t>(blk) * B::kElems;
    const __half2 h[4] = {__floats2half2_rn(v[0], v[1]), __floats2half2_rn(v[2], v[3]), __floats2half2_rn(v[4], v[5]),
                          __floats2half2_rn(v[6], v[7])};
    reinterpret_cast<__half2*>(o + e0)[0] = h[0];
    reinterpret_cast<__half2*>(o + e0)[1] = h[1];
    reinterpret_cast<__half2*>(o + e1)[0] = h[2];
    reinterpret_cast<__half2*>(o + e1)[1] = h[3];
}

// out[t] = row tokens[t] of the table, one thread per 8-value chunk.
template <GgmlType T>
__global__ void embed_kernel(const uint8_t* table, size_t row_bytes, int64_t width, const int32_t* tokens, float* out) {
    kernel_prologue();
    using B = BlockDequant<T>;
    const int64_t t = blockIdx.y;
    const int ci = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (ci >= width / 8) return;
    const int blk = ci / B::kChunks, c = ci % B::kChunks;
    float v[8];
    int e0, e1;
    B::chunk(table + static_cast<size_t>(tokens[t]) * row_bytes + static_cast<size_t>(blk) * B::kBytes, c, v, e0, e1);
    float* o = out + t * width + static_cast<int64_t>(blk) * B::kElems;
    reinterpret_cast<float4*>(o + e0)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(o + e1)[0] = make_float4(v[4], v[5], v[6], v[7]);
}

// (values per block, alignment the loads need) of a type; {0, 0} without a device dequantizer.
std::pair<int64_t, int> block_layout(GgmlType type) {
    std::pair<int64_t, int> r{0, 0};
    dispatch_weight_type(type, [&]<GgmlType T>() { r = {BlockDequant<T>::kElems, BlockDequant<T>::kAlign}; });
    return r;
}

bool aligned16(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

void check_cuda_weight(const Weight& w, const char* op) {
    const auto [block, align] = block_layout(w.type);
    const std::string what = std::string(op) + ": weight " + w.name + " (" + std::string(ggml_type_name(w.type)) + ")";
    if (block == 0) throw std::invalid_argument(what + " has a type the CUDA backend cannot read");
    if (w.ne[0] % block != 0)
        throw std::invalid_argument(what + " has rows of " + std::to_string(w.ne[0]) + " values, not a multiple of " +
                                    std::to_string(block));
    // Every block and row must start where the kernels' loads can read it
    // (GGUF aligns tensors to 32 bytes, cudaMalloc to 256).
    if (reinterpret_cast<uintptr_t>(w.data) % 16 != 0 || w.row_bytes % align != 0 || w.matrix_bytes % align != 0)
        throw std::invalid_argument(what + " is misaligned in device memory (data not 16-byte aligned, or rows of " +
                                    std::to_string(w.row_bytes) + " bytes / matrices of " +
                                    std::to_string(w.matrix_bytes) + " not a multiple of " + std::to_string(align) +
                                    ")");
}

// The matvec's prefetch distance in warp steps (MatvecArgs::prefetch_steps):
// 4 unless MOESERVE_CUDA_PREFETCH=0, which gpu-check uses to measure what it
// buys. Results are the same either way. Read once.
int matvec_prefetch_steps() {
    static const int steps = [] {
        const char* v = std::getenv("MOESERVE_CUDA_PREFETCH");
        return v && std::string(v) == "0" ? 0 : 4;
    }();
    return steps;
}

void launch_matvec(Context& ctx, GgmlType type, const MatvecArgs& args) {
    if (args.xq.q && matvec_int8_supports(type)) {
        launch_matvec_int8(ctx, type, args);
        return;
    }
    MatvecArgs a = args;
    a.prefetch_steps = matvec_prefetch_steps();
    if (!aligned16(a.x) || a.x_stride % 4 != 0 || a.x_group_stride % 4 != 0)
        throw std::invalid_argument(
            "matvec: activations must be 16-byte aligned with strides a multiple of 4 floats (stride " +
            std::to_string(a.x_stride) + ", group stride " + std::to_string(a.x_group_stride) + ")");
    const int tile_tokens = a.tile_tokens;
    const unsigned grid_y = a.tiles ? static_cast<unsigned>(a.max_tiles)
                                    : static_cast<unsigned>((a.n_tokens + tile_tokens - 1) / tile_tokens);
    if (grid_y == 0 || a.out == 0) return;
    const dim3 grid(static_cast<unsigned>((a.out + kMatvecWarps - 1) / kMatvecWarps), grid_y,
                    a.tiles ? 1u : static_cast<unsigned>(a.n_groups));
    if (a.fused && (a.act == ExpertActivation::SwiGlu) != (a.w2 != nullptr))
        throw std::invalid_argument("matvec: a fused SwiGLU reads two weights, a fused ReLU² one");
    auto launch = [&]<GgmlType T, bool DUAL>() {
        switch (tile_tokens) {
            case 1:
                launch_kernel(matvec_kernel<T, 1, DUAL>, grid, 32 * kMatvecWarps, 0, ctx.stream, a);
                break;
            case 2:
                launch_kernel(matvec_kernel<T, 2, DUAL>, grid, 32 * kMatvecWarps, 0, ctx.stream, a);
                break;
            case 4:
                launch_kernel(matvec_kernel<T, 4, DUAL>, grid, 32 * kMatvecWarps, 0, ctx.stream, a);
                break;
            default:
                launch_kernel(matvec_kernel<T, 8, DUAL>, grid, 32 * kMatvecWarps, 0, ctx.stream, a);
                break;
        }
    };
    const bool ok = dispatch_weight_type(type, [&]<GgmlType T>() {
        if (a.w2)
            launch.template operator()<T, true>();
        else
            launch.template operator()<T, false>();
    });
    if (!ok) throw std::invalid_argument("matvec: unsupported weight type " + std::string(ggml_type_name(type)));
    MOESERVE_CUDA_CHECK_LAUNCH();
}

void dequantize_rows_f16(Context& ctx, const Weight& w, int matrix, int64_t row0, int64_t n_rows, __half* dst) {
    const int64_t n_threads = n_rows * (w.ne[0] / 8);
    if (n_threads == 0) return;
    const uint8_t* src = w.data + matrix * w.matrix_bytes + row0 * w.row_bytes;
    const unsigned blocks = static_cast<unsigned>((n_threads + 255) / 256);
    dispatch_weight_type(w.type, [&]<GgmlType T>() {
        launch_kernel(dequantize_f16_kernel<T>, blocks, 256, 0, ctx.stream, src, w.row_bytes, w.ne[0], n_rows, dst);
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
}

int64_t gemm_weight_scratch(const Weight& w) {
    if (w.type == GgmlType::F32) return 0;
    // Slices of at most 16M values (32 MiB) keep the output head's scratch small.
    constexpr int64_t kMaxSlice = int64_t{16} << 20;
    const int64_t rows = std::clamp<int64_t>(kMaxSlice / std::max<int64_t>(w.ne[0], 1), 1, w.ne[1]);
    return rows * w.ne[0];
}

void matmul_gemm(Context& ctx, const Weight& w, int matrix, const float* x, const __half* x16, int64_t m, float* y,
                 int64_t ldy, __half* wbuf) {
    if (m == 0) return;
    MOESERVE_CUBLAS_CHECK(cublasSetStream(ctx.cublas, ctx.stream));
    const float alpha = 1.0f, beta = 0.0f;
    const int k = static_cast<int>(w.ne[0]);
    // Row-major Y[m, n] = X[m, k] · W[n, k]^T is column-major Y^T = W^T(as k x n)^T · X^T.
    if (w.type == GgmlType::F32) {
        const float* wm = reinterpret_cast<const float*>(w.data + matrix * w.matrix_bytes);
        MOESERVE_CUBLAS_CHECK(cublasGemmEx(ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.ne[1]),
                                           static_cast<int>(m), k, &alpha, wm, CUDA_R_32F, k, x, CUDA_R_32F, k, &beta,
                                           y, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT));
        return;
    }
    const int64_t slice_rows = gemm_weight_scratch(w) / w.ne[0];
    for (int64_t r0 = 0; r0 < w.ne[1]; r0 += slice_rows) {
        const int64_t n = std::min(slice_rows, w.ne[1] - r0);
        dequantize_rows_f16(ctx, w, matrix, r0, n, wbuf);
        MOESERVE_CUBLAS_CHECK(cublasGemmEx(ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                           static_cast<int>(m), k, &alpha, wbuf, CUDA_R_16F, k, x16, CUDA_R_16F, k,
                                           &beta, y + r0, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT));
    }
}

// ---- the ops of cuda_ops.h --------------------------------------------------

void embed(Context& ctx, const Weight& table, const int32_t* tokens, int64_t n_tokens, float* out) {
    check_cuda_weight(table, "embed");
    if (n_tokens == 0) return;
    const int64_t chunks = table.ne[0] / 8;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxGridY) {  // tokens on the grid's y, 65535 at a time
        const dim3 grid(static_cast<unsigned>((chunks + 127) / 128),
                        static_cast<unsigned>(std::min(kMaxGridY, n_tokens - t0)));
        dispatch_weight_type(table.type, [&]<GgmlType T>() {
            launch_kernel(embed_kernel<T>, grid, 128, 0, ctx.stream, table.data, table.row_bytes, table.ne[0],
                          tokens + t0, out + t0 * table.ne[0]);
        });
        MOESERVE_CUDA_CHECK_LAUNCH();
    }
}

namespace {

// x rounded for activation type `act`, made at most once per type for the
// products of one input (held in `made`): as it is when it needs nothing
// (F32 and, for the matrix-vector kernel, 16-byte aligned), else a copy in
// scratch, f32 for the matrix-vector kernel or f16 for the GEMMs.
struct RoundedInputs {
    const float* x;
    int64_t n_tokens, width;
    bool gemm;
    const NormRows* norm = nullptr;  // x's int8 forms when a norm made them (else null)
    // At most one per activation type of the weights reading x (no heap
    // allocation on the per-product host path); q8_K rows for the
    // matrix-vector kernels also in int8 form (made[i]'s q8).
    std::array<std::pair<GgmlType, const void*>, 4> made{};
    std::array<Q8Rows, 4> made_q8{};
    int n_made = 0;

    const void* get(Context& ctx, GgmlType act, Q8Rows* q8_out = nullptr) {
        for (int i = 0; i < n_made; ++i)
            if (made[i].first == act) {
                if (q8_out) *q8_out = made_q8[i];
                return made[i].second;
            }
        const void* p = x;
        Q8Rows q8{};
        if (gemm) {
            __half* x16 = ctx.scratch->take_n<__half>(n_tokens * width);
            round_rows_f16(ctx, act, x, width, 0, n_tokens, width, 1, x16);
            p = x16;
        } else if (act != GgmlType::F32 || !aligned16(x)) {
            float* r = ctx.scratch->take_n<float>(n_tokens * width);
            if (has_int8_form(act, width)) q8 = take_q8_rows(ctx, n_tokens, width, act);
            round_rows_f32(ctx, act, x, width, 0, n_tokens, width, 1, r, q8.q ? &q8 : nullptr);
            p = r;
        }
        if (n_made < static_cast<int>(made.size())) made_q8[n_made] = q8, made[n_made++] = {act, p};
        if (q8_out) *q8_out = q8;
        return p;
    }

    // x rounded to q8_K / q8_0 in int8 form only, for the int8 prompt products (made once each).
    Q8Rows q8k_rows{}, q80_rows{};
    const Q8Rows& q8(Context& ctx, GgmlType act) {
        if (const Q8Rows* r = norm ? norm->find(x, n_tokens, width, act) : nullptr) return *r;
        Q8Rows& r = act == GgmlType::Q8_K ? q8k_rows : q80_rows;
        if (!r.q) {
            r = take_q8_rows(ctx, n_tokens, width, act);
            round_rows_f32(ctx, act, x, width, 0, n_tokens, width, 1, nullptr, &r);
        }
        return r;
    }
};

// Whether a prompt of n_tokens reads w through the matrix-vector kernel in the CPU's order
// (MOESERVE_CUDA_EXACT_PROMPTS), its 8-token tiles within the grid's y limit.
bool exact_prompt(const Weight& w, int64_t n_tokens) {
    return exact_prompt_products(w) && (n_tokens + kMatvecTileTokens - 1) / kMatvecTileTokens <= kMaxGridY;
}

// y = W·x for one weight, the input rounded by `in`.
void matmul_rounded(Context& ctx, const Weight& w, RoundedInputs& in, float* y, int expert) {
    if (!in.gemm) {
        MatvecArgs a;
        a.w = w.data, a.matrix_bytes = w.matrix_bytes, a.row_bytes = w.row_bytes, a.in = w.ne[0], a.out = w.ne[1];
        if (const Q8Rows* q8 = norm_int8_rows(in.norm, in.x, in.n_tokens, in.width, w.type))
            a.x = in.x, a.xq = *q8;  // the int8 kernel reads only xq
        else
            a.x = static_cast<const float*>(in.get(ctx, activation_rounding(w.type), &a.xq));
        a.x_stride = w.ne[0], a.y = y, a.y_stride = w.ne[1];
        a.tile_tokens = matvec_tile_tokens(in.n_tokens), a.n_tokens = in.n_tokens, a.matrix0 = expert;
        launch_matvec(ctx, w.type, a);
        return;
    }
    if (w.type == GgmlType::F32) {
        matmul_gemm(ctx, w, expert, in.x, nullptr, in.n_tokens, y, w.ne[1], nullptr);
        return;
    }
    if (mmq_supports(w)) {
        launch_mmq(ctx, w, expert, in.q8(ctx, activation_rounding(w.type)), nullptr, nullptr, 0, in.n_tokens, y,
                   w.ne[1]);
        return;
    }
    const auto* x16 = static_cast<const __half*>(in.get(ctx, activation_rounding(w.type)));
    __half* wbuf = ctx.scratch->take_n<__half>(gemm_weight_scratch(w));
    matmul_gemm(ctx, w, expert, in.x, x16, in.n_tokens, y, w.ne[1], wbuf);
}

}  // namespace

void matmul(Context& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y, int expert,
            const NormRows* norm) {
    check_cuda_weight(w, "matmul");
    if (n_tokens == 0) return;
    const bool gemm = n_tokens > kMatvecMaxTokens && !exact_prompt(w, n_tokens);
    RoundedInputs in{x, n_tokens, w.ne[0], gemm, norm};
    matmul_rounded(ctx, w, in, y, expert);
}

bool same_layout(const Weight& a, const Weight& b) {
    return a.type == b.type && a.ne == b.ne && a.row_bytes == b.row_bytes && a.matrix_bytes == b.matrix_bytes;
}

bool matvec_gated(Context& ctx, const Weight& gate, const Weight& up, const float* x, int64_t n_tokens,
                  ExpertActivation act, float* y, const NormRows* norm) {
    const bool gated = static_cast<bool>(gate);
    if (n_tokens == 0 || n_tokens > kMatvecMaxTokens || gated != (act == ExpertActivation::SwiGlu) ||
        (gated && !same_layout(gate, up)))
        return false;
    const Weight& w = gated ? gate : up;
    check_cuda_weight(w, "matmul");
    if (gated) check_cuda_weight(up, "matmul");  // read with the same vector loads as the gate
    RoundedInputs in{x, n_tokens, w.ne[0], false, norm};
    MatvecArgs a;
    a.w = w.data, a.matrix_bytes = w.matrix_bytes, a.row_bytes = w.row_bytes, a.in = w.ne[0], a.out = w.ne[1];
    if (const Q8Rows* q8 = norm_int8_rows(in.norm, in.x, in.n_tokens, in.width, w.type))
        a.x = x, a.xq = *q8;  // the int8 kernel reads only xq
    else
        a.x = static_cast<const float*>(in.get(ctx, activation_rounding(w.type), &a.xq));
    a.x_stride = w.ne[0], a.y = y, a.y_stride = w.ne[1];
    a.tile_tokens = matvec_tile_tokens(n_tokens), a.n_tokens = n_tokens;
    a.fused = true, a.act = act, a.w2 = gated ? up.data : nullptr;
    launch_matvec(ctx, w.type, a);
    return true;
}

void matmul_shared_input(Context& ctx, const float* x, int64_t n_tokens, std::span<const DeviceProjection> ps,
                         const NormRows* norm) {
    if (ps.empty()) return;
    for (const DeviceProjection& p : ps) {
        check_cuda_weight(p.w, "matmul");
        if (p.w.ne[0] != ps[0].w.ne[0])
            throw std::invalid_argument("matmul_shared_input: " + p.w.name + " reads rows of " +
                                        std::to_string(p.w.ne[0]) + " values, " + ps[0].w.name + " of " +
                                        std::to_string(ps[0].w.ne[0]));
    }
    if (n_tokens == 0) return;
    // x rounded once for the matrix-vector kernels and once for the GEMMs, each only if used: a
    // prompt's projections take the GEMMs unless the CPU's order is asked for and they have it.
    const bool big = n_tokens > kMatvecMaxTokens;
    RoundedInputs mv{x, n_tokens, ps[0].w.ne[0], false, norm}, gemm{x, n_tokens, ps[0].w.ne[0], big, norm};
    for (const DeviceProjection& p : ps)
        matmul_rounded(ctx, p.w, big && !exact_prompt(p.w, n_tokens) ? gemm : mv, p.y, 0);
}

void matmul_heads(Context& ctx, const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride,
                  int64_t x_head_stride, float* y) {
    check_cuda_weight(w, "matmul_heads");
    const int64_t in = w.ne[0], out = w.ne[1];
    const int n_head = static_cast<int>(w.ne[2]);
    if (n_tokens == 0 || n_head == 0) return;
    // y: [n_tokens, n_head, out]
    const GgmlType act = activation_rounding(w.type);
    // Prompts too take the matrix-vector kernel (8 tokens per weight read)
    // where the int8 tensor-core products do not apply (MLA's rows of 128 or
    // 192 values) and f16 cannot hold the weights' values: there the cuBLAS
    // path below would round weights and activations to f16 (errors of ~5e-4,
    // which moved GLM-4.7-Flash's prompts 5e-3 in KL from its decode). These
    // per-head matrices are small, so reading them once per 8 tokens is cheap.
    const bool f16_exact = w.type == GgmlType::F16 || w.type == GgmlType::F32;
    // With MOESERVE_CUDA_EXACT_PROMPTS also the int8 weights' prompts: the per-head products have no
    // x86-order form yet (the float kernel reads them), but prompts and decode then compute alike.
    const bool tiles_fit = (n_tokens + kMatvecTileTokens - 1) / kMatvecTileTokens <= kMaxGridY;
    const bool matvec =
        n_tokens <= kMatvecMaxTokens || (!mmq_supports(w) && !f16_exact && tiles_fit) || exact_prompt(w, n_tokens);
    if (matvec) {
        if (act != GgmlType::F32 || !aligned16(x) || x_token_stride % 4 != 0 || x_head_stride % 4 != 0) {
            // Rounded and packed densely, [n_head, n_tokens, in] (the kernel reads float4s).
            float* packed = ctx.scratch->take_n<float>(n_tokens * n_head * in);
            round_rows_f32(ctx, act, x, x_token_stride, x_head_stride, n_tokens, in, n_head, packed);
            x = packed, x_token_stride = in, x_head_stride = n_tokens * in;
        }
        MatvecArgs a;
        a.w = w.data, a.matrix_bytes = w.matrix_bytes, a.row_bytes = w.row_bytes, a.in = in, a.out = out;
        a.x = x, a.x_stride = x_token_stride, a.y = y, a.y_stride = n_head * out;
        a.tile_tokens = matvec_tile_tokens(n_tokens), a.n_tokens = n_tokens;
        a.n_groups = n_head, a.x_group_stride = x_head_stride, a.y_group_stride = out;
        launch_matvec(ctx, w.type, a);
        return;
    }
    if (mmq_supports(w)) {
        // Every head's rows rounded in one launch ([n_head][n_tokens] rows), then a product per head.
        Q8Rows q8 = take_q8_rows(ctx, n_head * n_tokens, in, act);
        round_rows_f32(ctx, act, x, x_token_stride, x_head_stride, n_tokens, in, n_head, nullptr, &q8);
        const int64_t per_head = n_tokens * in;
        for (int h = 0; h < n_head; ++h) {
            const Q8Rows head{q8.q + h * per_head, q8.d + h * (per_head / q8_block(act)),
                              q8.bsum ? q8.bsum + h * (per_head / 16) : nullptr};
            launch_mmq(ctx, w, h, head, nullptr, nullptr, 0, n_tokens, y + h * out, n_head * out);
        }
        return;
    }
    MOESERVE_CUBLAS_CHECK(cublasSetStream(ctx.cublas, ctx.stream));
    const float alpha = 1.0f, beta = 0.0f;
    if (w.type == GgmlType::F32) {
        // Head h: X_h is the [n_tokens, in] rows at x + h*x_head_stride with stride x_token_stride.
        MOESERVE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(n_tokens),
            static_cast<int>(in), &alpha, w.data, CUDA_R_32F, static_cast<int>(in),
            static_cast<long long>(w.matrix_bytes / sizeof(float)), x, CUDA_R_32F, static_cast<int>(x_token_stride),
            x_head_stride, &beta, y, CUDA_R_32F, static_cast<int>(n_head * out), out, n_head, CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
        return;
    }
    // x16: [n_head, n_tokens, in]; wbuf: every head's matrix [n_head, out, in].
    __half* x16 = ctx.scratch->take_n<__half>(n_head * n_tokens * in);
    __half* wbuf = ctx.scratch->take_n<__half>(n_head * out * in);
    round_rows_f16(ctx, act, x, x_token_stride, x_head_stride, n_tokens, in, n_head, x16);
    for (int h = 0; h < n_head; ++h) dequantize_rows_f16(ctx, w, h, 0, out, wbuf + h * out * in);
    MOESERVE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(n_tokens), static_cast<int>(in),
        &alpha, wbuf, CUDA_R_16F, static_cast<int>(in), out * in, x16, CUDA_R_16F, static_cast<int>(in), n_tokens * in,
        &beta, y, CUDA_R_32F, static_cast<int>(n_head * out), out, n_head, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace moeserve::cuda
