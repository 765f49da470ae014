#include "synth/synth_model.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "gguf/gguf_writer.h"
#include "synth/random_blocks.h"

namespace moeserve {
namespace {

// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the
// others are shifted to U+0100 and up so every byte is a visible character.
std::string byte_token(int b) {
    auto printable = [](int x) { return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF); };
    int cp = b;
    if (!printable(b)) {
        cp = 256;
        for (int x = 0; x < b; ++x) cp += !printable(x);
    }
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

int layer_of(const std::string& name) {
    if (name.rfind("blk.", 0) != 0) return -1;
    return std::stoi(name.substr(4));
}

}  // namespace

SynthSpec demo_spec() {
    SynthSpec s;
    s.name = "moeserve-demo";
    return s;
}

SynthSpec bench_spec(FileMix mix) {
    SynthSpec s;
    s.name = fmt::format("moeserve-bench-qwen3moe-4L-{}", file_mix_name(mix));
    s.n_layer = 4;
    s.n_embd = 2048;
    s.n_head = 32;
    s.n_head_kv = 4;
    s.head_dim = 128;
    s.n_expert = 128;
    s.n_expert_used = 8;
    s.n_ff_exp = 768;
    s.n_vocab = 704;
    s.n_ctx_train = 262144;
    s.mix = mix;
    return s;
}

void write_synth_model(const std::string& path, const SynthSpec& s) {
    if (s.arch != "qwen3moe") throw std::invalid_argument("synth writes qwen3moe models only, not '" + s.arch + "'");
    if (s.n_vocab < 259) throw std::invalid_argument("synth needs a vocabulary of at least 259 tokens");
    const std::string a = s.arch + ".";
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_token(b)), types.push_back(1);
    for (int i = 0; static_cast<int>(tokens.size()) < s.n_vocab - 3; ++i)
        tokens.push_back(fmt::format("<|filler_{}|>", i)), types.push_back(4);  // user-defined
    for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
        tokens.push_back(special), types.push_back(3);

    GgufWriter w;
    w.set("general.architecture", s.arch);
    w.set("general.name", s.name);
    w.set("general.file_type", file_mix_ftype(s.mix));
    w.set("general.quantization_version", uint32_t{2});
    w.set(a + "context_length", uint32_t(s.n_ctx_train));
    w.set(a + "embedding_length", uint32_t(s.n_embd));
    w.set(a + "block_count", uint32_t(s.n_layer));
    w.set(a + "attention.head_count", uint32_t(s.n_head));
    w.set(a + "attention.head_count_kv", uint32_t(s.n_head_kv));
    w.set(a + "attention.key_length", uint32_t(s.head_dim));
    w.set(a + "attention.value_length", uint32_t(s.head_dim));
    w.set(a + "attention.layer_norm_rms_epsilon", 1e-6f);
    w.set(a + "rope.freq_base", s.rope_freq_base);
    w.set(a + "expert_count", uint32_t(s.n_expert));
    w.set(a + "expert_used_count", uint32_t(s.n_expert_used));
    w.set(a + "expert_feed_forward_length", uint32_t(s.n_ff_exp));
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", "qwen2");
    w.set("tokenizer.ggml.tokens", gguf_string_array(tokens));
    w.set("tokenizer.ggml.token_type", gguf_array(GgufValueType::INT32, types));
    w.set("tokenizer.ggml.merges", gguf_string_array({}));
    w.set("tokenizer.ggml.eos_token_id", uint32_t(s.n_vocab - 1));
    w.set("tokenizer.ggml.padding_token_id", uint32_t(s.n_vocab - 3));
    w.set("tokenizer.ggml.add_bos_token", false);

    const int64_t E = s.n_embd, D = s.head_dim, F = s.n_ff_exp, X = s.n_expert, V = s.n_vocab;
    uint64_t seed = s.seed;
    TensorContext ctx;
    ctx.n_layer = s.n_layer;
    ctx.n_expert = s.n_expert;
    ctx.n_gqa = s.n_head / s.n_head_kv;
    ctx.attn_v_count = s.n_layer;
    auto add = [&](const std::string& name, std::vector<int64_t> ne, bool quantizable, float scale) {
        GgmlType type = GgmlType::F32;
        if (quantizable) {
            ctx.name = name;
            ctx.ne0 = ne[0];
            ctx.layer = layer_of(name);
            ctx.attn_v_index = ctx.layer;
            type = mix_tensor_type(s.mix, ctx);
        }
        if (s.header_only) {
            w.add_tensor_info(name, type, ne);
            return;
        }
        const uint64_t tensor_seed = seed++;
        w.add_tensor(name, type, ne, [=](std::span<uint8_t> bytes) {
            if (!quantizable && scale == 0.0f) fill_random_f32(bytes, 0.0f, 0.05f, tensor_seed);  // router: varied routes
            else if (!quantizable) fill_random_f32(bytes, scale, 0.1f * scale, tensor_seed);       // norms near `scale`
            else fill_random_blocks(type, bytes, scale, tensor_seed);
        });
    };
    // Block scales for quantized types are about 1e-3 (values up to ~0.3);
    // F16 weights get std 1/sqrt(fan_in).
    auto wscale = [&](int64_t fan_in) {
        return s.mix == FileMix::F16 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 1e-3f;
    };
    add("token_embd.weight", {E, V}, true, s.mix == FileMix::F16 ? 1.0f : 4e-3f);
    add("output_norm.weight", {E}, false, 1.0f);
    add("output.weight", {E, V}, true, wscale(E));
    for (int i = 0; i < s.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        add(p + "attn_norm.weight", {E}, false, 1.0f);
        add(p + "attn_q.weight", {E, D * s.n_head}, true, wscale(E));
        add(p + "attn_k.weight", {E, D * s.n_head_kv}, true, wscale(E));
        add(p + "attn_v.weight", {E, D * s.n_head_kv}, true, wscale(E));
        add(p + "attn_output.weight", {D * s.n_head, E}, true, wscale(D * s.n_head));
        add(p + "attn_q_norm.weight", {D}, false, 1.0f);
        add(p + "attn_k_norm.weight", {D}, false, 1.0f);
        add(p + "ffn_norm.weight", {E}, false, 1.0f);
        add(p + "ffn_gate_inp.weight", {E, X}, false, 0.0f);
        add(p + "ffn_gate_exps.weight", {E, F, X}, true, wscale(E));
        add(p + "ffn_up_exps.weight", {E, F, X}, true, wscale(E));
        add(p + "ffn_down_exps.weight", {F, E, X}, true, wscale(F));
    }
    w.write(path);
}

}  // namespace moeserve
