// deepseek2 (GLM-4.7-Flash, DeepSeek-V2/V3 and their "lite" variants): a
// pre-norm transformer whose attention is multi-head latent attention (MLA)
// and whose FFN is dense for the leading layers and routed experts plus a
// shared expert after them.
//
// MLA runs in the absorbed form, as llama.cpp does for every MLA file: the
// cache keeps one row per token and layer, [RMSNorm(latent) | RoPE(k_pe)]
// (kv_lora + n_rot values, shared by all heads, no V cache); attn_k_b is
// folded into each head's query so it scores the latent directly, and
// attn_v_b turns each head's attention-weighted latent into its value.
// Spec: ../shared/spec/architectures.md §5.
#include <fmt/format.h>

#include <cmath>
#include <optional>

#include "model/output_head.h"

namespace moeserve {
namespace {

struct Deepseek2Layer {
    Weight attn_norm;
    Weight q_a, q_a_norm, q_b;  // q_lora path: {E, q_lora}, {q_lora}, {q_lora, H*dk}
    Weight q;                   // lite path: {E, H*dk}
    Weight kv_a;                // attn_kv_a_mqa {E, R + n_rot}
    Weight kv_a_norm;           // {R}
    Weight k_b;                 // {qk_nope, R, H}: latent -> head h's no-RoPE key, applied to the query
    Weight v_b;                 // {R, dv, H}: latent -> head h's value
    Weight output;              // {H*dv, E}
    Weight ffn_norm;
    Weight gate, up, down;                         // dense layers: {E, n_ff}, {n_ff, E}
    Weight router, gate_exps, up_exps, down_exps;  // MoE layers
    Weight gate_shexp, up_shexp, down_shexp;       // shared expert: {E, n_ff_exp * n_shared}
};

// The deepseek2 keys beyond the generic ones (spec §5.1).
struct Deepseek2Params {
    int n_dense_lead = 0;  // leading layers with a dense FFN
    int q_lora = 0;        // 0: plain attn_q
    int kv_lora = 0;       // R: latent width
    int dk = 0;            // true per-head Q/K dim = qk_nope + n_rot (key_length_mla)
    int dv = 0;            // per-head V dim (value_length_mla)
    int qk_nope = 0;
    int n_rot = 0;
    int n_expert_shared = 0;
    float kq_scale = 0.0f;
};

class Deepseek2 final : public Model {
  public:
    Deepseek2(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
              const RopeOverrides& rope_overrides)
        : Model(file, std::move(backend), read_model_params(*file, RopeMode::Normal, rope_overrides)) {
        const GgufFile& f = *file;
        const std::string a = "deepseek2.";
        const ModelParams& p = params_;
        auto u32 = [&](const std::string& key, uint32_t def) { return f.find_u32(a + key).value_or(def); };
        auto fail = [&](const std::string& what) {
            return GgufError(fmt::format("{}: deepseek2: {}", f.path(), what));
        };

        Deepseek2Params& d = ds_;
        d.n_dense_lead = static_cast<int>(u32("leading_dense_block_count", 0));
        d.q_lora = static_cast<int>(u32("attention.q_lora_rank", 0));
        d.kv_lora = static_cast<int>(f.get_u32(a + "attention.kv_lora_rank"));
        d.dk = static_cast<int>(u32("attention.key_length_mla", 0));
        d.dv = static_cast<int>(u32("attention.value_length_mla", 0));
        d.n_rot = p.n_rot;
        d.qk_nope = d.dk - d.n_rot;
        d.n_expert_shared = static_cast<int>(u32("expert_shared_count", 0));
        if (d.dk == 0 || d.dv == 0)
            throw fail(
                "no attention.key_length_mla/value_length_mla: a legacy (non-MLA) file with attn_kv_b; "
                "reconvert it with a current llama.cpp convert_hf_to_gguf.py");
        if (d.qk_nope <= 0 || d.kv_lora <= 0)
            throw fail(fmt::format("implausible MLA shape: key_length_mla {}, rope dimensions {}, kv_lora_rank {}",
                                   d.dk, d.n_rot, d.kv_lora));
        if (p.head_dim_k != d.kv_lora + d.n_rot)
            throw fail(fmt::format("attention.key_length is {}, expected kv_lora_rank + rope dimensions = {}",
                                   p.head_dim_k, d.kv_lora + d.n_rot));
        if (d.n_dense_lead > p.n_layer) throw fail("leading_dense_block_count exceeds block_count");
        if (d.n_dense_lead < p.n_layer && p.n_expert <= 0) throw fail("MoE layers need expert_count > 0");
        for (int i = 0; i < p.n_layer; ++i)
            if (p.n_head[i] != p.n_head[0] || p.n_head_kv[i] != 1)
                throw fail(
                    fmt::format("layer {} has {} heads and {} KV heads; MLA needs the same head count in every "
                                "layer and 1 KV head",
                                i, p.n_head[i], p.n_head_kv[i]));

        // Router (spec §5.1): gating from expert_gating_func, with llama.cpp's
        // fallback — sigmoid for GLM-4.7-Flash (47/48 layers, vocabulary
        // 154,880), softmax (DeepSeek-V2) otherwise.
        const uint32_t gating = u32("expert_gating_func", 0);
        if (gating == 0)
            moe_.gating =
                (p.n_layer == 47 || p.n_layer == 48) && p.n_vocab == 154880 ? GatingFunc::Sigmoid : GatingFunc::Softmax;
        else if (gating == 1)
            moe_.gating = GatingFunc::Softmax;
        else if (gating == 2)
            moe_.gating = GatingFunc::Sigmoid;
        else
            throw fail(fmt::format("expert_gating_func {} is not supported (1 = softmax, 2 = sigmoid)", gating));
        moe_.n_expert = p.n_expert;
        moe_.n_expert_used = p.n_expert_used;
        moe_.normalize_weights = f.find_bool(a + "expert_weights_norm").value_or(false);
        moe_.weights_scale = f.find_f32(a + "expert_weights_scale").value_or(0.0f);
        moe_.activation = ExpertActivation::SwiGlu;
        if (f.find_u32(a + "expert_group_count").value_or(1) > 1)
            throw fail("group-limited expert routing (expert_group_count > 1) is not supported");

        // RoPE and attention scale with YaRN (spec §1.5, §5.5). The converter
        // stores 0.1 * mscale_all_dim as yarn_log_multiplier.
        const float log_mul = f.find_f32(a + "rope.scaling.yarn_log_multiplier").value_or(0.0f) / 0.1f;
        RopeParams& rope = params_.rope;
        const float inv_scale = 1.0f / rope.freq_scale;
        if (rope.ext_factor != 0.0f && log_mul != 0.0f) {
            auto gm = [](float s, float m) { return s <= 1.0f ? 1.0f : 0.1f * m * std::log(s) + 1.0f; };
            const float mscale = log_mul != 1.0f ? log_mul : 1.0f;
            const std::optional<float> user = rope_overrides.attn_factor;  // --yarn-attn-factor
            const float base = user && *user >= 0.0f ? *user : 1.0f;
            rope.attn_factor =
                base * gm(inv_scale, mscale) / gm(inv_scale, log_mul) / (1.0f + 0.1f * std::log(inv_scale));
            rope.attn_factor *= f.find_f32(a + "rope.scaling.attn_factor").value_or(1.0f);
        }
        // The graph undoes the kernel's YaRN magnitude factor, then scales the scores.
        const float attn_factor_org = rope.attn_factor * (1.0f + 0.1f * std::log(inv_scale));
        const float mscale = attn_factor_org * (1.0f + 0.1f * log_mul * std::log(inv_scale));
        d.kq_scale = mscale * mscale / std::sqrt(static_cast<float>(d.dk));

        // Tensors (spec §5.2).
        WeightBinder bind(f);
        const int64_t E = p.n_embd, H = p.n_head[0], R = d.kv_lora, Fx = p.n_ff_exp, X = p.n_expert;
        token_embd_ = bind.require("token_embd.weight", {E, p.n_vocab});
        head_ = bind_output_head(bind, p, token_embd_);
        for (int i = 0; i < p.n_layer; ++i) {
            const std::string b = "blk." + std::to_string(i) + ".";
            Deepseek2Layer l;
            l.attn_norm = bind.require(b + "attn_norm.weight", {E});
            // "Lite" models have attn_q instead of the q_lora pair.
            l.q = bind.optional(b + "attn_q.weight", {E, H * d.dk});
            if (!l.q) {
                if (d.q_lora <= 0) throw fail(fmt::format("layer {} has no attn_q and q_lora_rank is 0", i));
                l.q_a = bind.require(b + "attn_q_a.weight", {E, d.q_lora});
                l.q_a_norm = bind.require(b + "attn_q_a_norm.weight", {d.q_lora});
                l.q_b = bind.require(b + "attn_q_b.weight", {d.q_lora, H * d.dk});
            }
            l.kv_a = bind.require(b + "attn_kv_a_mqa.weight", {E, R + d.n_rot});
            l.kv_a_norm = bind.require(b + "attn_kv_a_norm.weight", {R});
            l.k_b = bind.require(b + "attn_k_b.weight", {d.qk_nope, R, H});
            l.v_b = bind.require(b + "attn_v_b.weight", {R, d.dv, H});
            l.output = bind.require(b + "attn_output.weight", {H * d.dv, E});
            l.ffn_norm = bind.require(b + "ffn_norm.weight", {E});
            if (i < d.n_dense_lead) {
                const int64_t F = p.n_ff[i];
                l.gate = bind.require(b + "ffn_gate.weight", {E, F});
                l.up = bind.require(b + "ffn_up.weight", {E, F});
                l.down = bind.require(b + "ffn_down.weight", {F, E});
            } else {
                l.router = bind.require(b + "ffn_gate_inp.weight", {E, X});
                selection_bias_.push_back(bind.optional(b + "exp_probs_b.bias", {X}));
                bind_experts(bind, b, E, Fx, X, l);
                l.down_exps = bind.require(b + "ffn_down_exps.weight", {Fx, E, X});
                const int64_t Fs = Fx * d.n_expert_shared;
                l.gate_shexp = bind.require(b + "ffn_gate_shexp.weight", {E, Fs});
                l.up_shexp = bind.require(b + "ffn_up_shexp.weight", {E, Fs});
                l.down_shexp = bind.require(b + "ffn_down_shexp.weight", {Fs, E});
            }
            layers_.push_back(std::move(l));
        }
        unused_ = bind.unused();
    }

    // MLA caches one K row of kv_lora + n_rot values per token and layer and
    // no V; llama.cpp never rotates it (spec quant-formats §3.8).
    KvCacheConfig kv_cache_config(int64_t n_cells, int n_seq, GgmlType type_k, GgmlType type_v) const override {
        KvCacheConfig c;
        c.n_cells = n_cells;
        c.n_seq_max = n_seq;
        c.type_k = type_k;
        c.type_v = type_v;
        c.head_dim_k = ds_.kv_lora + ds_.n_rot;
        c.head_dim_v = 0;
        c.allow_rotation = false;
        c.n_embd_k.assign(params_.n_layer, c.head_dim_k);
        c.n_embd_v.assign(params_.n_layer, 0);
        return c;
    }

  protected:
    void forward_batch(const BatchView& batch, KvCache& cache, float* logits) override {
        Backend& be = *backend_;
        const ModelParams& p = params_;
        const Deepseek2Params& d = ds_;
        const int64_t T = static_cast<int64_t>(batch.tokens.size()), E = p.n_embd;
        const int H = static_cast<int>(p.n_head[0]);
        const int R = d.kv_lora, D = d.kv_lora + d.n_rot;  // D: cached row width
        x_.resize(T * E);
        normed_.resize(T * E);
        sub_.resize(T * E);
        ffn_.resize(T * E);
        q_.resize(T * H * d.dk);
        qa_.resize(T * std::max(d.q_lora, 1));
        kv_.resize(T * D);
        krow_.resize(T * D);
        lat_.resize(T * R);
        q_pe_.resize(T * H * d.n_rot);
        k_pe_.resize(T * d.n_rot);
        q_mla_.resize(T * H * D);
        q_abs_.resize(T * H * R);
        o_lat_.resize(T * H * R);
        o_.resize(T * H * d.dv);

        // x: [T, E], the residual stream
        be.embed(token_embd_, batch.tokens, x_.data());
        for (int il = 0; il < p.n_layer; ++il) {
            be.begin_layer(il);
            const Deepseek2Layer& l = layers_[il];
            be.rms_norm(x_.data(), l.attn_norm.f32(), p.rms_eps, T, E, normed_.data());

            // q: [T, H, dk] = per head [q_nope (qk_nope) | q_pe (n_rot)];  kv: [T, R + n_rot] = [latent | k_pe]
            if (l.q) {
                const Backend::Projection proj[] = {{&l.q, q_.data()}, {&l.kv_a, kv_.data()}};
                be.matmul_shared_input(normed_.data(), T, proj);
            } else {
                const Backend::Projection proj[] = {{&l.q_a, qa_.data()}, {&l.kv_a, kv_.data()}};
                be.matmul_shared_input(normed_.data(), T, proj);
                be.rms_norm(qa_.data(), l.q_a_norm.f32(), p.rms_eps, T, d.q_lora, qa_.data());
                be.matmul(l.q_b, qa_.data(), T, q_.data());
            }

            // RoPE (NORM) on q_pe [T, H, n_rot] and the single k_pe [T, 1, n_rot].
            be.copy_rows(q_pe_.data(), d.n_rot, q_.data() + d.qk_nope, d.dk, T * H, d.n_rot);
            be.copy_rows(k_pe_.data(), d.n_rot, kv_.data() + R, D, T, d.n_rot);
            be.rope(q_pe_.data(), T, H, d.n_rot, batch.positions, p.rope);
            be.rope(k_pe_.data(), T, 1, d.n_rot, batch.positions, p.rope);

            // krow: [T, D] = [RMSNorm(latent) * kv_a_norm | RoPE(k_pe)], the cached row.
            be.copy_rows(lat_.data(), R, kv_.data(), D, T, R);
            be.rms_norm(lat_.data(), l.kv_a_norm.f32(), p.rms_eps, T, R, lat_.data());
            be.copy_rows(krow_.data(), D, lat_.data(), R, T, R);
            be.copy_rows(krow_.data() + R, D, k_pe_.data(), d.n_rot, T, d.n_rot);
            be.store_kv(cache, il, krow_.data(), nullptr, batch.cells);

            // q_abs[t][h] = W_UK_h^T q_nope[t][h]: [T, H, R]; q_mla: [T, H, D] = [q_abs | RoPE(q_pe)].
            be.matmul_heads(l.k_b, q_.data(), T, static_cast<int64_t>(H) * d.dk, d.dk, q_abs_.data());
            be.copy_rows(q_mla_.data(), D, q_abs_.data(), R, T * H, R);
            be.copy_rows(q_mla_.data() + R, D, q_pe_.data(), d.n_rot, T * H, d.n_rot);
            // o_lat: [T, H, R], each head's attention-weighted latent; o: [T, H, dv] = W_UV_h o_lat[t][h].
            be.attention_mla(cache, il, q_mla_.data(), T, H, R, batch.rows, d.kq_scale, o_lat_.data());
            be.matmul_heads(l.v_b, o_lat_.data(), T, static_cast<int64_t>(H) * R, R, o_.data());
            be.matmul(l.output, o_.data(), T, sub_.data());
            be.add_rms_norm(x_.data(), sub_.data(), l.ffn_norm.f32(), p.rms_eps, T, E, normed_.data());
            if (il < d.n_dense_lead) {
                be.dense_ffn(normed_.data(), T, l.gate, l.up, l.down, ExpertActivation::SwiGlu, ffn_.data());
            } else {
                // ffn = routed experts + shared expert, then added to the residual (llama.cpp's order).
                MoeParams moe = moe_;
                const Weight& bias = selection_bias_[il - d.n_dense_lead];
                moe.selection_bias = bias ? bias.f32() : nullptr;
                be.fill(ffn_.data(), 0.0f, T * E);
                be.moe_ffn(normed_.data(), T, l.router, l.gate_exps, l.up_exps, l.down_exps, moe, ffn_.data());
                be.dense_ffn(normed_.data(), T, l.gate_shexp, l.up_shexp, l.down_shexp, ExpertActivation::SwiGlu,
                             sub_.data());
                be.add(ffn_.data(), sub_.data(), T * E);
            }
            be.add(x_.data(), ffn_.data(), T * E);
        }
        output_head_forward(be, head_, p, batch, x_.data(), normed_, logits);
    }

  private:
    // Routed gate/up experts, separate or fused as ffn_gate_up_exps {E, 2*Fx, X}
    // (rows [0, Fx) gate, [Fx, 2*Fx) up of each expert): views into the fused tensor.
    static void bind_experts(WeightBinder& bind, const std::string& b, int64_t E, int64_t Fx, int64_t X,
                             Deepseek2Layer& l) {
        if (Weight fused = bind.optional(b + "ffn_gate_up_exps.weight", {E, 2 * Fx, X})) {
            l.gate_exps = l.up_exps = fused;
            l.gate_exps.ne[1] = l.up_exps.ne[1] = Fx;
            l.up_exps.data = fused.data + Fx * fused.row_bytes;  // matrix_bytes stays the fused stride
            return;
        }
        l.gate_exps = bind.require(b + "ffn_gate_exps.weight", {E, Fx, X});
        l.up_exps = bind.require(b + "ffn_up_exps.weight", {E, Fx, X});
    }

    Deepseek2Params ds_;
    Weight token_embd_;
    OutputHead head_;
    std::vector<Deepseek2Layer> layers_;
    std::vector<Weight> selection_bias_;  // per MoE layer; empty when absent
    MoeParams moe_;
    std::vector<std::string> unused_;
    // Activations, reused across calls (shapes in forward_batch).
    Activations x_{mem()}, normed_{mem()}, sub_{mem()}, ffn_{mem()}, q_{mem()}, qa_{mem()}, kv_{mem()}, lat_{mem()},
        krow_{mem()}, q_pe_{mem()}, k_pe_{mem()}, q_mla_{mem()}, q_abs_{mem()}, o_lat_{mem()}, o_{mem()};
};

std::unique_ptr<Model> load_deepseek2(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                      const RopeOverrides& rope) {
    return std::make_unique<Deepseek2>(std::move(file), std::move(backend), rope);
}

}  // namespace

MOESERVE_ARCHITECTURE("deepseek2", load_deepseek2);

}  // namespace moeserve
