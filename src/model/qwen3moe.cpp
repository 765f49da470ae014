// qwen3moe (Qwen3-Coder-30B-A3B and every Qwen3-MoE): a pre-norm transformer
// whose every layer is GQA attention with per-head QK RMSNorm and NEOX RoPE,
// followed by a routed MoE FFN (softmax router over all experts, top-k,
// weights renormalized, SwiGLU experts, no shared expert).
// Spec: ../shared/spec/architectures.md §4.
#include <fmt/format.h>

#include "model/attention_block.h"
#include "model/output_head.h"

namespace moeserve {
namespace {

struct Qwen3MoeLayer {
    Weight attn_norm, ffn_norm;
    AttentionWeights attn;
    Weight router, gate_exps, up_exps, down_exps;
};

class Qwen3Moe final : public Model {
  public:
    Qwen3Moe(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend, const RopeOverrides& rope)
        : Model(file, std::move(backend), read_model_params(*file, RopeMode::Neox, rope)) {
        const ModelParams& p = params_;
        if (p.n_expert <= 0) throw GgufError(fmt::format("{}: qwen3moe needs expert_count > 0", file->path()));
        // n_ff_exp falls back to feed_forward_length / expert_used_count (spec §4.1).
        if (p.n_ff_exp == 0) params_.n_ff_exp = p.n_ff[0] / p.n_expert_used;
        if (p.head_dim_k != p.head_dim_v || p.n_rot != p.head_dim_k)
            throw GgufError(
                fmt::format("{}: qwen3moe needs key_length == value_length == rope dimensions", file->path()));
        WeightBinder bind(*file);
        token_embd_ = bind.require("token_embd.weight", {p.n_embd, p.n_vocab});
        head_ = bind_output_head(bind, p, token_embd_);
        const int64_t E = p.n_embd, F = params_.n_ff_exp, X = p.n_expert;
        for (int i = 0; i < p.n_layer; ++i) {
            const std::string b = "blk." + std::to_string(i) + ".";
            Qwen3MoeLayer l;
            l.attn_norm = bind.require(b + "attn_norm.weight", {E});
            l.attn = bind_attention(bind, p, i, /*qk_norm=*/true);
            l.ffn_norm = bind.require(b + "ffn_norm.weight", {E});
            l.router = bind.require(b + "ffn_gate_inp.weight", {E, X});
            l.gate_exps = bind.require(b + "ffn_gate_exps.weight", {E, F, X});
            l.up_exps = bind.require(b + "ffn_up_exps.weight", {E, F, X});
            l.down_exps = bind.require(b + "ffn_down_exps.weight", {F, E, X});
            layers_.push_back(std::move(l));
        }
        moe_.n_expert = p.n_expert;
        moe_.n_expert_used = p.n_expert_used;
        moe_.gating = GatingFunc::Softmax;
        moe_.normalize_weights = true;  // hard-coded for qwen3moe; no scaling
        moe_.activation = ExpertActivation::SwiGlu;
        unused_ = bind.unused();
    }

  protected:
    // Every layer caches RoPE-rotated keys: a shift re-rotates them.
    std::string context_shift_refusal() const override { return rope_keys_shift_refusal(); }

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
            const Qwen3MoeLayer& l = layers_[il];
            be.rms_norm(x_.data(), l.attn_norm.f32(), p.rms_eps, T, E, normed_.data());
            attention_forward(be, cache, il, l.attn, p, batch, normed_.data(), /*use_rope=*/true, attn_, sub_.data());
            be.add_rms_norm(x_.data(), sub_.data(), l.ffn_norm.f32(), p.rms_eps, T, E, normed_.data());
            be.moe_ffn(normed_.data(), T, l.router, l.gate_exps, l.up_exps, l.down_exps, moe_, x_.data());
        }
        output_head_forward(be, head_, p, batch, x_.data(), normed_, logits);
    }

  private:
    Weight token_embd_;
    OutputHead head_;
    std::vector<Qwen3MoeLayer> layers_;
    MoeParams moe_;
    std::vector<std::string> unused_;
    Activations x_{mem()}, normed_{mem()}, sub_{mem()};
    AttentionScratch attn_{mem()};
};

std::unique_ptr<Model> load_qwen3moe(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                     const RopeOverrides& rope) {
    return std::make_unique<Qwen3Moe>(std::move(file), std::move(backend), rope);
}

}  // namespace

MOESERVE_ARCHITECTURE("qwen3moe", load_qwen3moe);

}  // namespace moeserve
