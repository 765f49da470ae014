#include "model/attention_block.h"

#include <cmath>

namespace moeserve {

AttentionWeights bind_attention(WeightBinder& bind, const ModelParams& p, int layer, bool qk_norm) {
    const std::string b = "blk." + std::to_string(layer) + ".";
    const int64_t n_q = static_cast<int64_t>(p.n_head[layer]) * p.head_dim_k;
    const int64_t n_k = static_cast<int64_t>(p.n_head_kv[layer]) * p.head_dim_k;
    const int64_t n_v = static_cast<int64_t>(p.n_head_kv[layer]) * p.head_dim_v;
    const int64_t n_o = static_cast<int64_t>(p.n_head[layer]) * p.head_dim_v;
    AttentionWeights w;
    w.q = bind.require(b + "attn_q.weight", {p.n_embd, n_q});
    w.k = bind.require(b + "attn_k.weight", {p.n_embd, n_k});
    w.v = bind.require(b + "attn_v.weight", {p.n_embd, n_v});
    w.output = bind.require(b + "attn_output.weight", {n_o, p.n_embd});
    w.q_bias = bind.optional(b + "attn_q.bias", {n_q});
    w.k_bias = bind.optional(b + "attn_k.bias", {n_k});
    w.v_bias = bind.optional(b + "attn_v.bias", {n_v});
    w.output_bias = bind.optional(b + "attn_output.bias", {p.n_embd});
    if (qk_norm) {
        w.q_norm = bind.require(b + "attn_q_norm.weight", {p.head_dim_k});
        w.k_norm = bind.require(b + "attn_k_norm.weight", {p.head_dim_k});
    }
    return w;
}

void add_bias(Backend& be, float* y, int64_t n_tokens, const Weight& bias) {
    if (!bias) return;
    be.add_row_broadcast(y, bias.f32(), n_tokens, bias.ne[0]);
}

void attention_forward(Backend& be, KvCache& cache, int layer, const AttentionWeights& w, const ModelParams& p,
                       const BatchView& batch, const float* x, bool use_rope, AttentionScratch& s, float* out) {
    const int64_t T = static_cast<int64_t>(batch.tokens.size());
    const int n_head = static_cast<int>(p.n_head[layer]), n_head_kv = static_cast<int>(p.n_head_kv[layer]);
    const int dk = p.head_dim_k, dv = p.head_dim_v;
    s.q.resize(T * n_head * dk);
    s.k.resize(T * n_head_kv * dk);
    s.v.resize(T * n_head_kv * dv);
    s.attn.resize(T * n_head * dv);

    // q: [T, n_head, dk]   k: [T, n_head_kv, dk]   v: [T, n_head_kv, dv]
    const Backend::Projection qkv[] = {{&w.q, s.q.data()}, {&w.k, s.k.data()}, {&w.v, s.v.data()}};
    be.matmul_shared_input(x, T, qkv);
    add_bias(be, s.q.data(), T, w.q_bias);
    add_bias(be, s.k.data(), T, w.k_bias);
    add_bias(be, s.v.data(), T, w.v_bias);
    if (w.q_norm && use_rope) {  // QK-norm comes before RoPE
        be.rms_norm_rope_qk(s.q.data(), w.q_norm.f32(), n_head, s.k.data(), w.k_norm.f32(), n_head_kv, p.rms_eps, T, dk,
                            batch.positions, p.rope);
    } else if (w.q_norm) {
        be.rms_norm(s.q.data(), w.q_norm.f32(), p.rms_eps, T * n_head, dk, s.q.data());
        be.rms_norm(s.k.data(), w.k_norm.f32(), p.rms_eps, T * n_head_kv, dk, s.k.data());
    } else if (use_rope) {
        be.rope(s.q.data(), T, n_head, dk, batch.positions, p.rope);
        be.rope(s.k.data(), T, n_head_kv, dk, batch.positions, p.rope);
    }
    be.store_kv(cache, layer, s.k.data(), s.v.data(), batch.cells);
    be.attention(cache, layer, s.q.data(), T, n_head, batch.rows, 1.0f / std::sqrt(static_cast<float>(dk)),
                 s.attn.data());
    be.matmul(w.output, s.attn.data(), T, out);
    add_bias(be, out, T, w.output_bias);
}

}  // namespace moeserve
