// -ngl and the backend choice: values llama.cpp accepts, and the note when
// no GPU backend can run (a layer split included).
#include <gtest/gtest.h>

#include "backend/select_backend.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"

namespace moeserve {
namespace {

TEST(GpuLayersFlag, accepts_counts_auto_and_all) {
    EXPECT_EQ(parse_gpu_layers("0"), 0);
    EXPECT_EQ(parse_gpu_layers("99"), 99);
    EXPECT_EQ(parse_gpu_layers("auto"), kGpuLayersAuto);
    EXPECT_EQ(parse_gpu_layers("-1"), kGpuLayersAuto);
    EXPECT_EQ(parse_gpu_layers("all"), kGpuLayersAll);
    for (const char* bad : {"", "-2", "many", "9x", "1.5"}) {
        try {
            parse_gpu_layers(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
        }
    }
}

TEST(BackendSelection, zero_gpu_layers_is_the_cpu_without_a_note) {
    std::string note = "stale";
    auto be = select_backend({2, 0, 48, {}}, &note);
    EXPECT_EQ(be->name(), "cpu");
    EXPECT_EQ(be->n_threads(), 2);
    EXPECT_TRUE(note.empty());
}

TEST(BackendSelection, without_cuda_gpu_layers_run_on_the_cpu_with_a_note) {
    if (cuda_backend_built()) GTEST_SKIP() << "CUDA build: tests/cuda covers the device cases";
    std::string note;
    auto be = select_backend({1, 99, 48, {}}, &note);
    EXPECT_EQ(be->name(), "cpu");
    EXPECT_NE(note.find("-ngl 99 is ignored"), std::string::npos) << note;
    // A layer split, too: there is no device to put the last layers on.
    be = select_backend({1, 10, 48, {}}, &note);
    EXPECT_EQ(be->name(), "cpu");
    EXPECT_NE(note.find("-ngl 10 is ignored"), std::string::npos) << note;
    // auto is silent: it means "the GPU if there is one".
    select_backend({1, kGpuLayersAuto, 48, {}}, &note);
    EXPECT_TRUE(note.empty()) << note;
}

// -ngl N as llama.cpp counts it (the output head is layer n_layer and the
// first to go to the GPU), and the routed experts kept in host memory.
TEST(BackendSelection, split_plans_follow_llama_cpp_counting) {
    BackendRequest r{1, 10, 48, {}};
    std::optional<SplitPlan> p = split_plan_for(r);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->first_device_layer, 39);  // the head and blocks 39-47: ten layers
    EXPECT_TRUE(p->head_on_device);
    r.n_gpu_layers = 48;
    EXPECT_EQ(split_plan_for(r)->first_device_layer, 1);  // block 0 stays on the CPU
    r.n_gpu_layers = 1;
    EXPECT_EQ(split_plan_for(r)->first_device_layer, 48);  // the head alone
    for (int whole : {49, 99, kGpuLayersAll, kGpuLayersAuto, 0}) {
        r.n_gpu_layers = whole;
        EXPECT_FALSE(split_plan_for(r)) << whole;
    }
    r.host_experts.assign(48, false);
    r.host_experts[3] = true;
    for (int whole : {99, kGpuLayersAll, kGpuLayersAuto}) {
        r.n_gpu_layers = whole;
        p = split_plan_for(r);
        ASSERT_TRUE(p) << whole;
        EXPECT_EQ(p->first_device_layer, 0);
        EXPECT_EQ(p->host_experts, r.host_experts);
    }
    r.n_gpu_layers = 0;  // the CPU: nothing to split
    EXPECT_FALSE(split_plan_for(r));
}

// What a GPU run leaves in host memory, by the file's own tensor sizes.
TEST(BackendSelection, host_weight_bytes_are_the_tensors_the_device_does_not_hold) {
    if (!test::have_fixtures()) GTEST_SKIP() << "no fixtures";
    const GgufFile f = GgufFile::open(test::fixture("models/glm47flash-tiny-s1-q8_0.gguf").string());
    uint64_t block0 = 0, embd = 0, experts_1_2 = 0;
    for (const auto& t : f.tensors()) {
        if (t.name.rfind("blk.0.", 0) == 0) block0 += t.nbytes;
        if (t.name == "token_embd.weight") embd = t.nbytes;
        for (const char* e : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_inp", "exp_probs_b"})
            if (t.name.find(e) != std::string::npos) experts_1_2 += t.nbytes;  // layers 1 and 2 (0 is dense)
    }
    BackendRequest r{1, 99, 3, {}};
    EXPECT_EQ(host_weight_bytes(f, r), 0u);  // the whole model on the card
    r.n_gpu_layers = 3;                      // the head and blocks 1-2
    EXPECT_EQ(host_weight_bytes(f, r), block0 + embd);
    r.n_gpu_layers = 99;
    r.host_experts = {false, true, true};
    EXPECT_EQ(host_weight_bytes(f, r), experts_1_2);  // the embedding lookup runs on the card then
    r.n_gpu_layers = 0;
    EXPECT_EQ(host_weight_bytes(f, r), 0u);
}

}  // namespace
}  // namespace moeserve
