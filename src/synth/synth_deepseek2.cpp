// Synthetic deepseek2 files in GLM-4.7-Flash's layout (spec architectures
// §5.1-§5.2): MLA attention with split attn_k_b / attn_v_b, leading dense
// layers, then routed experts with a sigmoid router and selection bias plus
// shared experts. Tensors are written in the order llama.cpp's converter
// leaves them (global tensors, then each layer's sorted by name).
#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "gguf/gguf_writer.h"
#include "synth/random_blocks.h"
#include "synth/synth_model.h"
#include "synth/synth_vocab.h"

namespace moeserve {

void write_synth_deepseek2(const std::string& path, const SynthSpec& s) {
    if (s.kv_lora_rank <= 0 || s.qk_rope_head_dim <= 0 || s.qk_nope_head_dim <= 0 || s.v_head_dim <= 0)
        throw std::invalid_argument("synth: deepseek2 needs kv_lora_rank, qk_nope/qk_rope and v head sizes");
    const std::string a = s.arch + ".";
    const int64_t E = s.n_embd, H = s.n_head, R = s.kv_lora_rank, rope = s.qk_rope_head_dim;
    const int64_t nope = s.qk_nope_head_dim, dk = nope + rope, dv = s.v_head_dim, QR = s.q_lora_rank;
    const int64_t F = s.n_ff_exp, X = s.n_expert, FS = static_cast<int64_t>(s.n_ff_exp) * s.n_expert_shared;
    const int64_t V = s.n_vocab;

    GgufWriter w;
    w.set("general.architecture", s.arch);
    w.set("general.name", s.name);
    w.set("general.file_type", file_mix_ftype(s.mix));
    w.set("general.quantization_version", uint32_t{2});
    w.set(a + "context_length", uint32_t(s.n_ctx_train));
    w.set(a + "embedding_length", uint32_t(E));
    w.set(a + "block_count", uint32_t(s.n_layer));
    w.set(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    w.set(a + "rope.freq_base", s.rope_freq_base);
    w.set(a + "vocab_size", uint32_t(V));
    w.set(a + "feed_forward_length", uint32_t(s.n_ff));
    w.set(a + "attention.head_count", uint32_t(H));
    w.set(a + "attention.head_count_kv", uint32_t{1});  // MLA as MQA over the latent
    if (QR > 0) w.set(a + "attention.q_lora_rank", uint32_t(QR));
    w.set(a + "attention.kv_lora_rank", uint32_t(R));
    w.set(a + "attention.key_length", uint32_t(R + rope));
    w.set(a + "attention.value_length", uint32_t(R));
    w.set(a + "attention.key_length_mla", uint32_t(dk));
    w.set(a + "attention.value_length_mla", uint32_t(dv));
    w.set(a + "rope.dimension_count", uint32_t(rope));
    w.set(a + "leading_dense_block_count", uint32_t(s.n_layer_dense_lead));
    w.set(a + "expert_count", uint32_t(X));
    w.set(a + "expert_used_count", uint32_t(s.n_expert_used));
    w.set(a + "expert_feed_forward_length", uint32_t(F));
    w.set(a + "expert_shared_count", uint32_t(s.n_expert_shared));
    w.set(a + "expert_weights_scale", s.expert_weights_scale);
    w.set(a + "expert_weights_norm", true);
    w.set(a + "expert_gating_func", uint32_t{2});  // sigmoid
    write_glm_vocab(w, s.n_vocab);

    uint64_t seed = s.seed;
    TensorContext ctx;
    ctx.n_layer = s.n_layer;
    ctx.n_expert = s.n_expert;
    ctx.n_gqa = s.n_head;  // head_count_kv is 1; MLA files have no attn-v-like tensors
    auto weight = [&](const std::string& name, std::vector<int64_t> ne, int64_t fan_in) {
        ctx.name = name;
        ctx.ne0 = ne[0];
        ctx.layer = name.rfind("blk.", 0) == 0 ? std::stoi(name.substr(4)) : -1;
        const GgmlType type = mix_tensor_type(s.mix, ctx);
        if (s.header_only) return w.add_tensor_info(name, type, ne);
        // F16 weights get std 1/sqrt(fan_in); quantized blocks a scale of about 1e-3.
        const float scale = s.mix == FileMix::F16 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 1e-3f;
        const uint64_t tensor_seed = seed++;
        w.add_tensor(name, type, ne, [=](std::span<uint8_t> b) { fill_random_blocks(type, b, scale, tensor_seed); });
    };
    auto f32 = [&](const std::string& name, std::vector<int64_t> ne, float base, float spread) {
        if (s.header_only) return w.add_tensor_info(name, GgmlType::F32, ne);
        const uint64_t tensor_seed = seed++;
        w.add_tensor(name, GgmlType::F32, ne,
                     [=](std::span<uint8_t> b) { fill_random_f32(b, base, spread, tensor_seed); });
    };
    auto norm = [&](const std::string& name, int64_t n) { f32(name, {n}, 1.0f, 0.1f); };

    weight("output.weight", {E, V}, E);
    norm("output_norm.weight", E);
    weight("token_embd.weight", {E, V}, 1);
    for (int i = 0; i < s.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        const bool dense = i < s.n_layer_dense_lead;
        weight(p + "attn_k_b.weight", {nope, R, H}, nope);
        weight(p + "attn_kv_a_mqa.weight", {E, R + rope}, E);
        norm(p + "attn_kv_a_norm.weight", R);
        norm(p + "attn_norm.weight", E);
        weight(p + "attn_output.weight", {H * dv, E}, H * dv);
        if (QR > 0) {
            weight(p + "attn_q_a.weight", {E, QR}, E);
            norm(p + "attn_q_a_norm.weight", QR);
            weight(p + "attn_q_b.weight", {QR, H * dk}, QR);
        } else {
            weight(p + "attn_q.weight", {E, H * dk}, E);
        }
        weight(p + "attn_v_b.weight", {R, dv, H}, R);
        if (dense) {
            weight(p + "ffn_down.weight", {s.n_ff, E}, s.n_ff);
            weight(p + "ffn_gate.weight", {E, s.n_ff}, E);
            norm(p + "ffn_norm.weight", E);
            weight(p + "ffn_up.weight", {E, s.n_ff}, E);
            continue;
        }
        f32(p + "exp_probs_b.bias", {X}, 0.0f, 0.01f);
        weight(p + "ffn_down_exps.weight", {F, E, X}, F);
        weight(p + "ffn_down_shexp.weight", {FS, E}, FS);
        weight(p + "ffn_gate_exps.weight", {E, F, X}, E);
        f32(p + "ffn_gate_inp.weight", {E, X}, 0.0f, 0.05f);  // router: varied routes
        weight(p + "ffn_gate_shexp.weight", {E, FS}, E);
        norm(p + "ffn_norm.weight", E);
        weight(p + "ffn_up_exps.weight", {E, F, X}, E);
        weight(p + "ffn_up_shexp.weight", {E, FS}, E);
    }
    w.write(path);
}

}  // namespace moeserve
