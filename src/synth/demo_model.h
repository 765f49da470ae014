// The built-in demo model: a tiny qwen3moe GGUF with deterministic random
// weights and a byte-level BPE vocabulary, written by `moeserve demo` so a
// fresh checkout has a model file to inspect and serve without downloads.
#pragma once

#include <string>

namespace moeserve {

struct DemoModelShape {
    int n_layer = 2;
    int n_embd = 128;
    int n_head = 4;
    int n_head_kv = 2;
    int head_dim = 64;
    int n_expert = 8;
    int n_expert_used = 2;
    int n_ff_exp = 128;
    int n_ctx_train = 4096;
    uint64_t seed = 42;
};

void write_demo_model(const std::string& path, const DemoModelShape& shape = {});

}  // namespace moeserve
