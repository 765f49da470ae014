// synth's type mixes follow llama-quantize: for every weight tensor of the
// Q4_K_M and IQ4_XS fixture files (made by llama-quantize), the rules pick
// the type the file has.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "synth/quant_mix.h"

namespace moeserve {
namespace {

bool never_quantized(const GgufTensorInfo& t) {
    const std::string& n = t.name;
    return t.n_dims < 2 || n.find("_norm.weight") != std::string::npos || n.find("ffn_gate_inp") != std::string::npos ||
           n.find("ssm_conv1d") != std::string::npos || n.size() < 7 || n.substr(n.size() - 6) != "weight";
}

void check_file(const std::string& stem, FileMix mix) {
    GgufFile f = GgufFile::open(test::fixture("models/" + stem).string());
    const std::string a = f.architecture() + ".";
    const int n_layer = static_cast<int>(f.get_u32(a + "block_count"));
    auto heads = f.get_u32_per_layer(a + "attention.head_count", n_layer);
    auto heads_kv = f.has(a + "attention.head_count_kv") ? f.get_u32_per_layer(a + "attention.head_count_kv", n_layer)
                                                         : heads;
    TensorContext ctx;
    ctx.n_layer = n_layer;
    ctx.n_expert = static_cast<int>(f.find_u32(a + "expert_count").value_or(0));
    ctx.n_gqa = heads_kv[0] ? static_cast<int>(heads[0] / heads_kv[0]) : 0;
    ctx.tied_output = f.find_tensor("output.weight") == nullptr;
    std::vector<const GgufTensorInfo*> attn_v;
    for (const auto& t : f.tensors())
        if (t.name.find("attn_v.weight") != std::string::npos || t.name.find("attn_kv_b.weight") != std::string::npos)
            attn_v.push_back(&t);
    std::sort(attn_v.begin(), attn_v.end(), [](auto* x, auto* y) { return std::stoi(x->name.substr(4)) < std::stoi(y->name.substr(4)); });
    ctx.attn_v_count = static_cast<int>(attn_v.size());
    int checked = 0;
    for (const auto& t : f.tensors()) {
        if (never_quantized(t)) continue;
        ctx.name = t.name;
        ctx.ne0 = t.ne[0];
        ctx.layer = t.name.rfind("blk.", 0) == 0 ? std::stoi(t.name.substr(4)) : -1;
        ctx.attn_v_index = static_cast<int>(std::find(attn_v.begin(), attn_v.end(), &t) - attn_v.begin());
        EXPECT_EQ(ggml_type_name(mix_tensor_type(mix, ctx)), ggml_type_name(t.type)) << stem << ": " << t.name;
        ++checked;
    }
    EXPECT_GT(checked, 10) << stem;
}

TEST(QuantMix, types_match_llama_quantize_for_the_qwen3moe_fixtures) {
    MOESERVE_REQUIRE_FIXTURES();
    check_file("qwen3moe-tiny-s1-q4_k_m.gguf", FileMix::Q4_K_M);
    check_file("qwen3moe-tiny-s1-iq4_xs.gguf", FileMix::IQ4_XS);
    check_file("qwen3moe-tiny-s1-q8_0.gguf", FileMix::Q8_0);
}

TEST(QuantMix, types_match_llama_quantize_for_the_glm_and_nemotron_fixtures) {
    MOESERVE_REQUIRE_FIXTURES();
    check_file("glm47flash-tiny-s1-q4_k_m.gguf", FileMix::Q4_K_M);
    check_file("glm47flash-tiny-s1-iq4_xs.gguf", FileMix::IQ4_XS);
    check_file("nemotron-h-moe-tiny-s1-q4_k_m.gguf", FileMix::Q4_K_M);
    check_file("nemotron-h-moe-tiny-s1-iq4_xs.gguf", FileMix::IQ4_XS);
}

}  // namespace
}  // namespace moeserve
