// nemotron_h_moe against llama.cpp: every golden (weights f16, q8_0, q4_k_m,
// iq4_xs × KV cache f16, q8_0, q4_0) evaluated as one prompt must give mean
// KL <= 3e-3 and >= 98% top-1 agreement at decisive positions; greedy
// decoding one token at a time reproduces the f16 golden's continuation up
// to legitimate near-ties.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "golden.h"

namespace moeserve {
namespace {

struct Case {
    std::string weights, kv;
};

EngineOptions nemotron_options(const std::string& weights, const std::string& kv) {
    EngineOptions opt;
    opt.model_path = test::fixture("models/nemotron-h-moe-tiny-s1-" + weights + ".gguf").string();
    opt.n_threads = 2;
    opt.n_ctx = 1024;
    opt.type_k = opt.type_v = parse_cache_type(kv);
    return opt;
}

class NemotronGolden : public ::testing::TestWithParam<Case> {};

TEST_P(NemotronGolden, logits_match_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    const Case& c = GetParam();
    test::Golden g = test::load_golden("nemotron-h-moe-tiny-s1-" + c.weights + ".kv-" + c.kv);
    Engine engine(nemotron_options(c.weights, c.kv));
    ASSERT_EQ(engine.n_vocab(), g.n_vocab);
    std::vector<float> logits = engine.eval(0, g.tokens, /*all_logits=*/true);
    auto a = test::compare_logits(g.logits.data(), logits.data(), static_cast<int64_t>(g.tokens.size()), g.n_vocab);
    EXPECT_LE(a.mean_kl, 3e-3) << "max KL " << a.max_kl;
    EXPECT_GE(a.top1_decisive, 0.98) << a.decisive << " decisive positions";
    EXPECT_GE(a.decisive, 100);
    RecordProperty("mean_kl", std::to_string(a.mean_kl));
    RecordProperty("top1_decisive", std::to_string(a.top1_decisive));
    std::printf("[ nemotron ] %s kv %s: mean KL %.3g, max KL %.3g, top-1 %.4f of %lld decisive\n", c.weights.c_str(),
                c.kv.c_str(), a.mean_kl, a.max_kl, a.top1_decisive, static_cast<long long>(a.decisive));
}

std::vector<Case> all_cases() {
    std::vector<Case> cases;
    for (const char* w : {"f16", "q8_0", "q4_k_m", "iq4_xs"})
        for (const char* kv : {"f16", "q8_0", "q4_0"}) cases.push_back({w, kv});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(AllWeightsAndCaches, NemotronGolden, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param.weights + "_kv_" + info.param.kv; });

// Greedy decoding reproduces the F16/f16 golden's continuation (up to a near-tie).
TEST(NemotronGreedy, continuation_matches_the_f16_golden) {
    MOESERVE_REQUIRE_FIXTURES();
    test::Golden g = test::load_golden("nemotron-h-moe-tiny-s1-f16.kv-f16");
    Engine e(nemotron_options("f16", "f16"));
    const size_t matched = test::expect_greedy_continuation(e, g);
    EXPECT_EQ(matched, g.tokens.size() - g.n_prompt);
}

}  // namespace
}  // namespace moeserve
