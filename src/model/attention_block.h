// The standard GQA self-attention sub-layer shared by llama, qwen3,
// qwen3moe and the attention layers of nemotron_h_moe (spec §1.6, §3):
// projections (+ optional biases), optional per-head QK RMSNorm, RoPE,
// cache write, attention over the cache, output projection.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"
#include "model/weight_binder.h"

namespace moeserve {

struct AttentionWeights {
    Weight q, k, v, output;
    Weight q_bias, k_bias, v_bias, output_bias;
    Weight q_norm, k_norm;  // {head_dim}, shared by all heads (qwen3*)
};

AttentionWeights bind_attention(WeightBinder& bind, const ModelParams& p, int layer, bool qk_norm);

// Reusable buffers for one forward pass.
struct AttentionScratch {
    explicit AttentionScratch(DeviceMemory& mem) : q(mem), k(mem), v(mem), attn(mem) {}
    Activations q, k, v, attn;
};

// out[t] = Attention(x[t]) for the batch's tokens; x is the normed input
// [n_tokens, n_embd], out is [n_tokens, n_embd]. use_rope = false for
// architectures without positional rotation (nemotron_h_moe).
void attention_forward(Backend& be, KvCache& cache, int layer, const AttentionWeights& w, const ModelParams& p,
                       const BatchView& batch, const float* x, bool use_rope, AttentionScratch& s, float* out);

// y[t] += bias for each of n_tokens rows of width bias.ne[0].
void add_bias(Backend& be, float* y, int64_t n_tokens, const Weight& bias);

}  // namespace moeserve
