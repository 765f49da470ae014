// qwen3moe against llama.cpp: every golden (weights f16, q8_0, q4_k_m,
// iq4_xs × KV cache f16, q8_0, q4_0) evaluated as one prompt must give
// mean KL <= 3e-3 and >= 98% top-1 agreement at decisive positions.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "golden.h"

namespace moeserve {
namespace {

struct Case {
    std::string weights, kv;
};

class Qwen3MoeGolden : public ::testing::TestWithParam<Case> {};

TEST_P(Qwen3MoeGolden, logits_match_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    const Case& c = GetParam();
    test::Golden g = test::load_golden("qwen3moe-tiny-s1-" + c.weights + ".kv-" + c.kv);
    EngineOptions opt;
    opt.model_path = test::fixture("models/qwen3moe-tiny-s1-" + c.weights + ".gguf").string();
    opt.n_threads = 2;
    opt.n_ctx = 1024;
    opt.type_k = opt.type_v = parse_cache_type(c.kv);
    Engine engine(opt);
    ASSERT_EQ(engine.n_vocab(), g.n_vocab);
    std::vector<float> logits = engine.eval(0, g.tokens, /*all_logits=*/true);
    auto a = test::compare_logits(g.logits.data(), logits.data(), static_cast<int64_t>(g.tokens.size()), g.n_vocab);
    EXPECT_LE(a.mean_kl, 3e-3) << "max KL " << a.max_kl;
    EXPECT_GE(a.top1_decisive, 0.98) << a.decisive << " decisive positions";
    EXPECT_GE(a.decisive, 100);
    RecordProperty("mean_kl", std::to_string(a.mean_kl));
    RecordProperty("top1_decisive", std::to_string(a.top1_decisive));
}

std::vector<Case> all_cases() {
    std::vector<Case> cases;
    for (const char* w : {"f16", "q8_0", "q4_k_m", "iq4_xs"})
        for (const char* kv : {"f16", "q8_0", "q4_0"}) cases.push_back({w, kv});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(AllWeightsAndCaches, Qwen3MoeGolden, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param.weights + "_kv_" + info.param.kv; });

}  // namespace
}  // namespace moeserve
