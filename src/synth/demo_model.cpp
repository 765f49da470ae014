#include "synth/demo_model.h"

#include <cmath>
#include <cstring>

#include "gguf/gguf_writer.h"
#include "quant/fp16.h"

namespace moeserve {
namespace {

// Deterministic uniform values in [-1, 1) from a 64-bit LCG.
class Rng {
public:
    explicit Rng(uint64_t seed) : s_(seed * 2654435761u + 1) {}
    float uniform() {
        s_ = s_ * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<float>((s_ >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
    }

private:
    uint64_t s_;
};

// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the
// others are shifted to U+0100 and up so every byte is a visible character.
std::string byte_token(int b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    int cp = b;
    if (!printable) {
        int n = 0;
        for (int x = 0; x < b; ++x) {
            bool p = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            if (!p) ++n;
        }
        cp = 256 + n;
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

std::vector<uint8_t> f16_tensor(Rng& rng, size_t n, float scale) {
    std::vector<uint8_t> bytes(n * 2);
    for (size_t i = 0; i < n; ++i) {
        uint16_t h = fp32_to_fp16(rng.uniform() * scale);
        std::memcpy(&bytes[i * 2], &h, 2);
    }
    return bytes;
}

std::vector<uint8_t> f32_tensor(Rng& rng, size_t n, float base, float spread) {
    std::vector<uint8_t> bytes(n * 4);
    for (size_t i = 0; i < n; ++i) {
        float x = base + rng.uniform() * spread;
        std::memcpy(&bytes[i * 4], &x, 4);
    }
    return bytes;
}

}  // namespace

void write_demo_model(const std::string& path, const DemoModelShape& s) {
    const std::string arch = "qwen3moe";
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_token(b)), types.push_back(1);
    for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
        tokens.push_back(special), types.push_back(3);
    const int n_vocab = static_cast<int>(tokens.size());

    GgufWriter w;
    w.set("general.architecture", arch);
    w.set("general.name", "moeserve-demo");
    w.set("general.file_type", uint32_t{1});
    w.set(arch + ".context_length", uint32_t(s.n_ctx_train));
    w.set(arch + ".embedding_length", uint32_t(s.n_embd));
    w.set(arch + ".block_count", uint32_t(s.n_layer));
    w.set(arch + ".attention.head_count", uint32_t(s.n_head));
    w.set(arch + ".attention.head_count_kv", uint32_t(s.n_head_kv));
    w.set(arch + ".attention.key_length", uint32_t(s.head_dim));
    w.set(arch + ".attention.value_length", uint32_t(s.head_dim));
    w.set(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
    w.set(arch + ".rope.freq_base", 1000000.0f);
    w.set(arch + ".expert_count", uint32_t(s.n_expert));
    w.set(arch + ".expert_used_count", uint32_t(s.n_expert_used));
    w.set(arch + ".expert_feed_forward_length", uint32_t(s.n_ff_exp));
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", "qwen2");
    w.set("tokenizer.ggml.tokens", gguf_string_array(tokens));
    w.set("tokenizer.ggml.token_type", gguf_array(GgufValueType::INT32, types));
    w.set("tokenizer.ggml.merges", gguf_string_array({}));
    w.set("tokenizer.ggml.eos_token_id", uint32_t(n_vocab - 1));
    w.set("tokenizer.ggml.padding_token_id", uint32_t(n_vocab - 3));
    w.set("tokenizer.ggml.add_bos_token", false);

    Rng rng(s.seed);
    const int64_t E = s.n_embd, D = s.head_dim, F = s.n_ff_exp, X = s.n_expert;
    const float w_scale = 1.0f / std::sqrt(static_cast<float>(E));
    w.add_tensor("token_embd.weight", GgmlType::F16, {E, n_vocab}, f16_tensor(rng, E * n_vocab, 1.0f));
    w.add_tensor("output_norm.weight", GgmlType::F32, {E}, f32_tensor(rng, E, 1.0f, 0.1f));
    w.add_tensor("output.weight", GgmlType::F16, {E, n_vocab}, f16_tensor(rng, E * n_vocab, w_scale));
    for (int i = 0; i < s.n_layer; ++i) {
        std::string p = "blk." + std::to_string(i) + ".";
        w.add_tensor(p + "attn_norm.weight", GgmlType::F32, {E}, f32_tensor(rng, E, 1.0f, 0.1f));
        w.add_tensor(p + "attn_q.weight", GgmlType::F16, {E, D * s.n_head}, f16_tensor(rng, E * D * s.n_head, w_scale));
        w.add_tensor(p + "attn_k.weight", GgmlType::F16, {E, D * s.n_head_kv},
                     f16_tensor(rng, E * D * s.n_head_kv, w_scale));
        w.add_tensor(p + "attn_v.weight", GgmlType::F16, {E, D * s.n_head_kv},
                     f16_tensor(rng, E * D * s.n_head_kv, w_scale));
        w.add_tensor(p + "attn_output.weight", GgmlType::F16, {D * s.n_head, E},
                     f16_tensor(rng, D * s.n_head * E, w_scale));
        w.add_tensor(p + "attn_q_norm.weight", GgmlType::F32, {D}, f32_tensor(rng, D, 1.0f, 0.1f));
        w.add_tensor(p + "attn_k_norm.weight", GgmlType::F32, {D}, f32_tensor(rng, D, 1.0f, 0.1f));
        w.add_tensor(p + "ffn_norm.weight", GgmlType::F32, {E}, f32_tensor(rng, E, 1.0f, 0.1f));
        w.add_tensor(p + "ffn_gate_inp.weight", GgmlType::F32, {E, X}, f32_tensor(rng, E * X, 0.0f, w_scale));
        w.add_tensor(p + "ffn_gate_exps.weight", GgmlType::F16, {E, F, X}, f16_tensor(rng, E * F * X, w_scale));
        w.add_tensor(p + "ffn_up_exps.weight", GgmlType::F16, {E, F, X}, f16_tensor(rng, E * F * X, w_scale));
        w.add_tensor(p + "ffn_down_exps.weight", GgmlType::F16, {F, E, X},
                     f16_tensor(rng, F * E * X, 1.0f / std::sqrt(static_cast<float>(F))));
    }
    w.write(path);
}

}  // namespace moeserve
