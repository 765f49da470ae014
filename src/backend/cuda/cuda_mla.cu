// MLA absorbed attention (deepseek2) on the GPU: every query head scores the
// same latent-cache row [latent (n_latent) | RoPE part] and V is that row's
// first n_latent values. That is GQA with one KV head, head sizes
// (row width, n_latent) and V read from the K tile already in shared memory,
// so it runs on the flash-decoding kernel of cuda_attention.cu. As on the
// CPU, the latent cache is never rotated.
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_ops.h"

namespace moeserve::cuda {

void attention_mla(Context& ctx, const KvLayer& layer, const float* q, int64_t n_tokens, int n_head, int n_latent,
                   const AttentionCells& cells, float scale, float* out) {
    if (n_tokens <= 0) return;
    const int width = static_cast<int>(layer.n_embd_k);  // latent + RoPE part
    if (n_latent <= 0 || n_latent > width || (!kv_is_float_type(layer.type_k) && n_latent % 32 != 0))
        throw std::invalid_argument("attention_mla: latent size " + std::to_string(n_latent) +
                                    " does not fit a cache row of " + std::to_string(width));
    FlashAttention a;
    a.k = layer.k;
    a.k_row_bytes = layer.k_row_bytes;
    a.type_k = a.type_v = layer.type_k;
    a.k_head_bytes = 0;  // one row shared by all heads
    a.dk = width;
    a.dv = n_latent;
    a.v_in_k = true;
    a.q = round_queries(ctx, layer.type_k, q, n_tokens * n_head, width, false);  // [n_tokens, n_head, width]
    a.n_tokens = n_tokens;
    a.n_head = n_head;
    a.n_head_kv = 1;
    a.cells = cells;
    a.scale = scale;
    a.out = out;  // [n_tokens, n_head, n_latent]
    flash_attention(ctx, a);
}

}  // namespace moeserve::cuda
