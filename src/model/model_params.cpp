#include "model/model_params.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace moeserve {

RopeParams resolve_rope(const GgufFile& f, RopeMode rope_mode, int n_rot, int64_t n_ctx_train, const RopeOverrides& o) {
    const std::string a = f.architecture() + ".";
    RopeParams r;
    r.mode = rope_mode;
    r.n_rot = n_rot;
    r.freq_base = o.freq_base.value_or(f.find_f32(a + "rope.freq_base").value_or(10000.0f));
    const std::string trained = f.find_string(a + "rope.scaling.type").value_or("linear");
    const float factor =
        f.find_f32(a + "rope.scaling.factor").value_or(f.find_f32(a + "rope.scale_linear").value_or(0.0f));
    r.freq_scale = (trained == "none" || factor == 0.0f) ? 1.0f : 1.0f / factor;
    if (o.freq_scale) r.freq_scale = *o.freq_scale;
    const std::string scaling = o.scaling.value_or(trained);
    if (scaling == "none") r.freq_scale = 1.0f;  // never scale when scaling is off
    const int64_t orig = f.find_u32(a + "rope.scaling.original_context_length").value_or(0);
    r.n_ctx_orig = static_cast<int>(o.orig_ctx && *o.orig_ctx > 0 ? *o.orig_ctx : orig > 0 ? orig : n_ctx_train);
    r.ext_factor = o.ext_factor && *o.ext_factor >= 0.0f ? *o.ext_factor : scaling == "yarn" ? 1.0f : 0.0f;
    r.attn_factor = o.attn_factor && *o.attn_factor >= 0.0f ? *o.attn_factor : 1.0f;
    if (r.ext_factor != 0.0f) {
        const float inv = 1.0f / r.freq_scale;
        auto gm = [](float s, float m) { return s <= 1.0f ? 1.0f : 0.1f * m * std::log(s) + 1.0f; };
        r.attn_factor *= gm(inv, 1.0f) / (1.0f + 0.1f * std::log(inv));
    }
    r.attn_factor *= f.find_f32(a + "rope.scaling.attn_factor").value_or(1.0f);
    if (o.beta_fast && *o.beta_fast >= 0.0f) r.beta_fast = *o.beta_fast;
    if (o.beta_slow && *o.beta_slow >= 0.0f) r.beta_slow = *o.beta_slow;
    return r;
}

ModelParams read_model_params(const GgufFile& f, RopeMode rope_mode, const RopeOverrides& rope) {
    ModelParams p;
    p.arch = f.architecture();
    const std::string a = p.arch + ".";
    auto u32_or = [&](const std::string& key, uint32_t def) { return f.find_u32(a + key).value_or(def); };
    // A size or count kept in an int: a larger value is refused rather than wrapped.
    auto int_or = [&](const std::string& key, uint32_t def) {
        const uint32_t v = u32_or(key, def);
        if (v > static_cast<uint32_t>(INT32_MAX))
            throw GgufError(fmt::format("{}: {}{} = {} is out of range (at most {})", f.path(), a, key, v, INT32_MAX));
        return static_cast<int>(v);
    };

    p.n_vocab = static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());
    p.n_ctx_train = f.get_u32(a + "context_length");
    // Positions are int32: a longer context could never be used.
    if (p.n_ctx_train < 1 || p.n_ctx_train > INT32_MAX)
        throw GgufError(
            fmt::format("{}: {}context_length {} is out of range (1 to {})", f.path(), a, p.n_ctx_train, INT32_MAX));
    p.n_embd = f.get_u32(a + "embedding_length");
    p.n_layer = static_cast<int>(f.get_u32(a + "block_count"));
    if (p.n_layer <= 0 || p.n_layer > 4096 || p.n_embd <= 0)
        throw GgufError(
            fmt::format("{}: implausible shape: {} layers, embedding length {}", f.path(), p.n_layer, p.n_embd));
    auto per_layer = [&](const std::string& key, uint32_t def) {
        return f.has(a + key) ? f.get_u32_per_layer(a + key, p.n_layer) : std::vector<uint32_t>(p.n_layer, def);
    };
    p.n_head = per_layer("attention.head_count", 0);
    p.n_head_kv = f.has(a + "attention.head_count_kv") ? per_layer("attention.head_count_kv", 0) : p.n_head;
    p.n_ff = per_layer("feed_forward_length", 0);
    const uint32_t n_head0 = p.n_head.empty() ? 0 : p.n_head[0];
    const uint32_t head_dim_default = n_head0 ? static_cast<uint32_t>(p.n_embd / n_head0) : 0;
    p.head_dim_k = int_or("attention.key_length", head_dim_default);
    p.head_dim_v = int_or("attention.value_length", head_dim_default);
    p.n_rot = int_or("rope.dimension_count", static_cast<uint32_t>(p.head_dim_k));
    p.rms_eps = f.find_f32(a + "attention.layer_norm_rms_epsilon").value_or(1e-6f);
    p.n_expert = int_or("expert_count", 0);
    p.n_expert_used = int_or("expert_used_count", 0);
    p.n_ff_exp = u32_or("expert_feed_forward_length", 0);
    p.causal = f.find_bool(a + "attention.causal").value_or(true);
    // Grouped-query attention shares each KV head among n_head / n_head_kv
    // query heads; any other ratio would read past the cache's heads.
    for (int l = 0; l < p.n_layer; ++l)
        if (p.n_head_kv[l] > 0 && (p.n_head[l] == 0 || p.n_head[l] % p.n_head_kv[l] != 0))
            throw GgufError(
                fmt::format("{}: layer {} has {} attention heads and {} KV heads: {}attention.head_count "
                            "must be a positive multiple of {}attention.head_count_kv",
                            f.path(), l, p.n_head[l], p.n_head_kv[l], a, a));
    if (p.n_expert > 0 && (p.n_expert_used <= 0 || p.n_expert_used > p.n_expert))
        throw GgufError(fmt::format("{}: expert_used_count {} must be between 1 and expert_count {}", f.path(),
                                    p.n_expert_used, p.n_expert));

    p.rope = resolve_rope(f, rope_mode, p.n_rot, p.n_ctx_train, rope);
    return p;
}

}  // namespace moeserve
