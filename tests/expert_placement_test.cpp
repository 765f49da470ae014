// --cpu-moe, --n-cpu-moe and -ot resolved over a model's tensor names: which
// layers' routed experts stay in host memory, llama.cpp's first-match rule
// for -ot, a layer's experts moved together, and the patterns a GPU run
// must refuse (anything but routed experts and their router in host memory).
#include <gtest/gtest.h>

#include "backend/expert_placement.h"

namespace moeserve {
namespace {

// GLM-4.7-Flash's tensor names for three layers: layer 0 dense, 1 and 2 MoE.
std::vector<std::string> glm_names() {
    std::vector<std::string> names = {"token_embd.weight", "output_norm.weight", "output.weight"};
    for (const char* t : {"attn_norm.weight", "attn_q_a.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight",
                          "attn_v_b.weight", "attn_output.weight", "ffn_norm.weight"})
        for (int l = 0; l < 3; ++l) names.push_back("blk." + std::to_string(l) + "." + t);
    for (const char* t : {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"})
        names.push_back(std::string("blk.0.") + t);
    for (int l = 1; l < 3; ++l)
        for (const char* t :
             {"ffn_gate_inp.weight", "exp_probs_b.bias", "ffn_gate_exps.weight", "ffn_up_exps.weight",
              "ffn_down_exps.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight"})
            names.push_back("blk." + std::to_string(l) + "." + t);
    return names;
}

HostPlacement place(const ExpertPlacementFlags& f) {
    const std::vector<std::string> names = glm_names();
    return resolve_expert_placement(names, 3, f);
}

ExpertPlacementFlags ot(std::vector<std::string> rules) {
    ExpertPlacementFlags f;
    f.override_tensor = std::move(rules);
    return f;
}

TEST(ExpertPlacement, knows_routed_expert_tensors_by_name) {
    EXPECT_EQ(routed_expert_layer("blk.12.ffn_down_exps.weight"), 12);
    EXPECT_EQ(routed_expert_layer("blk.3.ffn_gate_up_exps.weight"), 3);
    EXPECT_EQ(routed_expert_layer("blk.3.ffn_up_chexps.weight"), 3);
    EXPECT_EQ(routed_expert_layer("blk.3.ffn_up_shexp.weight"), -1);
    EXPECT_EQ(routed_expert_layer("blk.3.ffn_gate_inp.weight"), -1);
    EXPECT_EQ(routed_expert_layer("blk.3.ffn_up.weight"), -1);
    EXPECT_EQ(routed_expert_layer("token_embd.weight"), -1);
    EXPECT_EQ(expert_ffn_layer("blk.7.ffn_gate_inp.weight"), 7);
    EXPECT_EQ(expert_ffn_layer("blk.7.exp_probs_b.bias"), 7);
    EXPECT_EQ(expert_ffn_layer("blk.7.ffn_down_exps.weight"), 7);
    EXPECT_EQ(expert_ffn_layer("blk.7.ffn_down_shexp.weight"), -1);
    EXPECT_EQ(tensor_layer("blk.10.attn_q.weight"), 10);
    EXPECT_EQ(tensor_layer("blk.x.attn_q.weight"), -1);
    EXPECT_EQ(tensor_layer("output.weight"), -1);
}

TEST(ExpertPlacement, cpu_moe_and_n_cpu_moe_name_layers_with_experts) {
    ExpertPlacementFlags f;
    EXPECT_FALSE(f.any());
    f.cpu_moe = true;
    HostPlacement p = place(f);
    EXPECT_EQ(p.host_experts, (std::vector<bool>{false, true, true}));  // layer 0 is dense: nothing to keep
    EXPECT_TRUE(p.other_host_tensors.empty());
    EXPECT_TRUE(p.notes.empty());
    EXPECT_EQ(describe_layers(p.host_experts), "1-2");

    f = {};
    f.n_cpu_moe = 2;
    p = place(f);
    EXPECT_EQ(p.host_experts, (std::vector<bool>{false, true, false}));
    EXPECT_TRUE(p.any_host_experts());
    f.n_cpu_moe = 1;
    EXPECT_FALSE(place(f).any_host_experts());
    f.n_cpu_moe = 100;  // more than the model has: all of them, as llama.cpp
    EXPECT_EQ(place(f).host_experts, (std::vector<bool>{false, true, true}));
}

TEST(ExpertPlacement, override_rules_first_match_wins) {
    EXPECT_EQ(place(ot({"exps=CPU"})).host_experts, (std::vector<bool>{false, true, true}));
    EXPECT_EQ(place(ot({R"(blk\.2\.ffn_.*_exps\.=CPU)"})).host_experts, (std::vector<bool>{false, false, true}));
    // The first rule keeps layer 2 whole on the GPU; the second takes the other layers' experts.
    EXPECT_EQ(place(ot({R"(blk\.2\.=CUDA0)", "exps=CPU"})).host_experts, (std::vector<bool>{false, true, false}));
    // -ot rules come before --cpu-moe, so a CUDA0 rule can keep a layer's experts on the GPU.
    ExpertPlacementFlags f = ot({R"(blk\.1\.ffn_.*_exps=CUDA0)"});
    f.cpu_moe = true;
    EXPECT_EQ(place(f).host_experts, (std::vector<bool>{false, false, true}));
    EXPECT_TRUE(place(ot({"exps=CUDA0"})).host_experts == (std::vector<bool>{false, false, false}));
    EXPECT_EQ(place(ot({"exps=CUDA_Host"})).host_experts, (std::vector<bool>{false, true, true}));
}

TEST(ExpertPlacement, part_of_a_layers_experts_moves_the_whole_layer_with_a_note) {
    // A common recipe keeps only the up and down experts on the CPU.
    const HostPlacement p = place(ot({R"(\.ffn_(up|down)_exps=CPU)"}));
    EXPECT_EQ(p.host_experts, (std::vector<bool>{false, true, true}));
    ASSERT_EQ(p.notes.size(), 2u);
    EXPECT_NE(p.notes[0].find("layer 1: a rule matched 2 of its 3 expert tensors"), std::string::npos) << p.notes[0];
    EXPECT_TRUE(p.other_host_tensors.empty());
}

TEST(ExpertPlacement, other_tensors_in_host_memory_are_reported) {
    // The router goes with its layer's experts ...
    HostPlacement p = place(ot({R"(blk\.1\.ffn_(gate_inp|.*_exps)=CPU)"}));
    EXPECT_EQ(p.host_experts, (std::vector<bool>{false, true, false}));
    EXPECT_TRUE(p.other_host_tensors.empty());
    // ... but not alone, and nothing else may follow.
    p = place(ot({"ffn_gate_inp=CPU"}));
    EXPECT_FALSE(p.any_host_experts());
    EXPECT_EQ(p.other_host_tensors,
              (std::vector<std::string>{"blk.1.ffn_gate_inp.weight", "blk.2.ffn_gate_inp.weight"}));
    p = place(ot({R"(\.ffn_.*=CPU)"}));  // shared experts, norms and dense FFNs too
    EXPECT_EQ(p.host_experts, (std::vector<bool>{false, true, true}));
    EXPECT_FALSE(p.other_host_tensors.empty());
    EXPECT_EQ(p.other_host_tensors.front(), "blk.0.ffn_norm.weight");
    p = place(ot({"attn=CPU"}));
    EXPECT_EQ(p.other_host_tensors.size(), 18u);
    // The token embedding is read on the host anyway.
    EXPECT_TRUE(place(ot({"token_embd=CPU"})).other_host_tensors.empty());
}

TEST(ExpertPlacement, bad_rules_name_the_problem) {
    const auto message = [](std::vector<std::string> rules) {
        try {
            place(ot(std::move(rules)));
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(message({"exps=GPU"}).find("unknown buffer type 'GPU'"), std::string::npos) << message({"exps=GPU"});
    EXPECT_NE(message({"exps=GPU"}).find("CPU"), std::string::npos);
    EXPECT_NE(message({"ffn_(up=CPU"}).find("the regex 'ffn_(up' does not compile"), std::string::npos)
        << message({"ffn_(up=CPU"});
    EXPECT_NE(message({"exps"}).find("expected REGEX=BUFTYPE"), std::string::npos);
    EXPECT_NE(message({"=CPU"}).find("expected REGEX=BUFTYPE"), std::string::npos);
}

}  // namespace
}  // namespace moeserve
