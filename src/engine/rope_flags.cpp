#include "engine/rope_flags.h"

#include <charconv>
#include <stdexcept>

namespace moeserve {
namespace {

float to_float(const std::string& v) {
    float x = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size()) throw std::invalid_argument("expected a number");
    return x;
}

float positive(const std::string& v) {
    const float x = to_float(v);
    if (!(x > 0.0f)) throw std::invalid_argument("expected a number above 0");
    return x;
}

}  // namespace

const std::vector<RopeFlag>& rope_flags() {
    static const std::vector<RopeFlag> flags = {
        {"--rope-scaling", "{none,linear,yarn}", "LLAMA_ARG_ROPE_SCALING_TYPE",
         "RoPE frequency scaling (default: the model's; none turns scaling off)"},
        {"--rope-scale", "N", "LLAMA_ARG_ROPE_SCALE", "RoPE context scaling factor: the context grows N times"},
        {"--rope-freq-base", "N", "LLAMA_ARG_ROPE_FREQ_BASE", "RoPE base frequency (default: the model's)"},
        {"--rope-freq-scale", "N", "LLAMA_ARG_ROPE_FREQ_SCALE", "RoPE frequency scale, 1/N of --rope-scale"},
        {"--yarn-orig-ctx", "N", "LLAMA_ARG_YARN_ORIG_CTX",
         "the context the model was trained at, for YaRN (default: the model's)"},
        {"--yarn-ext-factor", "N", "LLAMA_ARG_YARN_EXT_FACTOR",
         "YaRN extrapolation mix (default -1: 1 with YaRN scaling, else 0)"},
        {"--yarn-attn-factor", "N", "LLAMA_ARG_YARN_ATTN_FACTOR", "YaRN magnitude factor (default -1: 1)"},
        {"--yarn-beta-slow", "N", "LLAMA_ARG_YARN_BETA_SLOW", "YaRN high correction dim (default -1: 1)"},
        {"--yarn-beta-fast", "N", "LLAMA_ARG_YARN_BETA_FAST", "YaRN low correction dim (default -1: 32)"},
    };
    return flags;
}

bool apply_rope_flag(RopeOverrides& r, const std::string& flag, const std::string& v) {
    if (flag == "--rope-scaling") {
        if (v != "none" && v != "linear" && v != "yarn") throw std::invalid_argument("expected none, linear or yarn");
        r.scaling = v;
    } else if (flag == "--rope-scale") {
        r.freq_scale = 1.0f / positive(v);
    } else if (flag == "--rope-freq-base") {
        r.freq_base = positive(v);
    } else if (flag == "--rope-freq-scale") {
        r.freq_scale = positive(v);
    } else if (flag == "--yarn-orig-ctx") {
        int64_t n = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < 0)
            throw std::invalid_argument("expected a token count (0: the model's)");
        r.orig_ctx = n;
    } else if (flag == "--yarn-ext-factor") {
        r.ext_factor = to_float(v);
    } else if (flag == "--yarn-attn-factor") {
        r.attn_factor = to_float(v);
    } else if (flag == "--yarn-beta-slow") {
        r.beta_slow = to_float(v);
    } else if (flag == "--yarn-beta-fast") {
        r.beta_fast = to_float(v);
    } else {
        return false;
    }
    return true;
}

}  // namespace moeserve
