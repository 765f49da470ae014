// Batches on the glm47flash-tiny (deepseek2) fixture: two sequences in one
// interleaved batch give each the logits it gets alone; decoding one token
// at a time equals evaluating the prompt as one batch; truncating and
// re-evaluating equals a fresh run — for every cache type.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"

namespace moeserve {
namespace {

const char* const kStem = "glm47flash-tiny-s1";

EngineOptions glm_options(const std::string& weights, const std::string& kv, int n_seq) {
    return test::fixture_engine_options(kStem, weights, kv, n_seq);
}

std::vector<int32_t> prompt_tokens(size_t n, size_t offset = 0) { return test::golden_tokens(kStem, n, offset); }

void expect_close(const std::vector<float>& a, const std::vector<float>& b, int64_t n_vocab) {
    test::expect_logits_close(a, b, n_vocab, 1e-5);
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
    auto [got_a, got_b] = test::eval_interleaved(both, a, b);
    const int64_t V = both.n_vocab();
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
