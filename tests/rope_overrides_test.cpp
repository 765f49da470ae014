// llama.cpp's RoPE flags (--rope-scaling, --rope-scale, --rope-freq-base,
// --yarn-*): how they resolve over a model's RoPE (as llama.cpp sets up a
// context, spec architectures §1.5), that serve and the engine commands take
// them, and that they reach the forward pass.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/rope_flags.h"
#include "engine_test_util.h"
#include "server/server_options.h"

namespace moeserve {
namespace {

GgufFile qwen_fixture() {
    return GgufFile::open(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
}

RopeParams resolved(const RopeOverrides& o) {
    const GgufFile f = qwen_fixture();
    return resolve_rope(f, RopeMode::Neox, 128, 4096, o);
}

TEST(RopeOverrides, none_given_is_the_models_rope) {
    MOESERVE_REQUIRE_FIXTURES();
    const RopeParams r = resolved({});
    EXPECT_EQ(r.freq_base, 1000000.0f);  // the fixture's rope.freq_base
    EXPECT_EQ(r.freq_scale, 1.0f);
    EXPECT_EQ(r.ext_factor, 0.0f);
    EXPECT_EQ(r.attn_factor, 1.0f);
    EXPECT_EQ(r.n_ctx_orig, 4096);
    EXPECT_EQ(r.beta_fast, 32.0f);
    EXPECT_EQ(r.beta_slow, 1.0f);
}

TEST(RopeOverrides, yarn_flags_resolve_as_llama_cpp_sets_up_a_context) {
    MOESERVE_REQUIRE_FIXTURES();
    RopeOverrides o;
    for (auto [flag, value] : {std::pair{"--rope-scaling", "yarn"}, {"--rope-scale", "4"}, {"--yarn-orig-ctx", "1024"}})
        ASSERT_TRUE(apply_rope_flag(o, flag, value));
    RopeParams r = resolved(o);
    EXPECT_EQ(r.freq_scale, 0.25f);
    EXPECT_EQ(r.ext_factor, 1.0f);
    EXPECT_EQ(r.n_ctx_orig, 1024);
    // gm(4, 1) / (1 + 0.1 ln 4): the mscale the kernel re-applies cancels.
    EXPECT_FLOAT_EQ(r.attn_factor, 1.0f);

    ASSERT_TRUE(apply_rope_flag(o, "--yarn-attn-factor", "2"));
    ASSERT_TRUE(apply_rope_flag(o, "--yarn-beta-fast", "16"));
    ASSERT_TRUE(apply_rope_flag(o, "--yarn-beta-slow", "2"));
    ASSERT_TRUE(apply_rope_flag(o, "--yarn-ext-factor", "0.5"));
    r = resolved(o);
    EXPECT_FLOAT_EQ(r.attn_factor, 2.0f);
    EXPECT_EQ(r.beta_fast, 16.0f);
    EXPECT_EQ(r.beta_slow, 2.0f);
    EXPECT_EQ(r.ext_factor, 0.5f);

    // Linear scaling: no YaRN mix, no magnitude factor; none: no scaling at all.
    RopeOverrides linear;
    apply_rope_flag(linear, "--rope-scaling", "linear");
    apply_rope_flag(linear, "--rope-freq-scale", "0.5");
    r = resolved(linear);
    EXPECT_EQ(r.freq_scale, 0.5f);
    EXPECT_EQ(r.ext_factor, 0.0f);
    EXPECT_EQ(r.attn_factor, 1.0f);
    RopeOverrides off;
    apply_rope_flag(off, "--rope-scaling", "none");
    apply_rope_flag(off, "--rope-scale", "8");
    EXPECT_EQ(resolved(off).freq_scale, 1.0f);

    RopeOverrides base;
    apply_rope_flag(base, "--rope-freq-base", "500000");
    EXPECT_EQ(resolved(base).freq_base, 500000.0f);
}

TEST(RopeOverrides, bad_values_are_refused_and_other_flags_are_not_rope_flags) {
    RopeOverrides o;
    EXPECT_THROW(apply_rope_flag(o, "--rope-scaling", "ntk"), std::invalid_argument);
    EXPECT_THROW(apply_rope_flag(o, "--rope-scale", "0"), std::invalid_argument);
    EXPECT_THROW(apply_rope_flag(o, "--rope-freq-base", "x"), std::invalid_argument);
    EXPECT_THROW(apply_rope_flag(o, "--yarn-orig-ctx", "-1"), std::invalid_argument);
    EXPECT_FALSE(apply_rope_flag(o, "--ctx-size", "10"));
    EXPECT_FALSE(o.any());
}

// The forward pass uses them: a different base changes the logits, turning
// scaling off on a model that has none leaves them bit for bit.
TEST(RopeOverrides, reach_the_forward_pass) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::vector<int32_t> tokens = test::golden_tokens("qwen3moe-tiny-s1", 40);
    auto logits = [&](const std::vector<std::pair<const char*, const char*>>& flags) {
        EngineOptions opt = test::fixture_engine_options("qwen3moe-tiny-s1", "f16", "f16", 1);
        for (auto [f, v] : flags) apply_rope_flag(opt.rope, f, v);
        Engine e(opt);
        return e.eval(0, tokens, /*all_logits=*/true);
    };
    const std::vector<float> plain = logits({});
    EXPECT_EQ(logits({{"--rope-scaling", "none"}}), plain);
    EXPECT_NE(logits({{"--rope-freq-base", "10000"}}), plain);
    const std::vector<float> yarn = logits({{"--rope-scaling", "yarn"}, {"--rope-scale", "4"}});
    EXPECT_NE(yarn, plain);
    for (float v : yarn) ASSERT_TRUE(std::isfinite(v));

    // YaRN-scaled keys cannot be re-rotated by a context shift (as with a YaRN GGUF).
    EngineOptions opt = test::fixture_engine_options("qwen3moe-tiny-s1", "f16", "f16", 1);
    apply_rope_flag(opt.rope, "--rope-scaling", "yarn");
    apply_rope_flag(opt.rope, "--rope-scale", "4");
    Engine e(opt);
    EXPECT_NE(e.model().context_shift_refusal().find("YaRN"), std::string::npos);
}

ServerOptions serve(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    return parse_server_args(args, [env](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

TEST(RopeOverrides, serve_takes_the_flags_and_their_variables) {
    ServerOptions o = serve({"-m", "m.gguf", "--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "32768",
                             "--rope-freq-base", "1e6"});
    EXPECT_EQ(o.rope.scaling, "yarn");
    EXPECT_EQ(o.rope.freq_scale, 0.25f);
    EXPECT_EQ(o.rope.orig_ctx, 32768);
    EXPECT_EQ(o.rope.freq_base, 1e6f);
    o = serve({"-m", "m.gguf"}, {{"LLAMA_ARG_ROPE_SCALE", "2"}, {"LLAMA_ARG_ROPE_SCALING_TYPE", "yarn"}});
    EXPECT_EQ(o.rope.freq_scale, 0.5f);
    EXPECT_EQ(o.rope.scaling, "yarn");
    try {
        serve({"-m", "m.gguf", "--rope-scaling", "ntk"});
        FAIL() << "accepted --rope-scaling ntk";
    } catch (const ServerFlagError& e) {
        EXPECT_NE(std::string(e.what()).find("--rope-scaling"), std::string::npos) << e.what();
    }
}

TEST(ServerFlags, more_llama_server_flags_are_taken_refused_or_accepted_by_name) {
    ServerOptions o = serve({"-m", "m.gguf", "--samplers", "top_k;top_p;min_p;temperature", "--ignore-eos"});
    ASSERT_EQ(o.sampling.samplers.size(), 4u);
    EXPECT_EQ(o.sampling.samplers[0], *sampler_type_from_name("top_k"));
    EXPECT_EQ(o.sampling.samplers[3], *sampler_type_from_name("temperature"));
    EXPECT_TRUE(o.ignore_eos);
    o = serve({"-m", "m.gguf", "--sampling-seq", "kpmt"});
    EXPECT_EQ(o.sampling.samplers.size(), 4u);
    // Accepted with no effect here (llama-server tuning with nothing to tune).
    EXPECT_NO_THROW(serve({"-m", "m.gguf", "--numa", "distribute", "--log-disable", "--prio", "2", "--poll", "50",
                           "-dt", "0.1", "--no-perf", "--offline", "--verbose-prompt", "--log-colors"}));
    // Refused by name with the reason.
    for (std::vector<std::string> bad : {std::vector<std::string>{"--override-kv", "a=int:1"},
                                         {"--grp-attn-n", "2"},
                                         {"--spec-type", "draft-mtp"},
                                         {"--samplers", "top_k;nope"},
                                         {"--numa", "everywhere"}}) {
        std::vector<std::string> args = {"-m", "m.gguf"};
        args.insert(args.end(), bad.begin(), bad.end());
        try {
            serve(args);
            FAIL() << "accepted " << bad[0];
        } catch (const ServerFlagError& e) {
            EXPECT_NE(std::string(e.what()).find(bad[0]), std::string::npos) << e.what();
        }
    }
}

}  // namespace
}  // namespace moeserve
