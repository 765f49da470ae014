// llama: the dense pre-norm transformer baseline (and Mixtral-style MoE when
// expert_count is set). GQA attention with NORM RoPE (the converter permuted
// Q/K rows for it), optional per-pair rope frequency factors, SwiGLU FFN.
// Spec: ../shared/spec/architectures.md §2.
#include <fmt/format.h>

#include "model/attention_block.h"
#include "model/output_head.h"

namespace moeserve {
namespace {

struct LlamaLayer {
    Weight attn_norm, ffn_norm;
    AttentionWeights attn;
    Weight gate, up, down;                         // dense
    Weight router, gate_exps, up_exps, down_exps;  // MoE
};

class Llama final : public Model {
  public:
    Llama(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend, const RopeOverrides& rope)
        : Model(file, std::move(backend), read_model_params(*file, RopeMode::Normal, rope)) {
        const ModelParams& p = params_;
        if (p.n_rot != p.head_dim_k)
            throw GgufError(fmt::format("{}: invalid n_rot {} (llama needs rope.dimension_count == head size {})",
                                        file->path(), p.n_rot, p.head_dim_k));
        WeightBinder bind(*file);
        token_embd_ = bind.require("token_embd.weight", {p.n_embd, p.n_vocab});
        head_ = bind_output_head(bind, p, token_embd_);
        rope_freqs_ = bind.optional("rope_freqs.weight", {p.n_rot / 2});
        if (rope_freqs_) params_.rope.freq_factors = rope_freqs_.f32();
        const int64_t E = p.n_embd;
        for (int i = 0; i < p.n_layer; ++i) {
            const std::string b = "blk." + std::to_string(i) + ".";
            const int64_t F = p.n_ff[i];
            LlamaLayer l;
            l.attn_norm = bind.require(b + "attn_norm.weight", {E});
            l.attn = bind_attention(bind, p, i, /*qk_norm=*/false);
            l.ffn_norm = bind.require(b + "ffn_norm.weight", {E});
            if (p.n_expert > 0) {
                const int64_t X = p.n_expert;
                l.router = bind.require(b + "ffn_gate_inp.weight", {E, X});
                l.gate_exps = bind.optional(b + "ffn_gate_exps.weight", {E, F, X});
                l.up_exps = bind.require(b + "ffn_up_exps.weight", {E, F, X});
                l.down_exps = bind.require(b + "ffn_down_exps.weight", {F, E, X});
            } else {
                l.gate = bind.optional(b + "ffn_gate.weight", {E, F});
                l.up = bind.require(b + "ffn_up.weight", {E, F});
                l.down = bind.require(b + "ffn_down.weight", {F, E});
            }
            layers_.push_back(std::move(l));
        }
        moe_.n_expert = p.n_expert;
        moe_.n_expert_used = p.n_expert_used;
        moe_.gating = GatingFunc::Softmax;
        moe_.normalize_weights = true;
        moe_.activation = ExpertActivation::SwiGlu;
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
        be.embed(token_embd_, batch.tokens, x_.data());  // x: [T, E]
        for (int il = 0; il < p.n_layer; ++il) {
            be.begin_layer(il);
            const LlamaLayer& l = layers_[il];
            be.rms_norm(x_.data(), l.attn_norm.f32(), p.rms_eps, T, E, normed_.data());
            attention_forward(be, cache, il, l.attn, p, batch, normed_.data(), /*use_rope=*/true, attn_, sub_.data());
            be.add_rms_norm(x_.data(), sub_.data(), l.ffn_norm.f32(), p.rms_eps, T, E, normed_.data());
            if (l.router) {
                be.moe_ffn(normed_.data(), T, l.router, l.gate_exps, l.up_exps, l.down_exps, moe_, x_.data());
            } else {
                be.dense_ffn(normed_.data(), T, l.gate, l.up, l.down, ExpertActivation::SwiGlu, sub_.data());
                be.add(x_.data(), sub_.data(), T * E);
            }
        }
        output_head_forward(be, head_, p, batch, x_.data(), normed_, logits);
    }

  private:
    Weight token_embd_, rope_freqs_;
    OutputHead head_;
    std::vector<LlamaLayer> layers_;
    MoeParams moe_;
    Activations x_{mem()}, normed_{mem()}, sub_{mem()};
    AttentionScratch attn_{mem()};
};

std::unique_ptr<Model> load_llama(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                  const RopeOverrides& rope) {
    return std::make_unique<Llama>(std::move(file), std::move(backend), rope);
}

}  // namespace

MOESERVE_ARCHITECTURE("llama", load_llama);

}  // namespace moeserve
