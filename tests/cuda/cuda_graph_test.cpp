// Decode steps as CUDA graphs (issue: CUDA backend; docs/cuda.md): a pass
// replayed from a captured graph computes exactly what the same pass run op
// by op computes, step after step while the context grows past the padding
// of the attention's launch shape, with one and two sequences alternating;
// and the replays really happen. Skips without a device.
#include <gtest/gtest.h>

#include <filesystem>

#include "../engine_test_util.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/select_backend.h"

namespace moeserve {
namespace {

struct GraphCase {
    std::string stem, weights, kv;
};

EngineOptions graph_options(const GraphCase& c) {
    EngineOptions opt = test::fixture_engine_options(c.stem, c.weights, c.kv, /*n_seq=*/2);
    opt.n_ctx = 1024;
    opt.n_gpu_layers = kGpuLayersAll;
    return opt;
}

// Token i of a long synthetic stream (the goldens are shorter than the steps).
int32_t stream_token(int64_t i, int64_t n_vocab) {
    return static_cast<int32_t>((i * 7919 + 13) % n_vocab);
}

class CudaGraphs : public ::testing::TestWithParam<GraphCase> {};

TEST_P(CudaGraphs, replayed_decode_steps_equal_op_by_op_steps) {
    MOESERVE_REQUIRE_FIXTURES();
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU tests run on the GPU machine";
    const GraphCase& c = GetParam();
    if (!std::filesystem::exists(test::fixture("models/" + c.stem + "-" + c.weights + ".gguf")))
        GTEST_SKIP() << c.stem << "-" << c.weights << " was not carried to this machine";

    Engine graphs(graph_options(c));
    Engine plain(graph_options(c));
    set_cuda_graphs(graphs.backend(), true);
    set_cuda_graphs(plain.backend(), false);
    const int64_t V = graphs.n_vocab();

    // Two prompts of different lengths (prefill: op by op in both).
    const std::vector<int32_t> a = test::golden_tokens(c.stem, 40);
    const std::vector<int32_t> b = test::golden_tokens(c.stem, 25, 50);
    for (Engine* e : {&graphs, &plain}) {
        e->eval(0, a, false);
        e->eval(1, b, false);
    }
    int32_t pos[2] = {static_cast<int32_t>(a.size()), static_cast<int32_t>(b.size())};

    // 300 steps: both sequences (a batch of 2), every 10th step only the
    // first (a batch of 1). Sequence 0 crosses 256 cells, where the padded
    // cell count and so the attention's launch shape change.
    constexpr int kSteps = 300;
    for (int step = 0; step < kSteps; ++step) {
        Batch batch;
        const int n_seq = step % 10 == 9 ? 1 : 2;
        for (int s = 0; s < n_seq; ++s) batch.add(stream_token(step * 2 + s, V), pos[s]++, s, true);
        const std::vector<float> got = graphs.model().forward(batch, graphs.cache());
        const std::vector<float> want = plain.model().forward(batch, plain.cache());
        ASSERT_EQ(got.size(), want.size());
        ASSERT_TRUE(got == want) << "step " << step << ": the replayed pass differs from the op-by-op pass";
    }

    const cuda::GraphStats g = cuda_graph_stats(graphs.backend());
    const cuda::GraphStats p = cuda_graph_stats(plain.backend());
    RecordProperty("captured", std::to_string(g.captured));
    RecordProperty("replayed", std::to_string(g.replayed));
    // Two batch sizes, recaptured when the padded counts move (every 128-256
    // steps here) or after a pass that had to allocate: a handful of captures.
    EXPECT_GE(g.captured, 2);
    EXPECT_LE(g.captured, 16);
    EXPECT_GE(g.replayed, kSteps - 30) << "captured " << g.captured << ", op by op " << g.eager << ", not capturable "
                                       << g.not_capturable;
    EXPECT_EQ(p.captured + p.replayed, 0);
}

INSTANTIATE_TEST_SUITE_P(EachArchitecture, CudaGraphs,
                         ::testing::Values(GraphCase{"qwen3moe-tiny-s1", "q4_k_m", "q4_0"},
                                           GraphCase{"qwen3moe-tiny-s1", "f16", "f16"},
                                           GraphCase{"nemotron-h-moe-tiny-s1", "q4_k_m", "q8_0"},
                                           GraphCase{"glm47flash-tiny-s1", "q4_k_m", "q4_0"}),
                         [](const auto& info) {
                             std::string s = info.param.stem.substr(0, info.param.stem.find('-')) + "_" +
                                             info.param.weights + "_kv_" + info.param.kv;
                             for (char& ch : s)
                                 if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                             return s;
                         });

}  // namespace
}  // namespace moeserve
