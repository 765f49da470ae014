// Feed-forward blocks on the GPU: the dense FFN and the routed-expert MoE
// block with the CPU backend's semantics (cpu_ffn.cpp, spec architectures §1.8).
//
// moe_ffn, all on the stream:
//   router logits = W_r·x                          [n_tokens, n_expert]
//   route: gating, top-k, weights; count tokens per expert      (warp per token)
//   plan: per-expert start offsets (prefix sum) and a list of matrix-vector
//         tiles (expert, first item, n items)                    (one block)
//   scatter: each (token, slot) item gets a slot in its expert's range and
//         its input row is gathered there: xs [n_items, n_in], sorted by expert
//   gate/up products per expert over its rows of xs, activation, down
//   combine: out[t] += Σ_j w_j · ys[item(t, j)]  (slot order, as the CPU)
// Decode-sized batches run the expert products as matrix-vector kernels over
// the device-built tile list (each routed expert's weights read once per
// tile of up to 8 of its tokens): no host round trip, so a CUDA graph can
// capture the whole op. Larger batches run each projection as one grouped
// tensor-core GEMM over tiles of up to 64 of an expert's tokens
// (cuda_moe_gemm.cu), again without a host round trip; weights that kernel
// cannot read (F32 experts, rows not a whole number of its K steps) copy the
// per-expert counts to the host and run a dequantize + cuBLAS GEMM per active
// expert and projection.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/cuda_expert_activation.cuh"
#include "backend/cuda/cuda_launch.cuh"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_moe_tiles.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_quant_blocks.cuh"

namespace moeserve::cuda {
namespace {

// Up to this many tokens the experts run as matrix-vector kernels; beyond,
// the tokens per expert are enough for GEMMs to pay off.
constexpr int64_t kMoeMatvecMaxTokens = 32;
constexpr int kRouteWarps = 4;
constexpr int kMaxExpertUsed = 32;                 // one lane per selected expert
constexpr int kMaxExperts = 1024;                  // one plan thread per expert
constexpr int kFusedRouteThreads = 1024;           // route_plan_kernel: one block, a plan thread per expert
constexpr int kMaxFusedItems = 1024;               // its (token, slot) items: 32 tokens of up to 32 experts
constexpr size_t kMaxFusedRouteSmem = 160 * 1024;  // its routing scratch, within an H100's 227 KiB
static_assert(kMaxFusedItems >= kMoeMatvecMaxTokens * kMaxExpertUsed);
// route_plan_kernel's static shared memory: counts, item ends and tile ends
// per expert, and the chosen expert of every item.
constexpr size_t kRoutePlanStaticSmem = sizeof(int) * (3 * kMaxExperts + kMaxFusedItems);
// route_kernel's shared memory (two floats per expert and warp) stays within the default 48 KiB.
static_assert(2 * kMaxExperts * kRouteWarps * sizeof(float) <= 48 * 1024);

// The matrix-vector tile of a MoE decode batch (cuda_moe_tiles.h), or
// MOESERVE_CUDA_MOE_TILE_TOKENS (1, 2, 4 or 8; read once) to compare with
// others, e.g. 8, the tile before the choice by items per expert.
int decode_tile_tokens(int64_t n_items, int n_expert) {
    static const int forced = [] {
        const char* v = std::getenv("MOESERVE_CUDA_MOE_TILE_TOKENS");
        const int n = v ? std::atoi(v) : 0;
        return n == 1 || n == 2 || n == 4 || n == 8 ? n : 0;
    }();
    return forced ? forced : moe_tile_tokens(n_items, n_expert);
}

// g := act(g, u) over n values (ReLU²: non-gated, g holds W_up·x).
__global__ void activation_kernel(float* g, const float* u, int64_t n, ExpertActivation act) {
    kernel_prologue();
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        g[i] = expert_activation(g[i], act == ExpertActivation::SwiGlu ? u[i] : 0.0f, act);
}

void launch_activation(Context& ctx, float* g, const float* u, int64_t n, ExpertActivation act) {
    if (n == 0) return;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 4096));
    launch_kernel(activation_kernel, blocks, 256, 0, ctx.stream, g, u, n, act);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

struct RouteParams {
    int n_expert, n_expert_used;
    bool softmax, normalize;
    float weights_scale;
    const float* selection_bias;
};

// Token t's routing by one warp: probabilities, top-k by selection score
// (ties: lower expert id), weights; counts[e] += 1 for each chosen expert.
// prob: 2 * n_expert floats of scratch for this warp.
__device__ void route_token(const float* logits, int64_t t, const RouteParams& p, float* prob, int* route_expert,
                            float* route_weight, int* counts) {
    const int lane = threadIdx.x & 31;
    const int n = p.n_expert, k = p.n_expert_used;
    float* sel = prob + n;
    const float* lg = logits + t * n;

    // The probabilities with the CPU's bits (cpu_expf, IEEE operations; the
    // softmax sum in double as the CPU sums it): the selection compares them,
    // so an ulp could pick another expert where two scores nearly tie.
    if (p.softmax) {
        float mx = -INFINITY;
        for (int e = lane; e < n; e += 32) mx = fmaxf(mx, lg[e]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, o));
        double sum = 0.0;
        for (int e = lane; e < n; e += 32) sum += (prob[e] = cpu_expf(__fsub_rn(lg[e], mx)));
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, o);
        for (int e = lane; e < n; e += 32) prob[e] = static_cast<float>(static_cast<double>(prob[e]) / sum);
    } else {
        for (int e = lane; e < n; e += 32) prob[e] = __fdiv_rn(1.0f, __fadd_rn(1.0f, cpu_expf(-lg[e])));
    }
    for (int e = lane; e < n; e += 32) sel[e] = p.selection_bias ? __fadd_rn(prob[e], p.selection_bias[e]) : prob[e];
    __syncwarp();

    int my_expert = 0;
    float my_weight = 0.0f, wsum = 0.0f;
    for (int j = 0; j < k; ++j) {
        float best = -INFINITY;
        int best_e = INT_MAX;
        for (int e = lane; e < n; e += 32) {
            const float v = sel[e];  // NaN: already taken, never chosen
            if (v > best || (v == best && e < best_e)) best = v, best_e = e;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(0xFFFFFFFFu, best, o);
            const int e = __shfl_xor_sync(0xFFFFFFFFu, best_e, o);
            if (v > best || (v == best && e < best_e)) best = v, best_e = e;
        }
        if (best_e >= n) best_e = 0;  // only when every score is NaN (broken logits)
        const float w = prob[best_e];
        if (lane == j) my_expert = best_e, my_weight = w;
        wsum = __fadd_rn(wsum, w);  // in slot order, as the CPU sums
        __syncwarp();
        if (lane == 0) sel[best_e] = NAN;
        __syncwarp();
    }
    if (p.normalize)  // llama.cpp's clamp: the smallest normal f16
        my_weight = __fdiv_rn(my_weight, fmaxf(wsum, 6.103515625e-5f));
    if (p.weights_scale != 0.0f && p.weights_scale != 1.0f) my_weight = __fmul_rn(my_weight, p.weights_scale);
    if (lane < k) {
        route_expert[t * k + lane] = my_expert;
        route_weight[t * k + lane] = my_weight;
        atomicAdd(&counts[my_expert], 1);
    }
}

// One warp per token (route_token).
__global__ void route_kernel(const float* logits, int64_t n_tokens, RouteParams p, int* route_expert,
                             float* route_weight, int* counts) {
    kernel_prologue();
    extern __shared__ float smem[];  // per warp: prob[n_expert], sel[n_expert]
    const int warp = threadIdx.x >> 5;
    const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouteWarps + warp;
    if (t >= n_tokens) return;  // no block-wide sync below
    route_token(logits, t, p, smem + static_cast<size_t>(warp) * 2 * p.n_expert, route_expert, route_weight, counts);
}

// By a block of blockDim >= n_expert threads: start[e] = Σ_{e'<e} counts[e']
// (start[n_expert] = all items), cursor = start (when given), and the
// matrix-vector tiles of tile_tokens items of one expert each, in expert
// order. s_items, s_tiles: kMaxExperts ints of shared memory each; after
// it, s_items[e] - counts[e] is expert e's first position.
__device__ void plan_experts(const int* counts, int n_expert, int tile_tokens, int* s_items, int* s_tiles, int* start,
                             int* cursor, MatvecTile* tiles, int* n_tiles) {
    const int e = threadIdx.x;
    const int c = e < n_expert ? counts[e] : 0;
    const int nt = (c + tile_tokens - 1) / tile_tokens;
    s_items[e] = c;
    s_tiles[e] = nt;
    __syncthreads();
    for (int off = 1; off < static_cast<int>(blockDim.x); off <<= 1) {  // inclusive scan
        const int a = e >= off ? s_items[e - off] : 0, b = e >= off ? s_tiles[e - off] : 0;
        __syncthreads();
        s_items[e] += a;
        s_tiles[e] += b;
        __syncthreads();
    }
    const int item0 = s_items[e] - c, tile0 = s_tiles[e] - nt;
    if (e < n_expert) {
        start[e] = item0;
        if (cursor) cursor[e] = item0;
        for (int i = 0; i < nt; ++i)
            tiles[tile0 + i] = {e, item0 + i * tile_tokens, min(tile_tokens, c - i * tile_tokens), 0};
    }
    if (e == static_cast<int>(blockDim.x) - 1) {
        start[n_expert] = s_items[e];
        *n_tiles = s_tiles[e];
    }
}

__global__ void plan_kernel(const int* counts, int n_expert, int tile_tokens, int* start, int* cursor,
                            MatvecTile* tiles, int* n_tiles) {
    kernel_prologue();
    __shared__ int s_items[kMaxExperts], s_tiles[kMaxExperts];
    plan_experts(counts, n_expert, tile_tokens, s_items, s_tiles, start, cursor, tiles, n_tiles);
}

// Decode batches in one block of at least n_expert threads (at most
// kFusedRouteThreads; whole warps): routing (a warp per token), the plan, and each item's position in its expert's
// range (items of an expert in item order, so no atomics decide the order): item_pos[i] = its position, src_row[pos] =
// the token whose input it reads. Replaces the counts memset, route_kernel, plan_kernel and scatter_kernel; the
// experts' inputs are then gathered (and rounded) by row index. dynamic smem: min(n_tokens, 32) * 2 * n_expert floats.
__global__ void __launch_bounds__(kFusedRouteThreads)
    route_plan_kernel(const float* logits, int64_t n_tokens, RouteParams p, int tile_tokens, int* route_expert,
                      float* route_weight, int* start, MatvecTile* tiles, int* n_tiles, int* item_pos, int* src_row) {
    kernel_prologue();
    extern __shared__ float prob[];
    __shared__ int s_counts[kMaxExperts], s_items[kMaxExperts], s_tiles[kMaxExperts];
    __shared__ int s_expert[kMaxFusedItems];
    for (int e = threadIdx.x; e < kMaxExperts; e += blockDim.x) s_counts[e] = 0;
    __syncthreads();
    const int warp = threadIdx.x >> 5;
    for (int64_t t = warp; t < n_tokens; t += blockDim.x / 32)
        route_token(logits, t, p, prob + static_cast<size_t>(warp) * 2 * p.n_expert, route_expert, route_weight,
                    s_counts);
    __syncthreads();  // also makes route_expert's global writes visible to the block
    plan_experts(s_counts, p.n_expert, tile_tokens, s_items, s_tiles, start, nullptr, tiles, n_tiles);
    const int n_items = static_cast<int>(n_tokens) * p.n_expert_used;
    for (int i = threadIdx.x; i < n_items; i += blockDim.x) s_expert[i] = route_expert[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n_items; i += blockDim.x) {
        const int e = s_expert[i];
        int rank = 0;
        for (int j = 0; j < i; ++j) rank += s_expert[j] == e;
        const int pos = s_items[e] - s_counts[e] + rank;
        item_pos[i] = pos;
        src_row[pos] = i / p.n_expert_used;
    }
}

// Block i: item i (token i / k) takes the next position of its expert's range
// and copies the token's expert input row there.
__global__ void scatter_kernel(const int* route_expert, int k, int* cursor, int* item_pos, const float* xe,
                               int64_t n_in, float* xs) {
    kernel_prologue();
    __shared__ int pos;
    const int64_t i = blockIdx.x;
    if (threadIdx.x == 0) {
        pos = atomicAdd(&cursor[route_expert[i]], 1);
        item_pos[i] = pos;
    }
    __syncthreads();
    const float4* src = reinterpret_cast<const float4*>(xe + (i / k) * n_in);
    float4* dst = reinterpret_cast<float4*>(xs + static_cast<int64_t>(pos) * n_in);
    for (int64_t j = threadIdx.x; j < n_in / 4; j += blockDim.x) dst[j] = src[j];
}

// out[t][i] += Σ_j w_j · ys[item_pos(t, j)][i], slots in order.
__global__ void combine_kernel(const float* ys, const int* item_pos, const float* route_weight, int k, int64_t n_out,
                               float* out) {
    kernel_prologue();
    const int64_t t = blockIdx.y;
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n_out) return;
    float sum = ys[static_cast<int64_t>(item_pos[t * k]) * n_out + i] * route_weight[t * k];
    for (int j = 1; j < k; ++j)
        sum += ys[static_cast<int64_t>(item_pos[t * k + j]) * n_out + i] * route_weight[t * k + j];
    out[t * n_out + i] += sum;
}

[[noreturn]] void bad_moe(const std::string& what) {
    throw std::invalid_argument("moe_ffn: " + what);
}

void check_moe(const Weight& router, const Weight& gate_exps, const Weight& up_exps, const Weight& down_exps,
               const MoeParams& p) {
    if (p.n_expert < 1 || p.n_expert > kMaxExperts)
        bad_moe(std::to_string(p.n_expert) + " experts (the CUDA backend supports 1 to " + std::to_string(kMaxExperts) +
                ")");
    if (p.n_expert_used < 1 || p.n_expert_used > std::min(p.n_expert, kMaxExpertUsed))
        bad_moe(std::to_string(p.n_expert_used) + " experts per token of " + std::to_string(p.n_expert) +
                " (the CUDA backend supports up to " + std::to_string(kMaxExpertUsed) + ")");
    if (router.ne[1] != p.n_expert)
        bad_moe("router " + router.name + " has " + std::to_string(router.ne[1]) + " outputs, expected " +
                std::to_string(p.n_expert));
    if (up_exps.ne[2] < p.n_expert || down_exps.ne[2] < p.n_expert || (gate_exps && gate_exps.ne[2] < p.n_expert))
        bad_moe("expert weights hold fewer than " + std::to_string(p.n_expert) + " experts");
    if (down_exps.ne[0] != up_exps.ne[1] ||
        (gate_exps && (gate_exps.ne[0] != up_exps.ne[0] || gate_exps.ne[1] != up_exps.ne[1])))
        bad_moe("expert weight shapes do not match (" + up_exps.name + ", " + down_exps.name + ")");
    if (up_exps.ne[0] % 4 != 0)
        bad_moe("expert input width " + std::to_string(up_exps.ne[0]) + " is not a multiple of 4");
}

}  // namespace

bool decode_fusions() {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_FUSE");
        return !(v && std::string(v) == "0");
    }();
    return on;
}

void dense_ffn(Context& ctx, const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
               ExpertActivation act, float* out, const NormRows* norm) {
    if (n_tokens == 0) return;
    const int64_t n_ff = up.ne[1];
    // g, u: [n_tokens, n_ff]
    float* g = ctx.scratch->take_n<float>(n_tokens * n_ff);
    if (decode_fusions() && matvec_gated(ctx, gate, up, x, n_tokens, act, g, norm)) {  // one launch, activation fused
        matmul(ctx, down, g, n_tokens, out);
        return;
    }
    float* u = nullptr;
    if (gate) {
        u = ctx.scratch->take_n<float>(n_tokens * n_ff);
        const DeviceProjection gate_up[] = {{gate, g}, {up, u}};  // x rounded once for both
        matmul_shared_input(ctx, x, n_tokens, gate_up, norm);
    } else {
        matmul(ctx, up, x, n_tokens, g, 0, norm);
    }
    launch_activation(ctx, g, u, n_tokens * n_ff, act);
    matmul(ctx, down, g, n_tokens, out);
}

void moe_ffn(Context& ctx, const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps,
             const Weight& up_exps, const Weight& down_exps, const MoeParams& p, float* out, const NormRows* norm) {
    check_moe(router, gate_exps, up_exps, down_exps, p);
    if (gate_exps) check_cuda_weight(gate_exps, "moe_ffn");
    check_cuda_weight(up_exps, "moe_ffn");
    check_cuda_weight(down_exps, "moe_ffn");
    if (n_tokens == 0) return;
    const int n_expert = p.n_expert, k = p.n_expert_used;
    const int64_t n_in = up_exps.ne[0], n_ff = up_exps.ne[1], n_out = down_exps.ne[1];
    const int64_t n_items = n_tokens * k;  // (token, slot) pairs
    // Prompts too where the CPU's float order is asked for (MOESERVE_CUDA_EXACT_PROMPTS=1).
    // (Their tiles, at most n_items / 8 + one partial tile per expert, on the grid's y.)
    const bool decode = n_tokens <= kMoeMatvecMaxTokens ||
                        (exact_prompt_products(up_exps) && exact_prompt_products(down_exps) &&
                         (!gate_exps || exact_prompt_products(gate_exps)) &&
                         n_items / kMatvecTileTokens + std::min<int64_t>(n_expert, n_items) <= kMaxGridY);
    // Larger batches: one grouped GEMM per projection when the kernel reads
    // all three weights, else a GEMM per active expert.
    const bool grouped = !decode && moe_gemm_supports(up_exps) && moe_gemm_supports(down_exps) &&
                         (!gate_exps || moe_gemm_supports(gate_exps));
    const int tile_tokens = grouped ? kMoeGemmTileTokens : decode_tile_tokens(n_items, n_expert);
    // Tiles: Σ_e ceil(c_e / tile) <= n_items / tile + (experts with items);
    // with one-item tiles exactly n_items (the grid has no idle rows then).
    const int max_tiles = tile_tokens == 1
                              ? static_cast<int>(n_items)
                              : static_cast<int>(n_items / tile_tokens + std::min<int64_t>(n_expert, n_items));

    Scratch& s = *ctx.scratch;
    float* logits = s.take_n<float>(n_tokens * n_expert);
    int* route_expert = s.take_n<int>(n_items);
    float* route_weight = s.take_n<float>(n_items);
    int* counts = s.take_n<int>(n_expert);
    int* start = s.take_n<int>(n_expert + 1);
    int* cursor = s.take_n<int>(n_expert);
    MatvecTile* tiles = s.take_n<MatvecTile>(max_tiles);
    int* n_tiles = s.take_n<int>(1);
    int* item_pos = s.take_n<int>(n_items);
    int* src_row = s.take_n<int>(n_items);
    float* xs = s.take_n<float>(n_items * n_in);  // expert inputs, sorted by expert
    float* g = s.take_n<float>(n_items * n_ff);   // gate (or up for ReLU²), then the activation
    float* u = gate_exps ? s.take_n<float>(n_items * n_ff) : nullptr;
    float* ys = s.take_n<float>(n_items * n_out);  // expert outputs, sorted by expert

    // Routing.
    matmul(ctx, router, x, n_tokens, logits, 0, norm);
    const RouteParams rp{n_expert,        k, p.gating == GatingFunc::Softmax, p.normalize_weights, p.weights_scale,
                         p.selection_bias};
    const float* xe = p.expert_input ? p.expert_input : x;  // latent MoE: the experts read their own input
    // Decode batches route and plan in one launch and gather the experts'
    // inputs by row index as they round them (no scattered copy).
    // Its static shared memory counts against the same per-block limit as the
    // dynamic part, so the limit is raised whenever the two exceed the default
    // 48 KiB, and the fused path is taken only where the card allows the sum.
    const size_t fused_smem = sizeof(float) * 2 * n_expert * std::min<int64_t>(n_tokens, kFusedRouteThreads / 32);
    const size_t fused_total = fused_smem + kRoutePlanStaticSmem;
    const bool fused_routing = decode && n_tokens <= kMoeMatvecMaxTokens && decode_fusions() &&
                               fused_smem <= kMaxFusedRouteSmem &&
                               (ctx.shared_mem_per_block_optin == 0 || fused_total <= ctx.shared_mem_per_block_optin);
    if (fused_routing) {
        if (fused_total > 48 * 1024)
            raise_dynamic_smem_limit(reinterpret_cast<const void*>(route_plan_kernel), fused_smem);
        // A plan thread per expert and a routing warp per token, no more: a
        // decoded token of a 128-expert model takes 128 threads, not 1024
        // (the plan's scan and barriers scale with the block).
        const int route_threads = static_cast<int>(std::min<int64_t>(
            kFusedRouteThreads, std::max<int64_t>((n_expert + 31) / 32 * 32, 32 * std::min<int64_t>(n_tokens, 32))));
        launch_kernel(route_plan_kernel, 1, route_threads, fused_smem, ctx.stream, logits, n_tokens, rp, tile_tokens,
                      route_expert, route_weight, start, tiles, n_tiles, item_pos, src_row);
        MOESERVE_CUDA_CHECK_LAUNCH();
    } else {
        MOESERVE_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int) * n_expert, ctx.stream));
        const size_t route_smem = sizeof(float) * 2 * n_expert * kRouteWarps;
        launch_kernel(route_kernel, static_cast<unsigned>((n_tokens + kRouteWarps - 1) / kRouteWarps), 32 * kRouteWarps,
                      route_smem, ctx.stream, logits, n_tokens, rp, route_expert, route_weight, counts);
        MOESERVE_CUDA_CHECK_LAUNCH();
        const int plan_threads = (n_expert + 31) / 32 * 32;
        launch_kernel(plan_kernel, 1, plan_threads, 0, ctx.stream, counts, n_expert, tile_tokens, start, cursor, tiles,
                      n_tiles);
        MOESERVE_CUDA_CHECK_LAUNCH();
        if (reinterpret_cast<uintptr_t>(xe) % 16 != 0) {  // scatter_kernel reads float4s: copy a misaligned slice
            float* copy = s.take_n<float>(n_tokens * n_in);
            MOESERVE_CUDA_CHECK(
                cudaMemcpyAsync(copy, xe, sizeof(float) * n_tokens * n_in, cudaMemcpyDeviceToDevice, ctx.stream));
            xe = copy;
        }
        launch_kernel(scatter_kernel, static_cast<unsigned>(n_items), 128, 0, ctx.stream, route_expert, k, cursor,
                      item_pos, xe, n_in, xs);
        MOESERVE_CUDA_CHECK_LAUNCH();
    }

    // gate/up, the activation, down: the same sequence whichever way the
    // products run (device-planned mat-vecs, or per-expert GEMMs).
    auto expert_ffn = [&](auto&& product) {
        if (gate_exps) {
            product(gate_exps, xs, n_in, g);
            product(up_exps, xs, n_in, u);
        } else {
            product(up_exps, xs, n_in, g);
        }
        launch_activation(ctx, g, u, n_items * n_ff, p.activation);
        product(down_exps, g, n_ff, ys);
    };
    // The products read their input rounded for the weight's type (as
    // llama.cpp's CPU rounds activations), made once per input and type:
    // gate and up share theirs.
    struct Holds {
        const float* in = nullptr;
        GgmlType act = GgmlType::F32;
        bool same(const float* i, GgmlType a) const { return in == i && act == a; }
    };
    if (decode) {
        float* rounded = s.take_n<float>(n_items * std::max(n_in, n_ff));
        // The same rows in int8 form for the int8 kernels (q8_K or q8_0 inputs).
        Q8Rows q8k{}, q80{};
        Holds holds;
        MatvecArgs a;
        a.tile_tokens = tile_tokens, a.tiles = tiles, a.n_tiles = n_tiles, a.max_tiles = max_tiles;
        // fused_up: the up weight of a SwiGLU whose gate is `w` (the activation
        // in the same launch); fuse_relu2: ReLU² applied to W·x. An input of
        // xs is, after fused routing, gathered from xe's token rows.
        auto product = [&](const Weight& w, const float* in, int64_t in_width, float* y, const Weight* fused_up,
                           bool fuse_relu2) {
            const GgmlType act = activation_rounding(w.type);
            const bool gather = fused_routing && in == xs;
            const float* x_in = in;
            const bool int8 = has_int8_form(act, in_width);
            Q8Rows& q8 = act == GgmlType::Q8_K ? q8k : q80;
            // The experts' inputs are their tokens' rows of the norm's int8 form, read through src_row.
            const Q8Rows* from_norm = gather && xe == x ? norm_int8_rows(norm, x, n_tokens, n_in, w.type) : nullptr;
            a.xq_rows = nullptr;
            if (from_norm) {
                a.xq = *from_norm, a.xq_rows = src_row;
                x_in = x;  // not read: the int8 kernel reads only xq
            } else if (gather || act != GgmlType::F32) {
                if (!holds.same(in, act)) {
                    if (int8 && !q8.q) q8 = take_q8_rows(ctx, n_items, std::max(n_in, n_ff), act);
                    if (gather)
                        gather_round_rows_f32(ctx, act, xe, n_in, src_row, n_items, n_in, rounded,
                                              int8 ? &q8 : nullptr);
                    else
                        round_rows_f32(ctx, act, in, in_width, 0, n_items, in_width, 1, rounded, int8 ? &q8 : nullptr);
                    holds = {in, act};
                }
                x_in = rounded;
            }
            if (!from_norm) a.xq = int8 ? q8 : Q8Rows{};
            a.w = w.data, a.matrix_bytes = w.matrix_bytes, a.row_bytes = w.row_bytes, a.in = w.ne[0], a.out = w.ne[1];
            a.x = x_in, a.x_stride = in_width, a.y = y, a.y_stride = w.ne[1];
            a.fused = fused_up || fuse_relu2;
            a.act = fused_up ? ExpertActivation::SwiGlu : ExpertActivation::ReluSquared;
            a.w2 = fused_up ? fused_up->data : nullptr;
            launch_matvec(ctx, w.type, a);
        };
        // gate, up and the activation in one launch where the layouts allow (bit for bit the same).
        if (decode_fusions() && gate_exps && p.activation == ExpertActivation::SwiGlu &&
            same_layout(gate_exps, up_exps)) {
            product(gate_exps, xs, n_in, g, &up_exps, false);
        } else if (gate_exps) {
            product(gate_exps, xs, n_in, g, nullptr, false);
            product(up_exps, xs, n_in, u, nullptr, false);
            launch_activation(ctx, g, u, n_items * n_ff, p.activation);
        } else {
            // ReLU² in the up product's launch, unless the fusions are off.
            const bool fuse_relu2 = decode_fusions() && p.activation == ExpertActivation::ReluSquared;
            product(up_exps, xs, n_in, g, nullptr, fuse_relu2);
            if (!fuse_relu2) launch_activation(ctx, g, u, n_items * n_ff, p.activation);
        }
        product(down_exps, g, n_ff, ys, nullptr, false);
    } else if (grouped) {
        __half* x16 = s.take_n<__half>(n_items * std::max(n_in, n_ff));  // xs, later the activations, in f16
        Q8Rows q8k{}, q80{};                                             // the same in int8 form for the int8 products
        Holds holds, holds_q8k, holds_q80;
        auto product = [&](const Weight& w, const float* in, int64_t in_width, float* y) {
            const GgmlType act = activation_rounding(w.type);
            if (mmq_supports(w)) {
                Q8Rows& q8 = act == GgmlType::Q8_K ? q8k : q80;
                Holds& h = act == GgmlType::Q8_K ? holds_q8k : holds_q80;
                if (!h.same(in, act)) {
                    if (!q8.q) q8 = take_q8_rows(ctx, n_items, std::max(n_in, n_ff), act);
                    round_rows_f32(ctx, act, in, in_width, 0, n_items, in_width, 1, nullptr, &q8);
                    h = {in, act};
                }
                launch_mmq(ctx, w, 0, q8, tiles, n_tiles, max_tiles, 0, y, w.ne[1]);
                return;
            }
            if (!holds.same(in, act)) {
                round_rows_f16(ctx, act, in, in_width, 0, n_items, in_width, 1, x16);
                holds = {in, act};
            }
            launch_moe_gemm(ctx, w, x16, tiles, n_tiles, max_tiles, y);
        };
        expert_ffn(product);
    } else {
        // The one host synchronization: which experts got how many rows.
        std::vector<int> host_start(n_expert + 1);
        MOESERVE_CUDA_CHECK(cudaMemcpyAsync(host_start.data(), start, sizeof(int) * (n_expert + 1),
                                            cudaMemcpyDeviceToHost, ctx.stream));
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
        __half* x16 = s.take_n<__half>(n_items * std::max(n_in, n_ff));  // xs, later the activations, in f16
        const int64_t wbuf_elems = std::max({gate_exps ? gemm_weight_scratch(gate_exps) : 0,
                                             gemm_weight_scratch(up_exps), gemm_weight_scratch(down_exps)});
        __half* wbuf = s.take_n<__half>(std::max<int64_t>(wbuf_elems, 1));
        Holds holds;
        auto products = [&](const Weight& w, const float* in, int64_t in_width, float* y) {
            const GgmlType act = activation_rounding(w.type);
            if (w.type != GgmlType::F32 && !holds.same(in, act)) {
                round_rows_f16(ctx, act, in, in_width, 0, n_items, in_width, 1, x16);
                holds = {in, act};
            }
            for (int e = 0; e < n_expert; ++e) {
                const int64_t r0 = host_start[e], m = host_start[e + 1] - host_start[e];
                if (m > 0)
                    matmul_gemm(ctx, w, e, in + r0 * in_width, x16 + r0 * in_width, m, y + r0 * w.ne[1], w.ne[1], wbuf);
            }
        };
        expert_ffn(products);
    }

    for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxGridY) {  // tokens on the grid's y, 65535 at a time
        const dim3 grid(static_cast<unsigned>((n_out + 255) / 256),
                        static_cast<unsigned>(std::min(kMaxGridY, n_tokens - t0)));
        launch_kernel(combine_kernel, grid, 256, 0, ctx.stream, ys, item_pos + t0 * k, route_weight + t0 * k, k, n_out,
                      out + t0 * n_out);
        MOESERVE_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace moeserve::cuda
