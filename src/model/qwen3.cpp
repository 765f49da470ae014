// qwen3 (dense): llama's block with per-head QK RMSNorm before NEOX RoPE and
// head_dim taken from attention.key_length. Spec: architectures.md §3.
#include <fmt/format.h>

#include "model/attention_block.h"
#include "model/output_head.h"

namespace moeserve {
namespace {

struct Qwen3Layer {
    Weight attn_norm, ffn_norm;
    AttentionWeights attn;
    Weight gate, up, down;
};

class Qwen3 final : public Model {
  public:
    Qwen3(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend, const RopeOverrides& rope)
        : Model(file, std::move(backend), read_model_params(*file, RopeMode::Neox, rope)) {
        const ModelParams& p = params_;
        WeightBinder bind(*file);
        token_embd_ = bind.require("token_embd.weight", {p.n_embd, p.n_vocab});
        head_ = bind_output_head(bind, p, token_embd_);
        const int64_t E = p.n_embd;
        for (int i = 0; i < p.n_layer; ++i) {
            const std::string b = "blk." + std::to_string(i) + ".";
            Qwen3Layer l;
            l.attn_norm = bind.require(b + "attn_norm.weight", {E});
            l.attn = bind_attention(bind, p, i, /*qk_norm=*/true);
            l.ffn_norm = bind.require(b + "ffn_norm.weight", {E});
            l.gate = bind.require(b + "ffn_gate.weight", {E, p.n_ff[i]});
            l.up = bind.require(b + "ffn_up.weight", {E, p.n_ff[i]});
            l.down = bind.require(b + "ffn_down.weight", {p.n_ff[i], E});
            layers_.push_back(std::move(l));
        }
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
            const Qwen3Layer& l = layers_[il];
            be.rms_norm(x_.data(), l.attn_norm.f32(), p.rms_eps, T, E, normed_.data());
            attention_forward(be, cache, il, l.attn, p, batch, normed_.data(), /*use_rope=*/true, attn_, sub_.data());
            be.add_rms_norm(x_.data(), sub_.data(), l.ffn_norm.f32(), p.rms_eps, T, E, normed_.data());
            be.dense_ffn(normed_.data(), T, l.gate, l.up, l.down, ExpertActivation::SwiGlu, sub_.data());
            be.add(x_.data(), sub_.data(), T * E);
        }
        output_head_forward(be, head_, p, batch, x_.data(), normed_, logits);
    }

  private:
    Weight token_embd_;
    OutputHead head_;
    std::vector<Qwen3Layer> layers_;
    Activations x_{mem()}, normed_{mem()}, sub_{mem()};
    AttentionScratch attn_{mem()};
};

std::unique_ptr<Model> load_qwen3(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                  const RopeOverrides& rope) {
    return std::make_unique<Qwen3>(std::move(file), std::move(backend), rope);
}

}  // namespace

MOESERVE_ARCHITECTURE("qwen3", load_qwen3);

}  // namespace moeserve
