// Hyperparameters every architecture reads from GGUF metadata, with the
// defaults llama.cpp uses (spec architectures §1.3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"

namespace moeserve {

struct ModelParams {
    std::string arch;
    int64_t n_vocab = 0;  // length of tokenizer.ggml.tokens
    int64_t n_ctx_train = 0;
    int64_t n_embd = 0;
    int n_layer = 0;
    std::vector<uint32_t> n_head;     // per layer
    std::vector<uint32_t> n_head_kv;  // per layer; 0 = no attention in that layer
    std::vector<uint32_t> n_ff;       // per layer
    int head_dim_k = 0;
    int head_dim_v = 0;
    int n_rot = 0;
    float rms_eps = 1e-6f;
    RopeParams rope;
    int n_expert = 0;
    int n_expert_used = 0;
    int64_t n_ff_exp = 0;
    bool causal = true;
};

// RoPE settings given on the command line, over the model's (llama.cpp's
// --rope-scaling, --rope-scale / --rope-freq-scale, --rope-freq-base,
// --yarn-orig-ctx, --yarn-ext-factor, --yarn-attn-factor, --yarn-beta-fast,
// --yarn-beta-slow). Unset: the model's own.
struct RopeOverrides {
    std::optional<std::string> scaling;  // none, linear or yarn
    std::optional<float> freq_base, freq_scale;
    std::optional<int64_t> orig_ctx;
    std::optional<float> ext_factor, attn_factor, beta_fast, beta_slow;
    bool any() const {
        return scaling || freq_base || freq_scale || orig_ctx || ext_factor || attn_factor || beta_fast || beta_slow;
    }
};

// The RoPE of a model from its GGUF and the overrides, as llama.cpp sets up
// a context (spec architectures §1.5): the scaling type decides freq_scale
// (1 for none) and ext_factor (1 for yarn, unless given), and with YaRN the
// magnitude factor is derived from the effective freq_scale.
RopeParams resolve_rope(const GgufFile& f, RopeMode rope_mode, int n_rot, int64_t n_ctx_train,
                        const RopeOverrides& overrides);

// Reads the generic keys; `rope_mode` is the architecture's fixed layout.
ModelParams read_model_params(const GgufFile& f, RopeMode rope_mode, const RopeOverrides& rope = {});

}  // namespace moeserve
