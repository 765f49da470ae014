// deepseek2 (GLM-4.7-Flash layout) against llama.cpp: every golden (weights
// f16, q8_0, q4_k_m, iq4_xs × KV cache f16, q8_0, q4_0) evaluated as one
// prompt must give mean KL <= 3e-3 and >= 98% top-1 agreement at decisive
// positions; greedy decoding one token at a time reproduces the F16/f16
// golden continuation; the MLA cache holds kv_lora + n_rot values per token
// and layer and nothing else.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "golden.h"
#include "synth/presets.h"

namespace moeserve {
namespace {

struct Case {
    std::string weights, kv;
};

void PrintTo(const Case& c, std::ostream* os) {
    *os << c.weights << " weights, " << c.kv << " cache";
}

EngineOptions glm_options(const std::string& weights, const std::string& kv) {
    EngineOptions opt;
    opt.model_path = test::fixture("models/glm47flash-tiny-s1-" + weights + ".gguf").string();
    opt.n_threads = 2;
    opt.n_ctx = 1024;
    opt.type_k = opt.type_v = parse_cache_type(kv);
    return opt;
}

class Deepseek2Golden : public ::testing::TestWithParam<Case> {};

TEST_P(Deepseek2Golden, logits_match_llama_cpp) {
    MOESERVE_REQUIRE_FIXTURES();
    const Case& c = GetParam();
    test::Golden g = test::load_golden("glm47flash-tiny-s1-" + c.weights + ".kv-" + c.kv);
    Engine engine(glm_options(c.weights, c.kv));
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

INSTANTIATE_TEST_SUITE_P(AllWeightsAndCaches, Deepseek2Golden, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param.weights + "_kv_" + info.param.kv; });

// Greedy decoding reproduces the F16/f16 golden's continuation (up to a near-tie).
TEST(Deepseek2Greedy, continuation_matches_the_f16_golden) {
    MOESERVE_REQUIRE_FIXTURES();
    test::Golden g = test::load_golden("glm47flash-tiny-s1-f16.kv-f16");
    Engine e(glm_options("f16", "f16"));
    const size_t matched = test::expect_greedy_continuation(e, g);
    RecordProperty("matched_tokens", std::to_string(matched));
}

// The cache is K-only, one row of kv_lora + n_rot per token and layer
// (3 layers × 320 values here), never Hadamard-rotated, and the memory
// planner counts the same bytes the cache allocates.
TEST(Deepseek2Cache, holds_one_latent_row_per_token_and_layer) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* kv : {"f16", "q8_0", "q4_0"}) {
        Engine e(glm_options("q8_0", kv));
        const KvCache& c = e.cache();
        ASSERT_EQ(c.n_layer(), 3);
        size_t per_token = 0;
        for (int l = 0; l < c.n_layer(); ++l) {
            EXPECT_EQ(c.config().n_embd_k[l], 320);
            EXPECT_EQ(c.config().n_embd_v[l], 0);
            EXPECT_EQ(c.v_row_bytes(l), 0u);
            per_token += c.k_row_bytes(l);
        }
        const size_t expect = std::string(kv) == "f16" ? 3 * 640 : std::string(kv) == "q8_0" ? 3 * 340 : 3 * 180;
        EXPECT_EQ(per_token, expect) << kv;
        EXPECT_EQ(c.k_rotation_chunk(), 0);
        EXPECT_EQ(c.v_rotation_chunk(), 0);
        EXPECT_EQ(c.bytes(), per_token * static_cast<size_t>(c.n_cells())) << kv;
        EXPECT_EQ(e.plan().kv_bytes_per_token, per_token) << kv;
    }
}

// GLM-4.7-Flash's attention layout (47 layers, kv_lora 512, rope 64) on a
// narrow synthetic model: 576 cached values per token and layer, 54,144 B
// per token at f16, 28,764 at q8_0, 15,228 at q4_0 (spec architectures §7.3).
TEST(Deepseek2Cache, glm_4_7_flash_bytes_per_token) {
    SynthSpec s = *synth_preset("glm-4.7-flash", FileMix::F16);
    s.n_embd = 64;
    s.n_head = 2;
    s.q_lora_rank = 32;
    s.n_ff = 64;
    s.n_expert = 4;
    s.n_expert_used = 2;
    s.n_ff_exp = 32;
    s.n_vocab = 300;
    s.n_ctx_train = 4096;
    const auto path = test::scratch_dir() / "glm47-narrow.gguf";
    write_synth_model(path.string(), s);
    for (auto [kv, bytes] : {std::pair{"f16", 54144}, std::pair{"q8_0", 28764}, std::pair{"q4_0", 15228}}) {
        EngineOptions opt;
        opt.model_path = path.string();
        opt.n_threads = 1;
        opt.n_ctx = 256;
        opt.type_k = opt.type_v = parse_cache_type(kv);
        Engine e(opt);
        size_t per_token = 0;
        for (int l = 0; l < e.cache().n_layer(); ++l) {
            EXPECT_EQ(e.cache().config().n_embd_k[l], 576);
            per_token += e.cache().k_row_bytes(l) + e.cache().v_row_bytes(l);
        }
        EXPECT_EQ(per_token, static_cast<size_t>(bytes)) << kv;
        EXPECT_EQ(e.plan().kv_bytes_per_token, static_cast<uint64_t>(bytes)) << kv;
        // It runs: a short prompt gives finite logits.
        const std::vector<int32_t> prompt = {1, 2, 3};
        for (float x : e.eval(0, prompt, false)) ASSERT_TRUE(std::isfinite(x));
    }
}

}  // namespace
}  // namespace moeserve
