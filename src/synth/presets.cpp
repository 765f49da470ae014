#include "synth/presets.h"

#include <fmt/format.h>

#include <stdexcept>

namespace moeserve {
namespace {

// Qwen3-Coder-30B-A3B-Instruct (spec architectures §8.1).
SynthSpec qwen3_coder_30b_a3b() {
    SynthSpec s;
    s.arch = "qwen3moe";
    s.name = "Qwen3-Coder-30B-A3B-Instruct (synthetic)";
    s.n_layer = 48;
    s.n_embd = 2048;
    s.n_head = 32;
    s.n_head_kv = 4;
    s.head_dim = 128;
    s.n_expert = 128;
    s.n_expert_used = 8;
    s.n_ff_exp = 768;
    s.n_vocab = 151936;
    s.n_ctx_train = 262144;
    s.rope_freq_base = 10000000.0f;
    return s;
}

// NVIDIA-Nemotron-3-Nano-30B-A3B (§8.3): 23 Mamba2, 23 MoE, 6 attention layers.
SynthSpec nemotron_3_nano_30b_a3b() {
    SynthSpec s;
    s.arch = "nemotron_h_moe";
    s.name = "NVIDIA-Nemotron-3-Nano-30B-A3B (synthetic)";
    s.layer_pattern = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME";
    s.n_layer = static_cast<int>(s.layer_pattern.size());
    s.n_embd = 2688;
    s.n_head = 32;
    s.n_head_kv = 2;
    s.head_dim = 128;
    s.ssm_n_head = 64;
    s.ssm_head_dim = 64;
    s.ssm_d_state = 128;
    s.ssm_n_group = 8;
    s.ssm_d_conv = 4;
    s.n_expert = 128;
    s.n_expert_used = 6;
    s.n_ff_exp = 1856;
    s.n_ff_shexp = 3712;
    s.expert_weights_scale = 2.5f;
    s.n_vocab = 131072;
    s.n_ctx_train = 1048576;
    return s;
}

// GLM-4.7-Flash (§8.2): MLA, one leading dense layer, 64 experts top-4 + 1 shared.
SynthSpec glm_4_7_flash() {
    SynthSpec s;
    s.arch = "deepseek2";
    s.name = "GLM-4.7-Flash (synthetic)";
    s.n_layer = 47;
    s.n_embd = 2048;
    s.n_head = 20;
    s.n_head_kv = 1;
    s.q_lora_rank = 768;
    s.kv_lora_rank = 512;
    s.qk_nope_head_dim = 192;
    s.qk_rope_head_dim = 64;
    s.v_head_dim = 256;
    s.n_layer_dense_lead = 1;
    s.n_ff = 10240;
    s.n_expert = 64;
    s.n_expert_used = 4;
    s.n_ff_exp = 1536;
    s.n_expert_shared = 1;
    s.expert_weights_scale = 1.8f;
    s.n_vocab = 154880;
    s.n_ctx_train = 202752;
    s.rope_freq_base = 1000000.0f;
    return s;
}

// The fixture models' shapes (fixtures/README.md).
SynthSpec tiny_qwen3moe() {
    SynthSpec s;
    s.name = "tiny-qwen3moe (synthetic)";
    s.n_layer = 2;
    s.n_embd = 256;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.head_dim = 128;
    s.n_expert = 8;
    s.n_expert_used = 2;
    s.n_ff_exp = 256;
    s.n_vocab = 685;
    s.n_ctx_train = 4096;
    return s;
}

SynthSpec tiny_nemotron_h_moe() {
    SynthSpec s = nemotron_3_nano_30b_a3b();
    s.name = "tiny-nemotron-h-moe (synthetic)";
    s.layer_pattern = "MEM*EM";
    s.n_layer = 6;
    s.n_embd = 256;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.head_dim = 64;
    s.ssm_n_head = 8;
    s.ssm_head_dim = 64;
    s.ssm_d_state = 64;
    s.ssm_n_group = 2;
    s.n_expert = 8;
    s.n_expert_used = 2;
    s.n_ff_exp = 256;
    s.n_ff_shexp = 256;
    s.n_vocab = 686;
    s.n_ctx_train = 4096;
    return s;
}

SynthSpec tiny_glm47flash() {
    SynthSpec s = glm_4_7_flash();
    s.name = "tiny-glm47flash (synthetic)";
    s.n_layer = 3;
    s.n_embd = 256;
    s.n_head = 4;
    s.q_lora_rank = 256;
    s.kv_lora_rank = 256;
    s.qk_nope_head_dim = 128;
    s.qk_rope_head_dim = 64;
    s.v_head_dim = 128;
    s.n_ff = 512;
    s.n_expert = 8;
    s.n_expert_used = 2;
    s.n_ff_exp = 256;
    s.n_vocab = 696;
    s.n_ctx_train = 4096;
    return s;
}

struct Entry {
    SynthPreset info;
    SynthSpec (*make)();
};

const std::vector<Entry>& entries() {
    static const std::vector<Entry> e = {
        {{"qwen3-coder-30b-a3b", "qwen3moe, 48 layers, 128 experts top-8, 30.53 B parameters"}, qwen3_coder_30b_a3b},
        {{"nemotron-3-nano-30b-a3b", "nemotron_h_moe, 52 layers (23 Mamba2, 6 attention, 23 MoE), 31.58 B parameters"},
         nemotron_3_nano_30b_a3b},
        {{"glm-4.7-flash", "deepseek2 (MLA), 47 layers, 64 experts top-4 + 1 shared, 29.94 B parameters"},
         glm_4_7_flash},
        {{"tiny-qwen3moe", "qwen3moe, 2 layers, hidden 256 (the fixture's shape)"}, tiny_qwen3moe},
        {{"tiny-nemotron-h-moe", "nemotron_h_moe, 6 layers MEM*EM, hidden 256 (the fixture's shape)"},
         tiny_nemotron_h_moe},
        {{"tiny-glm47flash", "deepseek2, 3 layers, hidden 256 (the fixture's shape)"}, tiny_glm47flash},
    };
    return e;
}

}  // namespace

const std::vector<SynthPreset>& synth_presets() {
    static const std::vector<SynthPreset> list = [] {
        std::vector<SynthPreset> l;
        for (const auto& e : entries()) l.push_back(e.info);
        return l;
    }();
    return list;
}

std::optional<SynthSpec> synth_preset(const std::string& name, FileMix mix) {
    for (const auto& e : entries())
        if (name == e.info.name) {
            SynthSpec s = e.make();
            s.mix = mix;
            return s;
        }
    return std::nullopt;
}

int synth_layer_count(const SynthSpec& spec) {
    return spec.arch == "nemotron_h_moe" ? static_cast<int>(spec.layer_pattern.size()) : spec.n_layer;
}

void cut_layers(SynthSpec& spec, int n_layer) {
    const int have = synth_layer_count(spec);
    if (n_layer < 1 || n_layer > have)
        throw std::invalid_argument(fmt::format("--layers must be between 1 and {}, got {}", have, n_layer));
    spec.n_layer = n_layer;
    if (spec.arch == "nemotron_h_moe") spec.layer_pattern.resize(n_layer);
    spec.n_layer_dense_lead = std::min(spec.n_layer_dense_lead, n_layer);
    spec.name += fmt::format(", first {} layers", n_layer);
}

}  // namespace moeserve
