#include "synth/synth_model.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "gguf/gguf_writer.h"
#include "synth/random_blocks.h"
#include "synth/synth_vocab.h"

namespace moeserve {
namespace {

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

SynthSpec nemotron_bench_spec(FileMix mix) {
    SynthSpec s;
    s.arch = "nemotron_h_moe";
    s.name = fmt::format("moeserve-bench-nemotron-MEM*E-{}", file_mix_name(mix));
    s.layer_pattern = "MEM*E";
    s.n_layer = 5;
    s.n_embd = 2688;
    s.n_head = 32;
    s.n_head_kv = 2;
    s.head_dim = 128;
    s.n_expert = 128;
    s.n_expert_used = 6;
    s.n_ff_exp = 1856;
    s.n_ff_shexp = 3712;
    s.ssm_n_head = 64;
    s.ssm_head_dim = 64;
    s.ssm_d_state = 128;
    s.ssm_n_group = 8;
    s.ssm_d_conv = 4;
    s.n_vocab = 704;
    s.n_ctx_train = 1048576;
    s.mix = mix;
    return s;
}

namespace {

// The vocabulary and tokenizer keys every synthetic model shares.
void write_synth_vocab(GgufWriter& w, const SynthSpec& s) {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) tokens.push_back(synth_byte_token(b)), types.push_back(1);
    for (int i = 0; static_cast<int>(tokens.size()) < s.n_vocab - 3; ++i)
        tokens.push_back(fmt::format("<|filler_{}|>", i)), types.push_back(4);  // user-defined
    for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
        tokens.push_back(special), types.push_back(3);
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", "qwen2");
    w.set("tokenizer.ggml.tokens", gguf_string_array(tokens));
    w.set("tokenizer.ggml.token_type", gguf_array(GgufValueType::INT32, types));
    w.set("tokenizer.ggml.merges", gguf_string_array({}));
    w.set("tokenizer.ggml.eos_token_id", uint32_t(s.n_vocab - 1));
    w.set("tokenizer.ggml.padding_token_id", uint32_t(s.n_vocab - 3));
    w.set("tokenizer.ggml.add_bos_token", false);
}

// nemotron_h_moe and the dense nemotron_h (spec architectures §6): per-layer
// head_count_kv and feed_forward_length arrays give the layer kinds (layer
// pattern letter '-' = a dense ReLU² MLP of width n_ff, nemotron_h only);
// tensor types follow
// llama-quantize's rules, where hybrids count only attention layers as
// attn-v-like and n_gqa is 0 because layer 0 is recurrent.
void write_nemotron(const std::string& path, const SynthSpec& s) {
    const std::string a = s.arch + ".";
    const int n_layer = static_cast<int>(s.layer_pattern.size());
    const bool moe = s.arch == "nemotron_h_moe";
    if (n_layer == 0 || s.layer_pattern.find_first_not_of(moe ? "M*E" : "M*-") != std::string::npos)
        throw std::invalid_argument(moe ? "synth: nemotron_h_moe needs a layer pattern of M, * and E"
                                        : "synth: nemotron_h needs a layer pattern of M, * and -");
    std::vector<uint32_t> head_kv(n_layer, 0), ff(n_layer, 0);
    int n_attn = 0;
    for (int i = 0; i < n_layer; ++i) {
        if (s.layer_pattern[i] == '*') head_kv[i] = s.n_head_kv, ++n_attn;
        if (s.layer_pattern[i] == 'E') ff[i] = s.n_ff_exp;
        if (s.layer_pattern[i] == '-') ff[i] = s.n_ff;
    }
    const int64_t E = s.n_embd, D = s.head_dim, F = s.n_ff_exp, X = s.n_expert, V = s.n_vocab, FS = s.n_ff_shexp;
    const int64_t H = s.ssm_n_head, DI = static_cast<int64_t>(s.ssm_n_head) * s.ssm_head_dim, N = s.ssm_d_state,
                  G = s.ssm_n_group, K = s.ssm_d_conv, C = DI + 2 * G * N;

    GgufWriter w;
    w.set("general.architecture", s.arch);
    w.set("general.name", s.name);
    w.set("general.file_type", file_mix_ftype(s.mix));
    w.set("general.quantization_version", uint32_t{2});
    w.set(a + "context_length", uint32_t(s.n_ctx_train));
    w.set(a + "embedding_length", uint32_t(s.n_embd));
    w.set(a + "block_count", uint32_t(n_layer));
    w.set(a + "attention.head_count", uint32_t(s.n_head));
    w.set(a + "attention.head_count_kv", gguf_array(GgufValueType::UINT32, head_kv));
    w.set(a + "feed_forward_length", gguf_array(GgufValueType::UINT32, ff));
    w.set(a + "attention.key_length", uint32_t(s.head_dim));
    w.set(a + "attention.value_length", uint32_t(s.head_dim));
    w.set(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    // Real conversions carry the plain layer-norm epsilon too (from the config's
    // layer_norm_epsilon), and recent llama.cpp refuses a Nemotron-H file without it.
    w.set(a + "attention.layer_norm_epsilon", 1e-5f);
    w.set(a + "ssm.conv_kernel", uint32_t(K));
    w.set(a + "ssm.inner_size", uint32_t(DI));
    w.set(a + "ssm.state_size", uint32_t(N));
    w.set(a + "ssm.time_step_rank", uint32_t(H));
    w.set(a + "ssm.group_count", uint32_t(G));
    if (moe) {
        w.set(a + "expert_count", uint32_t(s.n_expert));
        w.set(a + "expert_used_count", uint32_t(s.n_expert_used));
        w.set(a + "expert_feed_forward_length", uint32_t(s.n_ff_exp));
        w.set(a + "expert_shared_feed_forward_length", uint32_t(s.n_ff_shexp));
        w.set(a + "expert_shared_count", uint32_t{1});
        w.set(a + "expert_weights_norm", true);
        w.set(a + "expert_weights_scale", s.expert_weights_scale);
        w.set(a + "expert_group_count", uint32_t{1});
    }
    write_synth_vocab(w, s);

    uint64_t seed = s.seed;
    TensorContext ctx;
    ctx.n_layer = n_layer;
    ctx.n_expert = moe ? s.n_expert : 0;
    ctx.n_gqa = s.layer_pattern[0] == '*' ? s.n_head / s.n_head_kv : 0;
    ctx.attn_v_count = n_attn;
    int attn_seen = 0;
    // A quantizable weight: its mix type, random blocks of scale `scale`.
    auto weight = [&](const std::string& name, std::vector<int64_t> ne, float scale) {
        ctx.name = name;
        ctx.ne0 = ne[0];
        ctx.layer = layer_of(name);
        ctx.attn_v_index = attn_seen;
        const GgmlType type = mix_tensor_type(s.mix, ctx);
        if (s.header_only) return w.add_tensor_info(name, type, ne);
        const uint64_t tensor_seed = seed++;
        w.add_tensor(name, type, ne, [=](std::span<uint8_t> bytes) { fill_random_blocks(type, bytes, scale, tensor_seed); });
    };
    // An F32 tensor of values base ± spread.
    auto f32 = [&](const std::string& name, std::vector<int64_t> ne, float base, float spread) {
        if (s.header_only) return w.add_tensor_info(name, GgmlType::F32, ne);
        const uint64_t tensor_seed = seed++;
        w.add_tensor(name, GgmlType::F32, ne,
                     [=](std::span<uint8_t> bytes) { fill_random_f32(bytes, base, spread, tensor_seed); });
    };
    auto wscale = [&](int64_t fan_in) {
        return s.mix == FileMix::F16 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 1e-3f;
    };
    weight("token_embd.weight", {E, V}, s.mix == FileMix::F16 ? 1.0f : 4e-3f);
    f32("output_norm.weight", {E}, 1.0f, 0.1f);
    weight("output.weight", {E, V}, wscale(E));
    for (int i = 0; i < n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        f32(p + "attn_norm.weight", {E}, 1.0f, 0.1f);
        switch (s.layer_pattern[i]) {
            case 'M':
                weight(p + "ssm_in.weight", {E, 2 * DI + 2 * G * N + H}, wscale(E));
                f32(p + "ssm_conv1d.weight", {K, C}, 0.0f, 0.5f);
                f32(p + "ssm_conv1d.bias", {C}, 0.0f, 0.1f);
                f32(p + "ssm_dt.bias", {H}, -2.0f, 1.0f);
                f32(p + "ssm_a", {1, H}, -8.0f, 7.0f);  // -exp(A_log): negative
                f32(p + "ssm_d", {1, H}, 1.0f, 0.1f);
                f32(p + "ssm_norm.weight", {DI / G, G}, 1.0f, 0.1f);
                weight(p + "ssm_out.weight", {DI, E}, wscale(DI));
                break;
            case '*':
                weight(p + "attn_q.weight", {E, D * s.n_head}, wscale(E));
                weight(p + "attn_k.weight", {E, D * s.n_head_kv}, wscale(E));
                weight(p + "attn_v.weight", {E, D * s.n_head_kv}, wscale(E));
                weight(p + "attn_output.weight", {D * s.n_head, E}, wscale(D * s.n_head));
                ++attn_seen;
                break;
            case '-':
                weight(p + "ffn_up.weight", {E, s.n_ff}, wscale(E));
                weight(p + "ffn_down.weight", {s.n_ff, E}, wscale(s.n_ff));
                break;
            default:  // 'E'
                f32(p + "ffn_gate_inp.weight", {E, X}, 0.0f, 0.05f);
                f32(p + "exp_probs_b.bias", {X}, 0.0f, 0.01f);
                weight(p + "ffn_up_exps.weight", {E, F, X}, wscale(E));
                weight(p + "ffn_down_exps.weight", {F, E, X}, wscale(F));
                weight(p + "ffn_up_shexp.weight", {E, FS}, wscale(E));
                weight(p + "ffn_down_shexp.weight", {FS, E}, wscale(FS));
                break;
        }
    }
    w.write(path);
}

}  // namespace

void write_synth_model(const std::string& path, const SynthSpec& s) {
    if (s.arch == "deepseek2") return write_synth_deepseek2(path, s);
    if (s.arch == "nemotron_h_moe" || s.arch == "nemotron_h") {
        if (s.n_vocab < 259) throw std::invalid_argument("synth needs a vocabulary of at least 259 tokens");
        write_nemotron(path, s);
        return;
    }
    if (s.arch != "qwen3moe")
        throw std::invalid_argument("synth writes qwen3moe, deepseek2, nemotron_h_moe and nemotron_h models only, not '" + s.arch +
                                    "'");
    if (s.n_vocab < 259) throw std::invalid_argument("synth needs a vocabulary of at least 259 tokens");
    const std::string a = s.arch + ".";
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) tokens.push_back(synth_byte_token(b)), types.push_back(1);
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
