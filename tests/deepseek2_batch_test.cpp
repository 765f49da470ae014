// Batches on the glm47flash-tiny (deepseek2) fixture: two sequences in one
// interleaved batch give each the logits it gets alone; decoding one token
// at a time equals evaluating the prompt as one batch; truncating and
// re-evaluating equals a fresh run — for every cache type.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "golden.h"

namespace moeserve {
namespace {

EngineOptions glm_options(const std::string& weights, const std::string& kv, int n_seq) {
    EngineOptions opt;
    opt.model_path = test::fixture("models/glm47flash-tiny-s1-" + weights + ".gguf").string();
    opt.n_threads = 2;
    opt.n_ctx = 512;
    opt.n_seq = n_seq;
    opt.type_k = opt.type_v = parse_cache_type(kv);
    return opt;
}

std::vector<int32_t> prompt_tokens(size_t n, size_t offset = 0) {
    test::Golden g = test::load_golden("glm47flash-tiny-s1-f16.kv-f16");
    return std::vector<int32_t>(g.tokens.begin() + offset, g.tokens.begin() + offset + n);
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, int64_t n_vocab) {
    ASSERT_EQ(a.size(), b.size());
    auto m = test::compare_logits(a.data(), b.data(), static_cast<int64_t>(a.size()) / n_vocab, n_vocab);
    EXPECT_LE(m.mean_kl, 1e-5);
    EXPECT_EQ(m.top1_decisive, 1.0);
}

class Deepseek2Batch : public ::testing::TestWithParam<std::string> {};

TEST_P(Deepseek2Batch, two_sequences_in_one_batch_match_each_alone) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto a = prompt_tokens(40, 0), b = prompt_tokens(25, 60);
    Engine alone(glm_options("q4_k_m", GetParam(), 1));
    std::vector<float> la = alone.eval(0, a, true);
    alone.cache().clear();
    std::vector<float> lb = alone.eval(0, b, true);

    Engine both(glm_options("q4_k_m", GetParam(), 2));
    Batch batch;  // interleaved, so the attention rows of the two sequences mix within the batch
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        if (i < a.size()) batch.add(a[i], static_cast<int32_t>(i), 0, true);
        if (i < b.size()) batch.add(b[i], static_cast<int32_t>(i), 1, true);
    }
    std::vector<float> out = both.model().forward(batch, both.cache());
    const int64_t V = both.n_vocab();
    std::vector<float> got_a, got_b;
    for (size_t i = 0; i < batch.size(); ++i) {
        auto& dst = batch.seq_ids[i] == 0 ? got_a : got_b;
        dst.insert(dst.end(), out.begin() + i * V, out.begin() + (i + 1) * V);
    }
    expect_close(la, got_a, V);
    expect_close(lb, got_b, V);
}

TEST_P(Deepseek2Batch, decoding_one_token_at_a_time_matches_the_prompt_batch) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto toks = prompt_tokens(48, 0);
    Engine batch(glm_options("iq4_xs", GetParam(), 1));
    std::vector<float> all = batch.eval(0, toks, true);
    Engine step(glm_options("iq4_xs", GetParam(), 1));
    std::vector<float> one_by_one;
    for (int32_t t : toks) {
        auto l = step.eval(0, std::span<const int32_t>(&t, 1), true);
        one_by_one.insert(one_by_one.end(), l.begin(), l.end());
    }
    expect_close(all, one_by_one, batch.n_vocab());
}

TEST_P(Deepseek2Batch, truncating_and_reevaluating_equals_a_fresh_run) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto prefix = prompt_tokens(30, 0), first = prompt_tokens(20, 30), second = prompt_tokens(20, 80);
    Engine e(glm_options("q8_0", GetParam(), 1));
    e.eval(0, prefix, false);
    e.eval(0, first, false);
    e.cache().truncate(0, static_cast<int64_t>(prefix.size()));
    std::vector<float> after = e.eval(0, second, true);

    Engine fresh(glm_options("q8_0", GetParam(), 1));
    fresh.eval(0, prefix, false);
    std::vector<float> expect = fresh.eval(0, second, true);
    expect_close(expect, after, e.n_vocab());
}

INSTANTIATE_TEST_SUITE_P(Caches, Deepseek2Batch, ::testing::Values("f16", "q8_0", "q4_0"));

}  // namespace
}  // namespace moeserve
