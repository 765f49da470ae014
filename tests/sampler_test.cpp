// Sampler: each stage of llama.cpp's chain on logits with a known softmax,
// determinism per seed, penalties over the accepted history, parameter checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace moeserve {
namespace {

// Every filter off, temperature 1: the chain is plain softmax sampling.
SamplingParams plain_params(uint32_t seed = 1234) {
    SamplingParams p;
    p.seed = seed;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

std::vector<float> log_probs(const std::vector<double>& probs) {
    std::vector<float> logits;
    for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
    return logits;
}

std::vector<double> softmax(const std::vector<float>& logits) {
    const double max_l = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p;
    double sum = 0.0;
    for (float l : logits) {
        p.push_back(std::exp(l - max_l));
        sum += p.back();
    }
    for (double& x : p) x /= sum;
    return p;
}

std::vector<int32_t> draw(Sampler& s, const std::vector<float>& logits, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(s.sample(logits));
    return out;
}

// Probabilities after the chain, indexed by token (0 for tokens the chain dropped).
std::vector<double> post_probs_by_token(Sampler& s, const std::vector<float>& logits) {
    s.sample(logits);
    std::vector<double> out(logits.size(), 0.0);
    for (const TokenProb& tp : s.post_sampling_probs(logits.size())) out[static_cast<size_t>(tp.token)] = tp.prob;
    return out;
}

std::vector<int32_t> kept_tokens(Sampler& s, const std::vector<float>& logits) {
    s.sample(logits);
    std::vector<int32_t> out;
    for (const TokenProb& tp : s.post_sampling_probs(logits.size())) {
        if (tp.prob > 0.0f) out.push_back(tp.token);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<float> random_logits(size_t n, uint32_t seed, float scale = 3.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> logits(n);
    for (float& l : logits) l = dist(rng);
    return logits;
}

// Pearson chi-square of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& expected, int n) {
    double chi = 0.0;
    for (size_t i = 0; i < counts.size(); ++i) {
        const double e = expected[i] * n;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

TEST(Sampler, DefaultsMatchLlamaServer) {
    const SamplingParams p;
    EXPECT_EQ(p.seed, 0xFFFFFFFFu);
    EXPECT_FLOAT_EQ(p.temperature, 0.8f);
    EXPECT_EQ(p.top_k, 40);
    EXPECT_FLOAT_EQ(p.top_p, 0.95f);
    EXPECT_FLOAT_EQ(p.min_p, 0.05f);
    EXPECT_FLOAT_EQ(p.typical_p, 1.0f);
    EXPECT_FLOAT_EQ(p.repeat_penalty, 1.0f);
    EXPECT_EQ(p.repeat_last_n, 64);
    EXPECT_FLOAT_EQ(p.presence_penalty, 0.0f);
    EXPECT_FLOAT_EQ(p.frequency_penalty, 0.0f);
    EXPECT_EQ(p.n_probs, 0);
    const std::vector<SamplerType> order = {SamplerType::penalties, SamplerType::dry,       SamplerType::top_n_sigma,
                                            SamplerType::top_k,     SamplerType::typical_p, SamplerType::top_p,
                                            SamplerType::min_p,     SamplerType::xtc,       SamplerType::temperature};
    EXPECT_EQ(p.samplers, order);
}

TEST(Sampler, GreedyPicksArgmaxAndGivesItProbabilityOne) {
    SamplingParams p;  // defaults otherwise: top_k 40, top_p 0.95, min_p 0.05
    p.temperature = 0.0f;
    Sampler s(p, 1000);
    for (uint32_t row = 0; row < 20; ++row) {
        const std::vector<float> logits = random_logits(1000, row);
        const auto argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        EXPECT_EQ(s.sample(logits), argmax);
        EXPECT_FLOAT_EQ(s.sampled_prob(), 1.0f);
        const auto probs = s.post_sampling_probs(5);
        ASSERT_FALSE(probs.empty());
        EXPECT_EQ(probs[0].token, argmax);
        EXPECT_FLOAT_EQ(probs[0].prob, 1.0f);
        for (size_t i = 1; i < probs.size(); ++i) EXPECT_EQ(probs[i].prob, 0.0f);
    }
}

TEST(Sampler, GreedyOnTiesPicksLowestId) {
    SamplingParams p = plain_params();
    p.temperature = 0.0f;
    Sampler s(p, 5);
    EXPECT_EQ(s.sample(std::vector<float>{1.0f, 3.0f, 2.0f, 3.0f, 0.0f}), 1);
}

// Greedy decoding with penalties and a logit bias, over a sequence whose tokens feed the
// penalties, against the plain reference: the first highest logit after the penalties.
// n_probs = 0 takes the sampler's one-pass argmax; n_probs = 1 runs the whole chain.
TEST(Sampler, GreedyWithPenaltiesPicksTheFirstHighestPenalizedLogit) {
    constexpr int32_t kVocab = 700;
    for (int32_t n_probs : {0, 1}) {
        SamplingParams p;
        p.temperature = 0.0f;
        p.repeat_penalty = 1.3f;
        p.frequency_penalty = 0.2f;
        p.presence_penalty = 0.5f;
        p.repeat_last_n = 8;
        p.n_probs = n_probs;
        p.logit_bias = {{5, 2.0f}, {6, -INFINITY}};
        Sampler s(p, kVocab);
        std::vector<int32_t> history;
        for (uint32_t step = 0; step < 300; ++step) {
            std::vector<float> logits = random_logits(kVocab, 900 + step, 1.0f);
            for (float& l : logits) l = std::round(l * 4.0f) / 4.0f;  // many ties
            std::vector<float> ref = logits;
            ref[5] += 2.0f;
            ref[6] = -INFINITY;
            std::vector<int> count(kVocab, 0);
            const size_t from = history.size() > 8 ? history.size() - 8 : 0;
            for (size_t i = from; i < history.size(); ++i) ++count[static_cast<size_t>(history[i])];
            for (int32_t t = 0; t < kVocab; ++t) {
                const int c = count[static_cast<size_t>(t)];
                if (c == 0) continue;
                float& x = ref[static_cast<size_t>(t)];
                x = x <= 0.0f ? x * 1.3f : x / 1.3f;
                x -= static_cast<float>(c) * 0.2f + 0.5f;
            }
            const auto expected =
                static_cast<int32_t>(std::max_element(ref.begin(), ref.end()) - ref.begin());  // first of ties
            const int32_t token = s.sample(logits);
            ASSERT_EQ(token, expected) << "n_probs " << n_probs << ", step " << step;
            EXPECT_FLOAT_EQ(s.sampled_prob(), 1.0f);
            s.accept(token);
            history.push_back(token);
        }
    }
}

// Greedy with a logit_bias and no penalties finds the biased row's argmax without copying the
// row: the same token as the plain reference over the biased row, for biases that raise, lower
// and ban, repeat a token, tie with the raw winner, or hit it.
TEST(Sampler, GreedyWithLogitBiasIsTheBiasedRowsFirstArgmax) {
    constexpr int32_t kVocab = 3000;
    std::mt19937 rng(11);
    for (int trial = 0; trial < 400; ++trial) {
        std::vector<float> logits = random_logits(kVocab, 2000 + trial, 1.0f);
        for (float& l : logits) l = std::round(l * 2.0f) / 2.0f;  // many ties
        SamplingParams p;
        p.temperature = 0.0f;
        const size_t top = static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        const int n_bias = 1 + static_cast<int>(rng() % 6);
        for (int i = 0; i < n_bias; ++i) {
            int32_t t = static_cast<int32_t>(rng() % kVocab);
            if (i == 0 && trial % 3 == 0) t = static_cast<int32_t>(top);  // bias the raw winner
            if (i == 1 && trial % 4 == 0) t = p.logit_bias[0].token;      // a token twice
            const float choices[] = {-INFINITY, -1.0f, 0.5f, 3.0f, logits[top] - logits[static_cast<size_t>(t)]};
            p.logit_bias.push_back({t, choices[rng() % 5]});
        }
        std::vector<float> ref = logits;
        for (const LogitBias& b : p.logit_bias) ref[static_cast<size_t>(b.token)] += b.bias;
        const auto expected = static_cast<int32_t>(std::max_element(ref.begin(), ref.end()) - ref.begin());
        Sampler s(p, kVocab);
        ASSERT_EQ(s.sample(logits), expected) << "trial " << trial;
        EXPECT_FLOAT_EQ(s.sampled_prob(), 1.0f);
    }
}

TEST(Sampler, GreedyWithEveryTokenBannedDoesWhatTheFullChainDoes) {
    const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
    std::vector<int32_t> picked;
    for (int32_t n_probs : {0, 1}) {
        SamplingParams p;
        p.temperature = 0.0f;
        p.n_probs = n_probs;
        p.logit_bias = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}};
        Sampler s(p, 3);
        picked.push_back(s.sample(logits));
    }
    EXPECT_EQ(picked[0], picked[1]);
}

// A chain where the penalties come after top_k, or a typical_p that may drop the best
// token, is not plain argmax; greedy must still follow the chain.
TEST(Sampler, GreedyFollowsTheChainWhenItIsNotPlainArgmax) {
    const std::vector<float> logits = {1.0f, 2.5f, 3.0f, 2.9f};
    SamplingParams p = plain_params();
    p.temperature = 0.0f;
    p.top_k = 2;
    p.repeat_penalty = 2.0f;
    p.samplers = {SamplerType::top_k, SamplerType::penalties, SamplerType::temperature};
    Sampler s(p, 4);
    s.accept(2);
    s.accept(3);
    // top_k keeps 2 (3.0) and 3 (2.9); penalties make them 1.5 and 1.45; token 1 (2.5), the
    // argmax of the whole penalized row, was cut before.
    EXPECT_EQ(s.sample(logits), 2);
}

TEST(Sampler, SameSeedGivesSameSequence) {
    const std::vector<float> logits = random_logits(500, 7, 1.0f);
    Sampler a(plain_params(42), 500);
    Sampler b(plain_params(42), 500);
    EXPECT_EQ(draw(a, logits, 300), draw(b, logits, 300));
    EXPECT_EQ(a.seed(), 42u);
}

TEST(Sampler, DifferentSeedGivesDifferentSequence) {
    const std::vector<float> logits = random_logits(500, 7, 1.0f);
    Sampler a(plain_params(42), 500);
    Sampler b(plain_params(43), 500);
    EXPECT_NE(draw(a, logits, 300), draw(b, logits, 300));
}

TEST(Sampler, RandomSeedIsDrawnAndReported) {
    const std::vector<float> logits = random_logits(500, 7, 1.0f);
    Sampler a(plain_params(kRandomSeed), 500);
    Sampler b(plain_params(kRandomSeed), 500);
    // Two random seeds colliding has probability 2^-32.
    EXPECT_NE(a.seed(), b.seed());
    Sampler replay(plain_params(a.seed()), 500);
    EXPECT_EQ(draw(a, logits, 100), draw(replay, logits, 100));
}

TEST(Sampler, DrawIsOneUniformDoublePerTokenOverTheCumulativeSum) {
    // llama.cpp's dist: u ~ uniform_real_distribution<double>(0, 1) from mt19937(seed), then
    // the first candidate whose running sum of probabilities reaches u * total.
    const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
    const std::vector<float> logits = log_probs(probs);
    Sampler s(plain_params(2024), 4);
    std::mt19937 rng(2024);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (int i = 0; i < 200; ++i) {
        const double u = uniform(rng);
        double run = 0.0;
        int32_t expected = 3;
        for (int32_t t = 0; t < 4; ++t) {
            run += probs[static_cast<size_t>(t)];
            if (run >= u) {
                expected = t;
                break;
            }
        }
        const int32_t got = s.sample(logits);
        // A draw this close to a boundary could round either way in float; do not judge it.
        if (std::fabs(run - u) < 1e-6) continue;
        EXPECT_EQ(got, expected) << "draw " << i;
    }
}

TEST(Sampler, TopKOneEqualsGreedy) {
    SamplingParams p = plain_params(99);
    p.top_k = 1;
    Sampler s(p, 2000);
    for (uint32_t row = 0; row < 20; ++row) {
        const std::vector<float> logits = random_logits(2000, 100 + row, 0.5f);
        const auto argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        EXPECT_EQ(s.sample(logits), argmax);
    }
}

TEST(Sampler, TopKKeepsExactlyTheKHighestLogits) {
    for (int32_t k : {5, 300, 1000, 5000}) {  // dense heap, sorted-list selection, full sort
        SamplingParams p = plain_params();
        p.top_k = k;
        Sampler s(p, 5000);
        const std::vector<float> logits = random_logits(5000, 3);
        std::vector<int32_t> ids(5000);
        std::iota(ids.begin(), ids.end(), 0);
        std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        ids.resize(static_cast<size_t>(k));
        std::sort(ids.begin(), ids.end());
        EXPECT_EQ(kept_tokens(s, logits), ids) << "k = " << k;
    }
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
    // softmax {0.5, 0.25, 0.15, 0.1}, shuffled: top_p 0.7 keeps 0.5 + 0.25 = 0.75 >= 0.7.
    const std::vector<float> logits = log_probs({0.15, 0.5, 0.1, 0.25});
    SamplingParams p = plain_params();
    p.top_p = 0.7f;
    Sampler s(p, 4);
    const auto probs = post_probs_by_token(s, logits);
    EXPECT_NEAR(probs[1], 2.0 / 3.0, 1e-6);
    EXPECT_NEAR(probs[3], 1.0 / 3.0, 1e-6);
    EXPECT_EQ(probs[0], 0.0);
    EXPECT_EQ(probs[2], 0.0);
}

TEST(Sampler, TopPOnLargeVocabularyBeyondTheFirstSortedGuess) {
    // 3000 equal logits: top_p 0.5 needs 1500 tokens, more than the 256 sorted first.
    SamplingParams p = plain_params();
    p.top_p = 0.5f;
    Sampler s(p, 3000);
    const std::vector<float> logits(3000, 0.0f);
    const auto kept = kept_tokens(s, logits);
    EXPECT_NEAR(static_cast<double>(kept.size()), 1500.0, 2.0);
    // Ties go to the lower ids.
    EXPECT_EQ(kept.front(), 0);
    EXPECT_EQ(kept.back(), static_cast<int32_t>(kept.size()) - 1);
}

TEST(Sampler, TopPOnLargeVocabularyWithinTheFirstSortedGuess) {
    // Ten heavy tokens scattered in 5000: the nucleus lies in the first sorted guess.
    std::vector<float> logits(5000, -10.0f);
    const std::vector<int32_t> heavy = {17, 400, 999, 1234, 2000, 2500, 3000, 3333, 4000, 4999};
    for (int32_t t : heavy) logits[static_cast<size_t>(t)] = 5.0f;
    SamplingParams p = plain_params();
    p.top_p = 0.9f;
    Sampler s(p, 5000);
    EXPECT_EQ(kept_tokens(s, logits), heavy);
}

TEST(Sampler, TopPHonoursMinKeep) {
    const std::vector<float> logits = log_probs({0.9, 0.05, 0.03, 0.02});
    SamplingParams p = plain_params();
    p.top_p = 0.1f;
    p.min_keep = 3;
    Sampler s(p, 4);
    EXPECT_EQ(kept_tokens(s, logits), (std::vector<int32_t>{0, 1, 2}));
}

TEST(Sampler, MinPKeepsTokensAtLeastMinPTimesTheBest) {
    // threshold 0.15 * 0.5 = 0.075: keeps 0.5, 0.3, 0.1; drops 0.06, 0.04.
    const std::vector<float> logits = log_probs({0.06, 0.5, 0.04, 0.3, 0.1});
    SamplingParams p = plain_params();
    p.min_p = 0.15f;
    Sampler s(p, 5);
    const auto probs = post_probs_by_token(s, logits);
    EXPECT_NEAR(probs[1], 0.5 / 0.9, 1e-6);
    EXPECT_NEAR(probs[3], 0.3 / 0.9, 1e-6);
    EXPECT_NEAR(probs[4], 0.1 / 0.9, 1e-6);
    EXPECT_EQ(probs[0], 0.0);
    EXPECT_EQ(probs[2], 0.0);
}

TEST(Sampler, MinPAfterTopKWorksOnTheSortedList) {
    const std::vector<float> logits = log_probs({0.06, 0.5, 0.04, 0.3, 0.1});
    SamplingParams p = plain_params();
    p.top_k = 4;
    p.min_p = 0.15f;
    Sampler s(p, 5);
    EXPECT_EQ(kept_tokens(s, logits), (std::vector<int32_t>{1, 3, 4}));
}

TEST(Sampler, TypicalPKeepsTokensWhoseSurpriseIsClosestToTheEntropy) {
    // p = {0.4, 0.3, 0.2, 0.1}: entropy 1.280 nats; |-ln p - H| = 0.364, 0.076, 0.329, 1.023.
    // By closeness: 0.3, 0.2, 0.4, 0.1; typical_p 0.45 stops once the sum passes it: {0.3, 0.2}.
    const std::vector<float> logits = log_probs({0.4, 0.3, 0.2, 0.1});
    SamplingParams p = plain_params();
    p.typical_p = 0.45f;
    Sampler s(p, 4);
    const auto probs = post_probs_by_token(s, logits);
    EXPECT_NEAR(probs[1], 0.6, 1e-6);
    EXPECT_NEAR(probs[2], 0.4, 1e-6);
    EXPECT_EQ(probs[0], 0.0);
    EXPECT_EQ(probs[3], 0.0);
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
    const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 0.0f};
    SamplingParams p = plain_params();
    p.repeat_penalty = 2.0f;
    Sampler s(p, 4);
    s.accept(0);
    s.accept(1);
    s.accept(0);  // a repeat does not compound the repeat penalty
    const auto probs = post_probs_by_token(s, logits);
    const auto expected = softmax({1.0f, -2.0f, 0.5f, 0.0f});
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(probs[i], expected[i], 1e-6) << "token " << i;
}

TEST(Sampler, PresenceAndFrequencyPenaltiesSubtractPerCount) {
    const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f};
    SamplingParams p = plain_params();
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 1.0f;
    Sampler s(p, 4);
    for (int32_t t : {0, 0, 0, 1}) s.accept(t);
    // token 0: 2 - (3 * 0.5 + 1) = -0.5; token 1: 1 - (0.5 + 1) = -0.5
    const auto probs = post_probs_by_token(s, logits);
    const auto expected = softmax({-0.5f, -0.5f, 0.5f, 0.0f});
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(probs[i], expected[i], 1e-6) << "token " << i;
}

TEST(Sampler, PenaltiesOnlySeeTheLastRepeatLastNTokens) {
    const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
    SamplingParams p = plain_params();
    p.presence_penalty = 1.0f;
    p.repeat_last_n = 2;
    Sampler s(p, 4);
    for (int32_t t : {0, 1, 2}) s.accept(t);  // 0 has left the window
    const auto probs = post_probs_by_token(s, logits);
    const auto expected = softmax({1.0f, 0.0f, 0.0f, 1.0f});
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(probs[i], expected[i], 1e-6) << "token " << i;
}

TEST(Sampler, RepeatLastNZeroTurnsPenaltiesOff) {
    const std::vector<float> logits = {1.0f, 0.0f};
    SamplingParams p = plain_params();
    p.repeat_penalty = 3.0f;
    p.repeat_last_n = 0;
    Sampler s(p, 2);
    s.accept(0);
    const auto probs = post_probs_by_token(s, logits);
    const auto expected = softmax(logits);
    EXPECT_NEAR(probs[0], expected[0], 1e-6);
}

TEST(Sampler, RepeatLastNMinusOneUsesTheContextSize) {
    const std::vector<float> logits = {1.0f, 1.0f, 1.0f};
    SamplingParams p = plain_params();
    p.presence_penalty = 1.0f;
    p.repeat_last_n = -1;
    Sampler s(p, 3, /*n_ctx=*/3);
    for (int32_t t : {0, 1, 2, 2}) s.accept(t);  // window of 3: 1, 2, 2
    const auto probs = post_probs_by_token(s, logits);
    const auto expected = softmax({1.0f, 0.0f, 0.0f});
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(probs[i], expected[i], 1e-6) << "token " << i;
}

TEST(Sampler, PenaltiesAfterTopKInACustomOrder) {
    const std::vector<float> logits = {3.0f, 2.9f, 0.0f, -5.0f};
    SamplingParams p = plain_params();
    p.temperature = 0.0f;
    p.top_k = 2;
    p.repeat_penalty = 2.0f;
    p.samplers = {SamplerType::top_k, SamplerType::penalties, SamplerType::temperature};
    Sampler s(p, 4);
    s.accept(0);  // 3.0 → 1.5, below 2.9
    EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, ResetForgetsHistoryAndReplaysAFixedSeed) {
    const std::vector<float> logits = random_logits(50, 5, 1.0f);
    SamplingParams p = plain_params(77);
    p.presence_penalty = 2.0f;
    Sampler s(p, 50);
    const auto first = draw(s, logits, 30);  // no accept(): history stays empty
    s.accept(3);
    s.reset();
    EXPECT_EQ(draw(s, logits, 30), first);
}

TEST(Sampler, TemperatureReshapesTheEmpiricalDistribution) {
    // softmax(l / T) is proportional to p^(1/T). Fixed seeds: the counts are deterministic.
    const std::vector<double> base = {0.5, 0.3, 0.2};
    const std::vector<float> logits = log_probs(base);
    constexpr int kDraws = 20000;
    for (float temp : {0.5f, 1.0f, 2.0f}) {
        SamplingParams p = plain_params(31337);
        p.temperature = temp;
        Sampler s(p, 3);
        std::vector<int> counts(3, 0);
        for (int i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(s.sample(logits))];
        std::vector<double> expected;
        double sum = 0.0;
        for (double b : base) sum += std::pow(b, 1.0 / temp);
        for (double b : base) expected.push_back(std::pow(b, 1.0 / temp) / sum);
        // 2 degrees of freedom: 13.8 is the 0.1% critical value.
        EXPECT_LT(chi_square(counts, expected, kDraws), 13.8) << "temperature " << temp;
        // And the shape moved the right way: a hotter temperature gives the best token less.
        EXPECT_NEAR(counts[0] / double(kDraws), expected[0], 0.02) << "temperature " << temp;
    }
}

TEST(Sampler, LogitBiasCanBanTheBestToken) {
    SamplingParams p = plain_params();
    p.temperature = 0.0f;
    p.logit_bias = {{2, -INFINITY}, {0, 0.5f}};
    Sampler s(p, 4);
    // 2 is banned; 0 gets 1.0 + 0.5 = 1.5 > 1.2
    EXPECT_EQ(s.sample(std::vector<float>{1.0f, 1.2f, 9.0f, 0.0f}), 0);
}

TEST(Sampler, XtcExcludesTheTopChoicesAboveTheThreshold) {
    // {0.5, 0.3, 0.15, 0.05}, threshold 0.1: 0.5, 0.3 and 0.15 are above; all but 0.15 go.
    const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
    SamplingParams p = plain_params();
    p.xtc_probability = 1.0f;
    p.xtc_threshold = 0.1f;
    Sampler s(p, 4);
    EXPECT_EQ(kept_tokens(s, logits), (std::vector<int32_t>{2, 3}));
}

TEST(Sampler, TopNSigmaKeepsLogitsWithinNSigmaOfTheMax) {
    // mean 1.95, sigma 3.90: the cut at 10 - 3.90 keeps the first two.
    std::vector<float> logits(10, 0.0f);
    logits[3] = 10.0f;
    logits[7] = 9.5f;
    SamplingParams p = plain_params();
    p.top_n_sigma = 1.0f;
    Sampler s(p, 10);
    EXPECT_EQ(kept_tokens(s, logits), (std::vector<int32_t>{3, 7}));
}

TEST(Sampler, DynamicTemperatureStaysWithinItsRange) {
    // Two tokens at logits 1 and 0: whatever the entropy, the temperature lies in [0.5, 1.5],
    // so the best token's probability lies between softmax at 1.5 and at 0.5.
    const std::vector<float> logits = {1.0f, 0.0f};
    SamplingParams p = plain_params();
    p.temperature = 1.0f;
    p.dynatemp_range = 0.5f;
    Sampler s(p, 2);
    s.sample(logits);
    const float p0 = s.post_sampling_probs(1)[0].prob;
    EXPECT_GT(p0, 1.0 / (1.0 + std::exp(-1.0 / 1.5)));
    EXPECT_LT(p0, 1.0 / (1.0 + std::exp(-1.0 / 0.5)));
}

TEST(Sampler, PostSamplingProbsAreSortedAndSumToOne) {
    SamplingParams p;  // the default chain
    p.seed = 5;
    Sampler s(p, 1000);
    const std::vector<float> logits = random_logits(1000, 11, 2.0f);
    const int32_t token = s.sample(logits);
    const auto probs = s.post_sampling_probs(1000);
    ASSERT_FALSE(probs.empty());
    EXPECT_LE(probs.size(), 40u);
    double sum = 0.0;
    bool has_token = false;
    for (size_t i = 0; i < probs.size(); ++i) {
        sum += probs[i].prob;
        if (i > 0) {
            EXPECT_GE(probs[i - 1].prob, probs[i].prob);
        }
        if (probs[i].token == token) {
            has_token = true;
            EXPECT_FLOAT_EQ(probs[i].prob, s.sampled_prob());
        }
    }
    EXPECT_TRUE(has_token);
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_EQ(s.post_sampling_probs(3).size(), std::min<size_t>(3, probs.size()));
}

TEST(Sampler, RawTokenProbsAreTheSoftmaxOfTheLogits) {
    const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    const auto expected = softmax(logits);
    std::vector<TokenProb> top;
    const float p2 = raw_token_probs(logits, 2, 3, top);
    EXPECT_NEAR(p2, expected[2], 1e-6);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0].token, 1);  // tie with 3: lower id first
    EXPECT_EQ(top[1].token, 3);
    EXPECT_EQ(top[2].token, 4);
    for (const TokenProb& tp : top) EXPECT_NEAR(tp.prob, expected[static_cast<size_t>(tp.token)], 1e-6);
    EXPECT_NEAR(raw_token_probs(logits, 0, 0, top), expected[0], 1e-6);
    EXPECT_TRUE(top.empty());
}

TEST(Sampler, InvalidParametersThrowNamingTheParameter) {
    auto message_of = [](const SamplingParams& p, int32_t n_vocab = 10) -> std::string {
        try {
            Sampler s(p, n_vocab);
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "no exception";
    };
    SamplingParams p;
    p.repeat_last_n = -2;
    EXPECT_NE(message_of(p).find("repeat_last_n"), std::string::npos);
    p = SamplingParams{};
    p.min_keep = -1;
    EXPECT_NE(message_of(p).find("min_keep"), std::string::npos);
    p = SamplingParams{};
    p.temperature = NAN;
    EXPECT_NE(message_of(p).find("temperature"), std::string::npos);
    p = SamplingParams{};
    p.top_p = INFINITY;
    EXPECT_NE(message_of(p).find("top_p"), std::string::npos);
    p = SamplingParams{};
    p.n_probs = -3;
    EXPECT_NE(message_of(p).find("n_probs"), std::string::npos);
    p = SamplingParams{};
    p.logit_bias = {{10, 1.0f}};
    EXPECT_NE(message_of(p).find("logit_bias"), std::string::npos);
    EXPECT_NE(message_of(SamplingParams{}, 0).find("n_vocab"), std::string::npos);

    Sampler s(SamplingParams{}, 4);
    EXPECT_THROW(s.sample(std::vector<float>(5, 0.0f)), std::invalid_argument);
    EXPECT_THROW(s.accept(4), std::out_of_range);
    EXPECT_THROW(s.accept(-1), std::out_of_range);
}

TEST(Sampler, SoftRangesAreClampedLikeLlamaServer) {
    SamplingParams p;
    p.temperature = -1.0f;
    p.top_k = -5;
    p.top_p = 1.5f;
    p.min_p = -0.5f;
    Sampler s(p, 10);
    EXPECT_EQ(s.params().temperature, 0.0f);
    EXPECT_EQ(s.params().top_k, 0);
    EXPECT_EQ(s.params().top_p, 1.0f);
    EXPECT_EQ(s.params().min_p, 0.0f);
    // min_p above 1 clamps to 1: only the tokens tied with the best survive.
    SamplingParams q = plain_params();
    q.min_p = 3.0f;
    Sampler t(q, 4);
    EXPECT_EQ(kept_tokens(t, {2.0f, 1.0f, 2.0f, 0.0f}), (std::vector<int32_t>{0, 2}));
}

TEST(Sampler, SamplerNamesAndLettersParseLikeLlamaCpp) {
    EXPECT_EQ(sampler_type_from_name("top_k"), SamplerType::top_k);
    EXPECT_EQ(sampler_type_from_name("top-k"), SamplerType::top_k);
    EXPECT_EQ(sampler_type_from_name("topk"), SamplerType::top_k);
    EXPECT_EQ(sampler_type_from_name("TOP_P"), SamplerType::top_p);
    EXPECT_EQ(sampler_type_from_name("nucleus"), SamplerType::top_p);
    EXPECT_EQ(sampler_type_from_name("typ_p"), SamplerType::typical_p);
    EXPECT_EQ(sampler_type_from_name("typ"), SamplerType::typical_p);
    EXPECT_EQ(sampler_type_from_name("temp"), SamplerType::temperature);
    EXPECT_EQ(sampler_type_from_name("top-n-sigma"), SamplerType::top_n_sigma);
    EXPECT_EQ(sampler_type_from_name("penalties"), SamplerType::penalties);
    EXPECT_EQ(sampler_type_from_name("mirostat"), std::nullopt);
    std::string letters;
    for (char c : std::string("edskypmxt")) {
        const auto type = sampler_type_from_char(c);
        ASSERT_TRUE(type.has_value()) << c;
        EXPECT_EQ(sampler_type_from_name(sampler_type_name(*type)), type);
    }
    EXPECT_EQ(sampler_type_from_char('q'), std::nullopt);
}

TEST(Sampler, DefaultChainKeepsWhatAStraightReferenceKeeps) {
    // penalties → top_k 40 → top_p 0.95 → min_p 0.05 → temperature 0.8, written out plainly.
    constexpr int32_t kVocab = 32000;
    SamplingParams p;
    p.seed = 8;
    p.repeat_penalty = 1.3f;
    p.repeat_last_n = 16;
    std::vector<int32_t> history;
    for (int32_t t = 0; t < 16; ++t) history.push_back((t * 7919) % kVocab);
    for (uint32_t row = 0; row < 10; ++row) {
        std::vector<float> logits = random_logits(kVocab, 500 + row, 1.5f);
        for (int32_t j = 0; j < 30; ++j) logits[static_cast<size_t>((j * 1031 + row) % kVocab)] += 8.0f;  // peaks
        for (int32_t t : history) logits[static_cast<size_t>(t)] += 6.0f;  // some history is near the top

        std::vector<double> l(logits.begin(), logits.end());
        std::vector<bool> seen(kVocab, false);
        for (int32_t t : history) seen[static_cast<size_t>(t)] = true;
        for (int32_t t = 0; t < kVocab; ++t) {
            if (!seen[static_cast<size_t>(t)]) continue;
            double& x = l[static_cast<size_t>(t)];
            x = x <= 0 ? x * 1.3f : x / 1.3f;
        }
        std::vector<int32_t> ids(kVocab);
        std::iota(ids.begin(), ids.end(), 0);
        std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
        ids.resize(40);
        double z = 0.0, cum = 0.0;
        for (int32_t t : ids) z += std::exp(l[t] - l[ids[0]]);
        size_t keep = ids.size();
        for (size_t i = 0; i < ids.size(); ++i) {
            cum += std::exp(l[ids[i]] - l[ids[0]]) / z;
            if (cum >= 0.95) {
                keep = i + 1;
                break;
            }
        }
        ids.resize(keep);
        const double min_logit = l[ids[0]] + std::log(0.05);
        ids.erase(std::remove_if(ids.begin() + 1, ids.end(), [&](int32_t t) { return l[t] < min_logit; }), ids.end());
        double zt = 0.0;
        for (int32_t t : ids) zt += std::exp((l[t] - l[ids[0]]) / 0.8);

        Sampler s(p, kVocab);
        for (int32_t t : history) s.accept(t);
        s.sample(logits);
        const auto probs = s.post_sampling_probs(100);
        ASSERT_EQ(probs.size(), ids.size()) << "row " << row;
        for (size_t i = 0; i < ids.size(); ++i) {
            EXPECT_EQ(probs[i].token, ids[i]) << "row " << row << " rank " << i;
            EXPECT_NEAR(probs[i].prob, std::exp((l[ids[i]] - l[ids[0]]) / 0.8) / zt, 1e-5);
        }
    }
}

TEST(Sampler, DefaultChainOnAFullVocabularyStaysInTheTopK) {
    constexpr int32_t kVocab = 151936;
    SamplingParams p;
    p.seed = 3;
    p.repeat_penalty = 1.1f;
    Sampler s(p, kVocab);
    const std::vector<float> logits = random_logits(kVocab, 21, 2.0f);
    std::vector<float> sorted = logits;
    // Penalties only lower logits, so a token in the penalized top 40 ranks at most 40 + 64
    // in the raw logits.
    std::nth_element(sorted.begin(), sorted.begin() + 103, sorted.end(), std::greater<float>());
    const float kth = sorted[103];
    for (int32_t t = 0; t < 64; ++t) s.accept(t * 17);  // a prompt
    constexpr int kSteps = 200;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kSteps; ++i) {
        const int32_t token = s.sample(logits);
        EXPECT_GE(logits[static_cast<size_t>(token)], kth);
        s.accept(token);
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    std::printf("default chain, n_vocab %d: %.1f us per token\n", kVocab, us / kSteps);
}

}  // namespace
}  // namespace moeserve
