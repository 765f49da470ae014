// Batches of several sequences, truncation and errors, on the qwen3moe
// fixture model: one batch holding two sequences gives each the logits it
// gets alone; truncating and re-evaluating equals a fresh run.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "gguf/gguf_writer.h"

namespace moeserve {
namespace {

const char* const kStem = "qwen3moe-tiny-s1";

EngineOptions fixture_options(const std::string& weights, const std::string& kv, int n_seq) {
    return test::fixture_engine_options(kStem, weights, kv, n_seq);
}

std::vector<int32_t> prompt_tokens(size_t n, size_t offset = 0) { return test::golden_tokens(kStem, n, offset); }

void expect_close(const std::vector<float>& a, const std::vector<float>& b, int64_t n_vocab) {
    test::expect_logits_close(a, b, n_vocab, 1e-5);
}

class EngineBatch : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineBatch, two_sequences_in_one_batch_match_each_alone) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto a = prompt_tokens(40, 0), b = prompt_tokens(25, 60);
    Engine alone(fixture_options("q4_k_m", GetParam(), 1));
    std::vector<float> la = alone.eval(0, a, true);
    alone.cache().clear();
    std::vector<float> lb = alone.eval(0, b, true);

    Engine both(fixture_options("q4_k_m", GetParam(), 2));
    auto [got_a, got_b] = test::eval_interleaved(both, a, b);
    const int64_t V = both.n_vocab();
    expect_close(la, got_a, V);
    expect_close(lb, got_b, V);
}

TEST_P(EngineBatch, truncating_and_reevaluating_equals_a_fresh_run) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto prefix = prompt_tokens(30, 0), first = prompt_tokens(20, 30), second = prompt_tokens(20, 80);
    Engine e(fixture_options("q8_0", GetParam(), 1));
    e.eval(0, prefix, false);
    e.eval(0, first, false);
    e.cache().truncate(0, static_cast<int64_t>(prefix.size()));
    EXPECT_EQ(e.cache().seq_length(0), 30);
    std::vector<float> after = e.eval(0, second, true);

    Engine fresh(fixture_options("q8_0", GetParam(), 1));
    fresh.eval(0, prefix, false);
    std::vector<float> expect = fresh.eval(0, second, true);
    expect_close(expect, after, e.n_vocab());
}

TEST_P(EngineBatch, decoding_one_token_at_a_time_matches_the_prompt_batch) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto toks = prompt_tokens(48, 0);
    Engine batch(fixture_options("iq4_xs", GetParam(), 1));
    std::vector<float> all = batch.eval(0, toks, true);
    Engine step(fixture_options("iq4_xs", GetParam(), 1));
    std::vector<float> one_by_one;
    for (int32_t t : toks) {
        auto l = step.eval(0, std::span<const int32_t>(&t, 1), true);
        one_by_one.insert(one_by_one.end(), l.begin(), l.end());
    }
    expect_close(all, one_by_one, batch.n_vocab());
}

INSTANTIATE_TEST_SUITE_P(Caches, EngineBatch, ::testing::Values("f16", "q8_0", "q4_0"));

TEST(EngineErrors, bad_tokens_positions_and_a_full_cache_leave_the_cache_unchanged) {
    MOESERVE_REQUIRE_FIXTURES();
    EngineOptions opt = fixture_options("q8_0", "f16", 2);
    opt.n_ctx = 16;
    Engine e(opt);
    e.eval(0, prompt_tokens(4), false);
    Batch bad_token;
    bad_token.add(5, 4, 0, true);
    bad_token.add(1000000, 5, 0, true);
    EXPECT_THROW(e.model().forward(bad_token, e.cache()), std::invalid_argument);
    Batch bad_pos;
    bad_pos.add(5, 7, 0, true);
    EXPECT_THROW(e.model().forward(bad_pos, e.cache()), std::invalid_argument);
    Batch bad_seq;
    bad_seq.add(5, 0, 2, true);
    EXPECT_THROW(e.model().forward(bad_seq, e.cache()), std::invalid_argument);
    EXPECT_EQ(e.cache().seq_length(0), 4);
    EXPECT_EQ(e.cache().n_free(), 12);
    try {
        e.eval(1, prompt_tokens(13), false);
        FAIL() << "expected a full cache";
    } catch (const std::runtime_error& err) {
        EXPECT_NE(std::string(err.what()).find("KV cache is full"), std::string::npos) << err.what();
    }
    EXPECT_EQ(e.cache().seq_length(1), 0);
    EXPECT_EQ(e.cache().n_free(), 12);
}

TEST(EngineErrors, unsupported_architecture_and_header_only_files_are_refused_by_name) {
    auto dir = test::scratch_dir();
    {
        GgufWriter w;
        w.set("general.architecture", "mamba9");
        w.set("tokenizer.ggml.tokens", gguf_string_array({"a"}));
        w.write((dir / "arch.gguf").string());
        w.add_tensor_info("token_embd.weight", GgmlType::F16, {8, 1});
    }
    EngineOptions opt;
    opt.model_path = (dir / "arch.gguf").string();
    try {
        Engine e(opt);
        FAIL();
    } catch (const GgufError& err) {
        EXPECT_NE(std::string(err.what()).find("architecture 'mamba9' is not supported (supported: "), std::string::npos)
            << err.what();
    }
    GgufWriter h;
    h.set("general.architecture", "qwen3moe");
    h.add_tensor_info("token_embd.weight", GgmlType::F16, {8, 1});
    h.write((dir / "header.gguf").string());
    opt.model_path = (dir / "header.gguf").string();
    try {
        Engine e(opt);
        FAIL();
    } catch (const GgufError& err) {
        EXPECT_NE(std::string(err.what()).find("header-only"), std::string::npos) << err.what();
    }
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// Cache types without a llama.cpp golden: each must stay near the f16 golden
// by how many bits it keeps (a wrong layout or dot kernel gives KL > 0.05).
TEST(EngineCacheTypes, every_cache_type_stays_close_to_the_f16_reference) {
    MOESERVE_REQUIRE_FIXTURES();
    test::Golden g = test::load_golden("qwen3moe-tiny-s1-f16.kv-f16");
    const std::pair<const char*, double> bounds[] = {{"f32", 1e-4},   {"bf16", 1e-4},  {"q8_0", 1e-3},
                                                     {"q5_0", 3e-3},  {"q5_1", 3e-3},  {"q4_0", 6e-3},
                                                     {"q4_1", 6e-3},  {"iq4_nl", 6e-3}};
    for (const auto& [kv, bound] : bounds) {
        EngineOptions opt = fixture_options("f16", kv, 1);
        opt.n_ctx = 256;
        Engine e(opt);
        std::vector<float> logits = e.eval(0, g.tokens, true);
        auto a = test::compare_logits(g.logits.data(), logits.data(), static_cast<int64_t>(g.tokens.size()), g.n_vocab);
        EXPECT_LE(a.mean_kl, bound) << kv;
        EXPECT_GE(a.top1_decisive, 0.97) << kv;
    }
}

TEST(EngineCacheTypes, a_quantized_cache_needs_head_sizes_in_whole_blocks) {
    MOESERVE_REQUIRE_FIXTURES();
    EngineOptions opt;
    opt.model_path = test::fixture("models/real/stories260K.gguf").string();  // head size 8
    opt.n_ctx = 64;
    opt.type_k = GgmlType::Q8_0;
    try {
        Engine e(opt);
        FAIL() << "a q8_0 cache with head size 8 was accepted";
    } catch (const std::invalid_argument& err) {
        EXPECT_NE(std::string(err.what()).find("K cache type q8_0 needs a head size that is a multiple of 32"),
                  std::string::npos)
            << err.what();
    }
}

}  // namespace
}  // namespace moeserve
