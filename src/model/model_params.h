// Hyperparameters every architecture reads from GGUF metadata, with the
// defaults llama.cpp uses (spec architectures §1.3).
#pragma once

#include <cstdint>
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

// Reads the generic keys; `rope_mode` is the architecture's fixed layout.
ModelParams read_model_params(const GgufFile& f, RopeMode rope_mode);

}  // namespace moeserve
