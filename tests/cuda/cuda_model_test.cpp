// The CUDA backend on whole models (issue: CUDA backend): every llama.cpp
// golden in the fixtures with -ngl all, under the CPU's thresholds (mean KL
// <= 3e-3, >= 98% top-1 at decisive positions); GPU logits against the CPU
// backend's for the same model at least as close as the goldens; batched,
// chunked and interleaved evaluation equal to single runs. Skips without a
// device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "../engine_test_util.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/expert_placement.h"
#include "backend/select_backend.h"

namespace moeserve {
namespace {

#define MOESERVE_REQUIRE_GPU()                                                  \
    do {                                                                        \
        if (cuda::device_count() == 0)                                          \
            GTEST_SKIP() << "no CUDA device: GPU tests run on the GPU machine " \
                            "(scripts/gpu-check.sh)";                           \
    } while (0)

struct Case {
    std::string stem, weights, kv;
};

// scripts/gpu-check.sh carries the fixtures in parts (64 MiB a call).
#define MOESERVE_REQUIRE_CARRIED(file)                                                \
    do {                                                                              \
        if (!std::filesystem::exists(test::fixture(std::string("models/") + (file)))) \
            GTEST_SKIP() << (file) << " was not carried to this machine";             \
    } while (0)

std::string case_name(const Case& c) {
    std::string s = c.stem.substr(0, c.stem.find('-')) + "_" + c.weights + "_kv_" + c.kv;
    for (char& ch : s)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return s;
}

EngineOptions gpu_options(const Case& c, int n_seq = 1, int64_t n_ubatch = 512) {
    EngineOptions opt = test::fixture_engine_options(c.stem, c.weights, c.kv, n_seq, n_ubatch);
    opt.n_ctx = 1024;
    opt.n_gpu_layers = kGpuLayersAll;
    return opt;
}

class CudaGolden : public ::testing::TestWithParam<Case> {};

TEST_P(CudaGolden, logits_match_llama_cpp_and_the_cpu_backend) {
    MOESERVE_REQUIRE_FIXTURES();
    MOESERVE_REQUIRE_GPU();
    const Case& c = GetParam();
    MOESERVE_REQUIRE_CARRIED(c.stem + "-" + c.weights + ".gguf");
    test::Golden g = test::load_golden(c.stem + "-" + c.weights + ".kv-" + c.kv);
    Engine gpu(gpu_options(c));
    ASSERT_NE(gpu.backend().name().find("cuda"), std::string::npos) << gpu.backend().name();
    std::vector<float> logits = gpu.eval(0, g.tokens, /*all_logits=*/true);
    const int64_t n_pos = static_cast<int64_t>(g.tokens.size());
    auto ref = test::compare_logits(g.logits.data(), logits.data(), n_pos, g.n_vocab);
    EXPECT_LE(ref.mean_kl, 3e-3) << "max KL " << ref.max_kl;
    EXPECT_GE(ref.top1_decisive, 0.98) << ref.decisive << " decisive positions";

    // The CPU backend on the same file: GPU and CPU must agree at least as
    // closely as the CPU agrees with llama.cpp.
    EngineOptions cpu_opt = gpu_options(c);
    cpu_opt.n_gpu_layers = 0;
    Engine cpu(cpu_opt);
    std::vector<float> cpu_logits = cpu.eval(0, g.tokens, /*all_logits=*/true);
    auto cpu_ref = test::compare_logits(g.logits.data(), cpu_logits.data(), n_pos, g.n_vocab);
    auto gpu_cpu = test::compare_logits(cpu_logits.data(), logits.data(), n_pos, g.n_vocab);
    EXPECT_LE(gpu_cpu.mean_kl, std::max(3e-3, cpu_ref.mean_kl)) << "GPU vs CPU max KL " << gpu_cpu.max_kl;
    // %.3g: the small KLs matter (std::to_string would print 0.000000).
    auto g3 = [](double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.3g", v);
        return std::string(b);
    };
    RecordProperty("mean_kl", g3(ref.mean_kl));
    RecordProperty("gpu_vs_cpu_mean_kl", g3(gpu_cpu.mean_kl));
}

std::vector<Case> all_goldens() {
    std::vector<Case> cases;
    for (const char* stem : {"qwen3moe-tiny-s1", "nemotron-h-moe-tiny-s1", "glm47flash-tiny-s1"})
        for (const char* w : {"f16", "q8_0", "q4_k_m", "iq4_xs"})
            for (const char* kv : {"f16", "q8_0", "q4_0"}) cases.push_back({stem, w, kv});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, CudaGolden, ::testing::ValuesIn(all_goldens()),
                         [](const auto& info) { return case_name(info.param); });

// The f32 attention kernel (MOESERVE_CUDA_ATTENTION=f32; the tensor-core
// form is the default that CudaGolden runs) under the same golden
// thresholds, over the prompt in one batch and token by token.
class CudaGoldenF32Attention : public ::testing::TestWithParam<Case> {};

TEST_P(CudaGoldenF32Attention, f32_attention_matches_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    MOESERVE_REQUIRE_GPU();
    const Case& c = GetParam();
    MOESERVE_REQUIRE_CARRIED(c.stem + "-" + c.weights + ".gguf");
    struct F32On {
        F32On() { setenv("MOESERVE_CUDA_ATTENTION", "f32", 1); }
        ~F32On() { unsetenv("MOESERVE_CUDA_ATTENTION"); }
    } f32_on;
    test::Golden g = test::load_golden(c.stem + "-" + c.weights + ".kv-" + c.kv);
    const int64_t n_pos = static_cast<int64_t>(g.tokens.size());
    const int64_t launches_before = cuda::mma_attention_launches();
    for (int64_t ubatch : {int64_t{512}, int64_t{1}}) {
        SCOPED_TRACE("ubatch " + std::to_string(ubatch));
        Engine gpu(gpu_options(c, 1, ubatch));
        const std::vector<float> logits = gpu.eval(0, g.tokens, /*all_logits=*/true);
        auto ref = test::compare_logits(g.logits.data(), logits.data(), n_pos, g.n_vocab);
        EXPECT_LE(ref.mean_kl, 3e-3) << "max KL " << ref.max_kl;
        EXPECT_GE(ref.top1_decisive, 0.98) << ref.decisive << " decisive positions";
    }
    EXPECT_EQ(cuda::mma_attention_launches(), launches_before) << "the tensor-core kernel ran instead";
}

INSTANTIATE_TEST_SUITE_P(EachArchitecture, CudaGoldenF32Attention,
                         ::testing::Values(Case{"qwen3moe-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"qwen3moe-tiny-s1", "f16", "f16"},
                                           Case{"nemotron-h-moe-tiny-s1", "q4_k_m", "f16"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "f16"}),
                         [](const auto& info) { return case_name(info.param); });

class CudaBatching : public ::testing::TestWithParam<Case> {};

// A prompt evaluated in chunks of 1, 7 and 64 tokens gives the logits of one
// pass; two sequences interleaved in one batch give each one's logits alone.
TEST_P(CudaBatching, chunked_and_interleaved_equal_single_runs) {
    MOESERVE_REQUIRE_FIXTURES();
    MOESERVE_REQUIRE_GPU();
    const Case& c = GetParam();
    MOESERVE_REQUIRE_CARRIED(c.stem + "-" + c.weights + ".gguf");
    const std::vector<int32_t> a = test::golden_tokens(c.stem, 96);
    const std::vector<int32_t> b = test::golden_tokens(c.stem, 80, 40);
    Engine whole(gpu_options(c, 2));
    const std::vector<float> ref_a = whole.eval(0, a, true);
    const std::vector<float> ref_b = whole.eval(1, b, true);
    for (int64_t chunk : {1, 7, 64}) {
        Engine chunked(gpu_options(c, 1, chunk));
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        test::expect_logits_close(ref_a, chunked.eval(0, a, true), whole.n_vocab(), 1e-4);
    }
    Engine mixed(gpu_options(c, 2));
    auto [got_a, got_b] = test::eval_interleaved(mixed, a, b);
    test::expect_logits_close(ref_a, got_a, whole.n_vocab(), 1e-4);
    test::expect_logits_close(ref_b, got_b, whole.n_vocab(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(EachArchitecture, CudaBatching,
                         ::testing::Values(Case{"qwen3moe-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"nemotron-h-moe-tiny-s1", "q4_k_m", "f16"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "f16"}),
                         [](const auto& info) { return case_name(info.param); });

// The planner's numbers are what the GPU allocates: weights, KV cache and
// recurrent states at start (cudaMemGetInfo before and after), and the
// workspace the first batches add stays within the planned workspace.
TEST(CudaMemory, the_engine_allocates_what_the_planner_planned) {
    MOESERVE_REQUIRE_FIXTURES();
    MOESERVE_REQUIRE_GPU();
    size_t free_before = 0, free_after = 0, total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
    MOESERVE_REQUIRE_CARRIED("nemotron-h-moe-tiny-s1-q4_k_m.gguf");
    EngineOptions opt = gpu_options({"nemotron-h-moe-tiny-s1", "q4_k_m", "q4_0"}, 2);
    opt.n_ctx = 65536;  // a cache large enough to dominate the context's fixed costs
    Engine e(opt);
    ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
    const MemoryPlan& plan = e.plan();
    const double planned = static_cast<double>(plan.weights_bytes + plan.kv_bytes + plan.recurrent_bytes);
    const double used = static_cast<double>(free_before - free_after);
    // cudaMalloc rounds each allocation up to 2 MiB pages; the CUDA context
    // and cuBLAS take their own fixed share (below 600 MiB on an H100).
    EXPECT_GE(used, planned) << "plan " << planned / (1 << 20) << " MiB, used " << used / (1 << 20) << " MiB";
    EXPECT_LE(used, planned + 600.0 * (1 << 20)) << "plan " << planned / (1 << 20) << " MiB";
    RecordProperty("planned_mib", std::to_string(planned / (1 << 20)));
    RecordProperty("allocated_mib", std::to_string(used / (1 << 20)));
}

// The golden's prompt in one pass, then its remaining tokens one at a time
// (decoding), all positions' logits; checked against the golden under the
// CPU's thresholds and against the CPU backend's logits (cpu_logits).
void expect_golden_prompt_then_decode(Engine& e, const test::Golden& g, const std::vector<float>& cpu_logits) {
    const int64_t n_prompt = g.n_prompt;
    std::vector<float> logits =
        e.eval(0, std::vector<int32_t>(g.tokens.begin(), g.tokens.begin() + n_prompt), /*all_logits=*/true);
    for (size_t i = n_prompt; i < g.tokens.size(); ++i) {
        const std::vector<float> l = e.eval(0, std::vector<int32_t>{g.tokens[i]}, true);
        logits.insert(logits.end(), l.begin(), l.end());
    }
    const int64_t n_pos = static_cast<int64_t>(g.tokens.size());
    auto ref = test::compare_logits(g.logits.data(), logits.data(), n_pos, g.n_vocab);
    EXPECT_LE(ref.mean_kl, 3e-3) << "max KL " << ref.max_kl;
    EXPECT_GE(ref.top1_decisive, 0.98) << ref.decisive << " decisive positions";
    auto vs_cpu = test::compare_logits(cpu_logits.data(), logits.data(), n_pos, g.n_vocab);
    EXPECT_LE(vs_cpu.mean_kl, 3e-3) << "against the CPU backend, max KL " << vs_cpu.max_kl;
}

class CudaLayerSplit : public ::testing::TestWithParam<Case> {};

// -ngl N up to the layer count: the first layers on the CPU, the head and the
// last N-1 layers on the GPU, sharing activations and cache in managed memory. The prompt and
// then token-by-token decoding give the llama.cpp golden's logits under the
// usual thresholds, and agree with the all-CPU run as closely as -ngl all does.
TEST_P(CudaLayerSplit, first_layers_on_the_cpu_match_the_golden) {
    MOESERVE_REQUIRE_FIXTURES();
    MOESERVE_REQUIRE_GPU();
    const Case& c = GetParam();
    MOESERVE_REQUIRE_CARRIED(c.stem + "-" + c.weights + ".gguf");
    test::Golden g = test::load_golden(c.stem + "-" + c.weights + ".kv-" + c.kv);
    EngineOptions opt = gpu_options(c);
    Engine probe(test::fixture_engine_options(c.stem, c.weights, c.kv, 1));
    const int n_layer = probe.model().params().n_layer;
    // llama.cpp's count, the head being one more layer: the GPU runs the head and
    // the last N-1 blocks (qwen3moe 1 of 2, nemotron 3 of 6, glm 2 of 3).
    opt.n_gpu_layers = n_layer + 1 - n_layer / 2;
    Engine split(opt);
    ASSERT_NE(split.backend().name().find("cuda"), std::string::npos) << split.backend().name();
    ASSERT_NE(split.backend().name().find("cpu"), std::string::npos) << split.backend().name();
    expect_golden_prompt_then_decode(split, g, probe.eval(0, g.tokens, /*all_logits=*/true));
}

INSTANTIATE_TEST_SUITE_P(EachArchitecture, CudaLayerSplit,
                         ::testing::Values(Case{"qwen3moe-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"nemotron-h-moe-tiny-s1", "q4_k_m", "f16"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "f16"}),
                         [](const auto& info) { return case_name(info.param); });

class CudaExpertOffload : public ::testing::TestWithParam<Case> {};

// --cpu-moe with -ngl all: attention, norms, shared experts and the head on
// the GPU, every routed-expert FFN on the CPU (on copies of its inputs);
// then --n-cpu-moe 2 with a layer split. The prompt and token-by-token
// decoding give the llama.cpp golden's logits under the usual thresholds and
// agree with the all-CPU run as closely; the GPU holds none of the host
// layers' experts (its weight allocation shrinks by their bytes).
TEST_P(CudaExpertOffload, routed_experts_on_the_cpu_match_the_golden) {
    MOESERVE_REQUIRE_FIXTURES();
    MOESERVE_REQUIRE_GPU();
    const Case& c = GetParam();
    MOESERVE_REQUIRE_CARRIED(c.stem + "-" + c.weights + ".gguf");
    test::Golden g = test::load_golden(c.stem + "-" + c.weights + ".kv-" + c.kv);
    Engine probe(test::fixture_engine_options(c.stem, c.weights, c.kv, 1));
    const int n_layer = probe.model().params().n_layer;
    const std::vector<float> cpu_logits = probe.eval(0, g.tokens, /*all_logits=*/true);
    for (const bool all : {true, false}) {
        SCOPED_TRACE(all ? "-ngl all --cpu-moe" : "-ngl n_layer --n-cpu-moe 2");
        EngineOptions opt = gpu_options(c);
        opt.experts.cpu_moe = all;
        opt.experts.n_cpu_moe = all ? 0 : 2;
        if (!all) opt.n_gpu_layers = n_layer;  // the head and blocks 1.. on the GPU
        size_t free_before = 0, free_after = 0, total = 0;
        ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
        Engine e(opt);
        ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
        const std::string name = e.backend().name();
        ASSERT_NE(name.find("with the routed experts of layers"), std::string::npos) << name;
        // The plan counts the card's part: the host experts (and routers) are
        // off its weights, and the card holds no more than the plan.
        double host_expert_bytes = 0;
        for (const auto& t : e.model().file().tensors()) {
            const int l = routed_expert_layer(t.name);
            if (l >= (all ? 0 : 1) && (all || l < 2)) host_expert_bytes += static_cast<double>(t.nbytes);
        }
        EXPECT_GT(host_expert_bytes, 0.0);
        EXPECT_GE(static_cast<double>(e.plan().host_weights_bytes), host_expert_bytes);
        const double planned =
            static_cast<double>(e.plan().weights_bytes + e.plan().kv_bytes + e.plan().recurrent_bytes);
        EXPECT_LE(static_cast<double>(free_before - free_after), planned + 600.0 * (1 << 20))
            << "plan " << planned / (1 << 20) << " MiB";
        expect_golden_prompt_then_decode(e, g, cpu_logits);
    }
}

INSTANTIATE_TEST_SUITE_P(EachArchitecture, CudaExpertOffload,
                         ::testing::Values(Case{"qwen3moe-tiny-s1", "q4_k_m", "q4_0"},
                                           Case{"nemotron-h-moe-tiny-s1", "q4_k_m", "f16"},
                                           Case{"glm47flash-tiny-s1", "q4_k_m", "q4_0"}),
                         [](const auto& info) { return case_name(info.param); });

// With no device, -ngl falls back to the CPU with a note naming the flag.
TEST(CudaBackendSelection, without_a_device_the_cpu_runs_with_a_note) {
    MOESERVE_REQUIRE_FIXTURES();
    if (cuda::device_count() > 0) GTEST_SKIP() << "a device is present";
    MOESERVE_REQUIRE_CARRIED("qwen3moe-tiny-s1-q8_0.gguf");
    Engine e(gpu_options({"qwen3moe-tiny-s1", "q8_0", "f16"}));
    EXPECT_EQ(e.backend().name(), "cpu");
    EXPECT_NE(e.backend_note().find("no CUDA device"), std::string::npos) << e.backend_note();
}

}  // namespace
}  // namespace moeserve
