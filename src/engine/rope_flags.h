// llama.cpp's RoPE flags, shared by `serve` and the engine commands (run,
// logits, bench): --rope-scaling, --rope-scale, --rope-freq-base,
// --rope-freq-scale, --yarn-orig-ctx, --yarn-ext-factor, --yarn-attn-factor,
// --yarn-beta-slow, --yarn-beta-fast. They override the RoPE the GGUF
// declares, e.g. `--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 32768`
// to run a model past its trained context as Qwen's guides do.
#pragma once

#include <string>
#include <vector>

#include "model/model_params.h"

namespace moeserve {

struct RopeFlag {
    const char* name;
    const char* value;  // placeholder for --help
    const char* env;    // LLAMA_ARG_* variable
    const char* help;
};

// The flags, in --help order.
const std::vector<RopeFlag>& rope_flags();

// Sets the override `flag` names from `value`. Throws std::invalid_argument
// saying what was expected; returns false when `flag` is not a RoPE flag.
bool apply_rope_flag(RopeOverrides& rope, const std::string& flag, const std::string& value);

}  // namespace moeserve
