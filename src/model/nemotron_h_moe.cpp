// nemotron_h_moe (NVIDIA Nemotron-3-Nano-30B-A3B) and the dense nemotron_h:
// a hybrid where every layer is one pre-normed mixer with a residual add,
// and the mixer is one of
//   Mamba2     — in-projection to z | xBC | dt, causal conv + SiLU, selective
//                scan over the sequence's recurrent state, gated grouped
//                RMSNorm, out-projection;
//   attention  — GQA over the KV cache with no positional encoding at all;
//   MoE        — sigmoid router with selection bias, top-k, normalized and
//                scaled weights, non-gated ReLU² experts, plus a ReLU² shared
//                expert (optionally in a latent width: Nemotron-3-Super);
//   dense FFN  — a ReLU² MLP (nemotron_h).
// The kind comes from the per-layer head_count_kv and feed_forward_length.
// Spec: ../shared/spec/architectures.md §6.
#include <fmt/format.h>

#include <algorithm>

#include "model/attention_block.h"
#include "model/output_head.h"

namespace moeserve {
namespace {

enum class LayerKind { Mamba2, Attention, Moe, Ffn };

struct NemotronLayer {
    LayerKind kind = LayerKind::Mamba2;
    Weight norm;  // attn_norm {n_embd}: the block's only norm, whatever its kind
    // Mamba2
    Weight ssm_in;      // {n_embd, 2*d_inner + 2*G*N + H}: rows z | xBC | dt
    Weight ssm_conv;    // {K, C}, F32
    Weight ssm_conv_b;  // {C}, optional
    Weight ssm_dt_b;    // {H}
    Weight ssm_a;       // {1, H}, -exp(A_log)
    Weight ssm_d;       // {1, H}
    Weight ssm_norm;    // {d_inner/G, G}
    Weight ssm_out;     // {d_inner, n_embd}
    // attention
    AttentionWeights attn;
    // MoE
    Weight router;                  // {n_embd, n_expert}
    Weight exp_probs_b;             // {n_expert}: selection bias
    Weight up_exps, down_exps;      // {moe_embd, n_ff_exp, n_expert}, {n_ff_exp, moe_embd, n_expert}
    Weight up_shexp, down_shexp;    // {n_embd, n_ff_shexp}, {n_ff_shexp, n_embd}
    Weight latent_down, latent_up;  // {n_embd, moe_embd}, {moe_embd, n_embd}: latent MoE only
    // dense FFN
    Weight ffn_up, ffn_down, ffn_down_b;  // {n_embd, n_ff}, {n_ff, n_embd}, {n_embd}
};

struct MambaShape {
    int d_conv = 0;       // K
    int64_t d_inner = 0;  // H*P
    int d_state = 0;      // N
    int n_head = 0;       // H
    int n_group = 0;      // G
    // C: conv channels, x | B | C
    int64_t channels() const { return d_inner + 2 * static_cast<int64_t>(n_group) * d_state; }
    // rows of ssm_in: z | xBC | dt
    int64_t d_in_proj() const { return d_inner + channels() + n_head; }
};

class NemotronH final : public Model {
  public:
    NemotronH(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend, const RopeOverrides& rope)
        : Model(file, std::move(backend), read_model_params(*file, RopeMode::Normal, rope)) {
        const ModelParams& p = params_;
        const std::string a = p.arch + ".";
        const std::string& path = file->path();
        auto u32_or = [&](const std::string& key, uint32_t def) { return file->find_u32(a + key).value_or(def); };

        bool any_mamba = false;
        kinds_.resize(p.n_layer);
        for (int i = 0; i < p.n_layer; ++i) {
            // spec §6.2: Mamba2 iff no KV heads and no FFN; attention iff no FFN
            if (p.n_ff[i] > 0) {
                kinds_[i] = p.n_expert > 0 ? LayerKind::Moe : LayerKind::Ffn;
            } else if (p.n_head_kv[i] > 0) {
                kinds_[i] = LayerKind::Attention;
            } else {
                kinds_[i] = LayerKind::Mamba2;
                any_mamba = true;
            }
        }
        if (any_mamba) {
            for (const char* key :
                 {"ssm.conv_kernel", "ssm.inner_size", "ssm.state_size", "ssm.time_step_rank", "ssm.group_count"})
                if (!file->has(a + key))
                    throw GgufError(fmt::format("{}: {} has Mamba2 layers but no {}{}", path, p.arch, a, key));
            ssm_.d_conv = static_cast<int>(file->get_u32(a + "ssm.conv_kernel"));
            ssm_.d_inner = file->get_u32(a + "ssm.inner_size");
            ssm_.d_state = static_cast<int>(file->get_u32(a + "ssm.state_size"));
            ssm_.n_head = static_cast<int>(file->get_u32(a + "ssm.time_step_rank"));
            ssm_.n_group = static_cast<int>(file->get_u32(a + "ssm.group_count"));
            if (ssm_.d_conv < 1 || ssm_.d_state < 1 || ssm_.n_head < 1 || ssm_.n_group < 1 ||
                ssm_.d_inner % ssm_.n_head != 0 || ssm_.n_head % ssm_.n_group != 0)
                throw GgufError(
                    fmt::format("{}: implausible Mamba2 shape: conv kernel {}, inner size {}, state {}, "
                                "{} heads, {} groups (heads must divide the inner size, groups the heads)",
                                path, ssm_.d_conv, ssm_.d_inner, ssm_.d_state, ssm_.n_head, ssm_.n_group));
        }
        const int64_t n_ff_shexp = u32_or("expert_shared_feed_forward_length", 0);
        const int64_t latent = u32_or("moe_latent_size", 0);
        if (p.n_expert > 0 && p.n_ff_exp == 0)
            throw GgufError(fmt::format("{}: {} needs {}expert_feed_forward_length", path, p.arch, a));

        WeightBinder bind(*file);
        token_embd_ = bind.require("token_embd.weight", {p.n_embd, p.n_vocab});
        head_ = bind_output_head(bind, p, token_embd_);
        require_f32(head_.norm);
        const int64_t E = p.n_embd, X = p.n_expert, F = p.n_ff_exp, ME = latent > 0 ? latent : E;
        const int64_t H = ssm_.n_head, C = ssm_.channels();
        for (int i = 0; i < p.n_layer; ++i) {
            const std::string b = "blk." + std::to_string(i) + ".";
            NemotronLayer l;
            l.kind = kinds_[i];
            l.norm = require_f32(bind.require(b + "attn_norm.weight", {E}));
            switch (l.kind) {
                case LayerKind::Mamba2:
                    l.ssm_in = bind.require(b + "ssm_in.weight", {E, ssm_.d_in_proj()});
                    l.ssm_conv = require_f32(bind.require(b + "ssm_conv1d.weight", {ssm_.d_conv, C}));
                    l.ssm_conv_b = require_f32(bind.optional(b + "ssm_conv1d.bias", {C}));
                    l.ssm_dt_b = require_f32(bind.require(b + "ssm_dt.bias", {H}));
                    l.ssm_a = require_f32(bind.require(b + "ssm_a", {1, H}));
                    l.ssm_d = require_f32(bind.require(b + "ssm_d", {1, H}));
                    l.ssm_norm =
                        require_f32(bind.require(b + "ssm_norm.weight", {ssm_.d_inner / ssm_.n_group, ssm_.n_group}));
                    l.ssm_out = bind.require(b + "ssm_out.weight", {ssm_.d_inner, E});
                    break;
                case LayerKind::Attention:
                    l.attn = bind_attention(bind, p, i, /*qk_norm=*/false);
                    break;
                case LayerKind::Moe:
                    l.router = bind.require(b + "ffn_gate_inp.weight", {E, X});
                    l.exp_probs_b = require_f32(bind.require(b + "exp_probs_b.bias", {X}));
                    l.up_exps = bind.require(b + "ffn_up_exps.weight", {ME, F, X});
                    l.down_exps = bind.require(b + "ffn_down_exps.weight", {F, ME, X});
                    if (n_ff_shexp > 0) {
                        l.up_shexp = bind.require(b + "ffn_up_shexp.weight", {E, n_ff_shexp});
                        l.down_shexp = bind.require(b + "ffn_down_shexp.weight", {n_ff_shexp, E});
                    }
                    if (latent > 0) {
                        l.latent_down = bind.require(b + "ffn_latent_down.weight", {E, ME});
                        l.latent_up = bind.require(b + "ffn_latent_up.weight", {ME, E});
                    }
                    break;
                case LayerKind::Ffn:
                    // The ReLU² MLP has no activation op of its own between
                    // up and down, so an up-projection bias cannot be applied.
                    if (file->find_tensor(b + "ffn_up.bias"))
                        throw GgufError(
                            fmt::format("{}: tensor {}ffn_up.bias: biased ReLU² MLPs are not supported", path, b));
                    l.ffn_up = bind.require(b + "ffn_up.weight", {E, p.n_ff[i]});
                    l.ffn_down = bind.require(b + "ffn_down.weight", {p.n_ff[i], E});
                    l.ffn_down_b = require_f32(bind.optional(b + "ffn_down.bias", {E}));
                    break;
            }
            layers_.push_back(std::move(l));
        }
        moe_.n_expert = p.n_expert;
        moe_.n_expert_used = p.n_expert_used;
        moe_.gating = GatingFunc::Sigmoid;  // hard-coded for this architecture (spec §9.11)
        moe_.normalize_weights = file->find_bool(a + "expert_weights_norm").value_or(false);
        moe_.weights_scale = file->find_f32(a + "expert_weights_scale").value_or(0.0f);
        moe_.activation = ExpertActivation::ReluSquared;
        latent_ = latent;
        unused_ = bind.unused();
    }

    KvCacheConfig kv_cache_config(int64_t n_cells, int n_seq, GgmlType type_k, GgmlType type_v) const override {
        KvCacheConfig c = Model::kv_cache_config(n_cells, n_seq, type_k, type_v);  // K/V for attention layers only
        c.n_embd_r.assign(params_.n_layer, 0);
        c.n_embd_s.assign(params_.n_layer, 0);
        for (int i = 0; i < params_.n_layer; ++i) {
            if (kinds_[i] != LayerKind::Mamba2) continue;
            c.n_embd_r[i] = (ssm_.d_conv - 1) * ssm_.channels();                // conv: [C][K-1]
            c.n_embd_s[i] = static_cast<int64_t>(ssm_.d_state) * ssm_.d_inner;  // ssm: [H][P][N]
        }
        return c;
    }

  protected:
    void forward_batch(const BatchView& batch, KvCache& cache, float* logits) override {
        Backend& be = *backend_;
        const ModelParams& p = params_;
        const int64_t T = static_cast<int64_t>(batch.tokens.size()), E = p.n_embd;
        x_.resize(T * E);
        normed_.resize(T * E);
        sub_.resize(T * E);
        // x: [T, E], the residual stream
        be.embed(token_embd_, batch.tokens, x_.data());
        for (int il = 0; il < p.n_layer; ++il) {
            be.begin_layer(il);
            const NemotronLayer& l = layers_[il];
            be.rms_norm(x_.data(), l.norm.f32(), p.rms_eps, T, E, normed_.data());
            switch (l.kind) {
                case LayerKind::Mamba2:
                    mamba2_forward(cache, il, l, batch, T);
                    break;
                case LayerKind::Attention:
                    attention_forward(be, cache, il, l.attn, p, batch, normed_.data(), /*use_rope=*/false, attn_,
                                      sub_.data());
                    break;
                case LayerKind::Moe:
                    moe_forward(l, T);
                    break;
                case LayerKind::Ffn:
                    be.dense_ffn(normed_.data(), T, Weight{}, l.ffn_up, l.ffn_down, ExpertActivation::ReluSquared,
                                 sub_.data());
                    add_bias(be, sub_.data(), T, l.ffn_down_b);
                    break;
            }
            be.add(x_.data(), sub_.data(), T * E);
        }
        output_head_forward(be, head_, p, batch, x_.data(), normed_, logits);
    }

  private:
    // sub = Mamba2(normed) for layer il, continuing each sequence's state.
    void mamba2_forward(KvCache& cache, int il, const NemotronLayer& l, const BatchView& batch, int64_t T) {
        Backend& be = *backend_;
        const int64_t D = ssm_.d_inner, C = ssm_.channels(), W = ssm_.d_in_proj();
        proj_.resize(T * W);
        xbc_.resize(T * C);
        y_.resize(T * D);
        // proj: [T, W], each row z [D] | xBC [C] | dt [H]
        be.matmul(l.ssm_in, normed_.data(), T, proj_.data());
        // xbc: [T, C] = SiLU(conv(xBC) + bias), rows x [H][P] | B [G][N] | C [G][N]
        be.ssm_conv(cache, il, proj_.data() + D, W, T, batch.seq_ids, l.ssm_conv, l.ssm_conv_b, xbc_.data());
        SsmParams sp;
        sp.n_head = ssm_.n_head;
        sp.head_dim = static_cast<int>(D / ssm_.n_head);
        sp.d_state = ssm_.d_state;
        sp.n_group = ssm_.n_group;
        sp.dt_bias = l.ssm_dt_b.f32();
        sp.a = l.ssm_a.f32();
        sp.d = l.ssm_d.f32();
        // y: [T, D] = scan + D skip
        be.ssm_scan(cache, il, xbc_.data(), proj_.data() + D + C, W, T, batch.seq_ids, sp, y_.data());
        // y := RMSNorm_G(y ⊙ silu(z)) * ssm_norm
        be.gated_group_norm(y_.data(), proj_.data(), W, l.ssm_norm.f32(), params_.rms_eps, T, D, ssm_.n_group);
        // sub: [T, E]
        be.matmul(l.ssm_out, y_.data(), T, sub_.data());
    }

    // sub = shared(normed) + Σ_j w_j expert_j(normed).
    void moe_forward(const NemotronLayer& l, int64_t T) {
        Backend& be = *backend_;
        const int64_t E = params_.n_embd;
        if (l.up_shexp)
            be.dense_ffn(normed_.data(), T, Weight{}, l.up_shexp, l.down_shexp, ExpertActivation::ReluSquared,
                         sub_.data());
        else
            be.fill(sub_.data(), 0.0f, T * E);
        MoeParams mp = moe_;
        mp.selection_bias = l.exp_probs_b.f32();
        if (!l.latent_down) {
            be.moe_ffn(normed_.data(), T, l.router, Weight{}, l.up_exps, l.down_exps, mp, sub_.data());
            return;
        }
        // Latent MoE: the router reads normed [T, E]; the experts work in
        // [T, latent] between the latent down and up projections.
        latent_in_.resize(T * latent_);
        latent_out_.resize(T * latent_);
        be.fill(latent_out_.data(), 0.0f, T * latent_);
        up_.resize(T * E);
        be.matmul(l.latent_down, normed_.data(), T, latent_in_.data());
        mp.expert_input = latent_in_.data();
        be.moe_ffn(normed_.data(), T, l.router, Weight{}, l.up_exps, l.down_exps, mp, latent_out_.data());
        be.matmul(l.latent_up, latent_out_.data(), T, up_.data());
        be.add(sub_.data(), up_.data(), T * E);
    }

    // Norms, biases and the Mamba2 per-head vectors are read as f32 in place.
    Weight require_f32(Weight w) const {
        if (w && w.type != GgmlType::F32)
            throw GgufError(
                fmt::format("{}: tensor {} has type {}, expected f32", file_->path(), w.name, ggml_type_name(w.type)));
        return w;
    }

    Weight token_embd_;
    OutputHead head_;
    std::vector<LayerKind> kinds_;
    std::vector<NemotronLayer> layers_;
    MambaShape ssm_;
    MoeParams moe_;
    int64_t latent_ = 0;
    std::vector<std::string> unused_;
    // x, normed, sub: [T, E]; proj: [T, d_in_proj]; xbc: [T, C]; y: [T, d_inner]
    Activations x_{mem()}, normed_{mem()}, sub_{mem()}, proj_{mem()}, xbc_{mem()}, y_{mem()}, latent_in_{mem()},
        latent_out_{mem()}, up_{mem()};
    AttentionScratch attn_{mem()};
};

std::unique_ptr<Model> load_nemotron_h_moe(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                           const RopeOverrides& rope) {
    return std::make_unique<NemotronH>(std::move(file), std::move(backend), rope);
}

// The dense Nemotron-H: the same blocks with ReLU² MLPs instead of MoE.
std::unique_ptr<Model> load_nemotron_h(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                       const RopeOverrides& rope) {
    return std::make_unique<NemotronH>(std::move(file), std::move(backend), rope);
}

}  // namespace

MOESERVE_ARCHITECTURE("nemotron_h_moe", load_nemotron_h_moe);
MOESERVE_ARCHITECTURE("nemotron_h", load_nemotron_h);

}  // namespace moeserve
