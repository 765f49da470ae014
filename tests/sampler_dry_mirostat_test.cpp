// DRY and Mirostat: penalties and mu updates computed by hand from the
// definitions (llama.cpp's llama_sampler_dry / llama_sampler_mirostat{,_v2}),
// breaker matching against a toy and a real vocabulary, determinism per seed,
// and the request fields through the real server.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/sampler_dry.h"
#include "fixtures.h"
#include "server_harness.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

constexpr float kMultiplier = 0.8f;
constexpr float kBase = 1.75f;

// Penalties by token, from a DryPenalty that has seen `history`.
std::map<int32_t, float> dry_penalties(const std::vector<int32_t>& history, size_t window = SIZE_MAX,
                                       std::shared_ptr<const DrySequenceBreakers> breakers = nullptr,
                                       int32_t allowed_length = 2, float multiplier = kMultiplier, float base = kBase) {
    DryPenalty dry(multiplier, base, allowed_length, window, std::move(breakers));
    for (int32_t t : history) dry.accept(t);
    std::map<int32_t, float> out;
    for (const DryTokenPenalty& p : dry.penalties()) out[p.token] = p.penalty;
    return out;
}

// Breakers given directly as (head, tail) pairs.
std::shared_ptr<const DrySequenceBreakers> breakers_of(
    std::initializer_list<std::pair<int32_t, std::vector<int32_t>>> pairs) {
    auto b = std::make_shared<DrySequenceBreakers>();
    for (const auto& [head, tail] : pairs) b->tails_by_head.emplace(head, tail);
    return b;
}

TEST(Dry, RepeatOfLengthThreeLowersTheTokenThatFollowedItByMultiplierTimesBase) {
    // 1 2 3 was followed by 4; the history ends with 1 2 3 again: 4 would make the repeat
    // 4 long. Its length now is 3, so the penalty is 0.8 * 1.75^(3 - 2) = 1.4.
    const auto p = dry_penalties({1, 2, 3, 4, 1, 2, 3});
    ASSERT_EQ(p.size(), 1u);
    EXPECT_FLOAT_EQ(p.at(4), 1.4f);
}

TEST(Dry, PenaltyGrowsWithTheRepeatLength) {
    // 1 2 3 4 was followed by 9: length 4, penalty 0.8 * 1.75^2 = 2.45.
    const auto p = dry_penalties({1, 2, 3, 4, 9, 0, 1, 2, 3, 4});
    ASSERT_EQ(p.size(), 1u);
    EXPECT_FLOAT_EQ(p.at(9), 2.45f);
}

TEST(Dry, RepeatsShorterThanTheAllowedLengthAreFree) {
    // The longest repeat of the end (2 3) is 2 long: 0.8 * 1.75^0 with allowed 2 ...
    EXPECT_FLOAT_EQ(dry_penalties({2, 3, 7, 5, 2, 3}).at(7), 0.8f);
    // ... and nothing with allowed 3.
    EXPECT_TRUE(dry_penalties({2, 3, 7, 5, 2, 3}, SIZE_MAX, nullptr, 3).empty());
    // A history no longer than the allowed length is never penalized.
    EXPECT_TRUE(dry_penalties({5, 5}).empty());
}

TEST(Dry, TheLongestRepeatEachTokenWouldExtendCounts) {
    // 3 follows "1 2" twice: once after "0 1 2" (length 3 matching the end) and once
    // after "1 2" alone (length 2). The longer wins: 0.8 * 1.75.
    const auto p = dry_penalties({0, 1, 2, 3, 5, 1, 2, 3, 6, 0, 1, 2});
    EXPECT_FLOAT_EQ(p.at(3), 1.4f);
}

TEST(Dry, PenaltyLastNLimitsTheSearchWindow) {
    const std::vector<int32_t> history = {1, 2, 3, 4, 1, 2, 3};
    EXPECT_FLOAT_EQ(dry_penalties(history, 7).at(4), 1.4f);
    // The last 6 tokens, 2 3 4 1 2 3: the repeat of the end is 2 3 (length 2).
    EXPECT_FLOAT_EQ(dry_penalties(history, 6).at(4), 0.8f);
    // The last 5, 3 4 1 2 3: only 3 repeats (length 1).
    EXPECT_TRUE(dry_penalties(history, 5).empty());
}

TEST(Dry, ABreakerInsideTheRepeatLimitsItsLength) {
    // Without breakers: 1 2 3 4 repeats (length 4) and 9 followed it.
    const std::vector<int32_t> history = {1, 2, 3, 4, 9, 0, 1, 2, 3, 4};
    EXPECT_FLOAT_EQ(dry_penalties(history).at(9), 2.45f);
    // Token 2 is a breaker: only the 2 tokens after its last occurrence count, 0.8 * 1.75^0.
    EXPECT_FLOAT_EQ(dry_penalties(history, SIZE_MAX, breakers_of({{2, {}}})).at(9), 0.8f);
    // Token 3 is a breaker: one token after it, below the allowed length: no penalty at all.
    EXPECT_TRUE(dry_penalties(history, SIZE_MAX, breakers_of({{3, {}}})).empty());
}

TEST(Dry, AMultiTokenBreakerCountsOnlyWhenItsTailFollowsItsHead) {
    // 1 2 7 8 3 4 was followed by 9 and the history ends with it again (length 6).
    const std::vector<int32_t> history = {1, 2, 7, 8, 3, 4, 9, 1, 2, 7, 8, 3, 4};
    const float full = static_cast<float>(0.8 * std::pow(1.75, 4));
    EXPECT_FLOAT_EQ(dry_penalties(history).at(9), full);
    // Head 7 with tail [8]: the breaker is complete, 3 4 after it: length 2.
    EXPECT_FLOAT_EQ(dry_penalties(history, SIZE_MAX, breakers_of({{7, {8}}})).at(9), 0.8f);
    // Head 7 with tail [5]: 7 is followed by 8, not 5: no breaker, full length.
    EXPECT_FLOAT_EQ(dry_penalties(history, SIZE_MAX, breakers_of({{7, {5}}})).at(9), full);
}

TEST(Dry, ASingleTokenBreakerIsNeverPenalized) {
    // 1 2 3 was followed by 6 (a breaker), and 6 1 2 3 ends the history: 6 would extend
    // a repeat of length 3, but a breaker ends repeats rather than extending them.
    const std::vector<int32_t> history = {1, 2, 3, 6, 1, 2, 3};
    EXPECT_FLOAT_EQ(dry_penalties(history).at(6), 1.4f);
    EXPECT_TRUE(dry_penalties(history, SIZE_MAX, breakers_of({{6, {}}})).empty());
}

TEST(Dry, TheExponentIsCappedSoThePowerStaysFinite) {
    // base 1e10: the cap is int(88.7228391 / ln 1e10) = int(3.85) = 3. A repeat of length 7
    // (exponent 5) is penalized as exponent 3: 1e-30 * 1e30 = 1.
    const auto p = dry_penalties({1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7}, SIZE_MAX, nullptr, 2, 1e-30f, 1e10f);
    EXPECT_NEAR(p.at(8), 1.0f, 1e-5f);
}

// The penalties straight from the definition, quadratic: for every earlier position, the
// longest run ending there that equals the run ending the history, capped by the tokens
// after the most recent single-token breaker.
std::map<int32_t, float> naive_dry_penalties(const std::vector<int32_t>& history, int32_t breaker) {
    const size_t n = history.size();
    size_t limit = n;
    for (size_t i = n; i-- > 0;) {
        if (history[i] == breaker) {
            limit = n - 1 - i;
            break;
        }
    }
    std::map<int32_t, size_t> longest;
    for (size_t end = 0; end + 1 < n; ++end) {  // a run ends at history[end], history[end + 1] follows
        size_t len = 0;
        while (len <= end && history[end - len] == history[n - 1 - len]) ++len;
        len = std::min(len, limit);
        if (len >= 2 && history[end + 1] != breaker) {
            size_t& best = longest[history[end + 1]];
            best = std::max(best, len);
        }
    }
    std::map<int32_t, float> out;
    if (limit < 2) return out;
    for (const auto& [token, len] : longest) {
        out[token] = static_cast<float>(double{kMultiplier} * std::pow(double{kBase}, static_cast<double>(len) - 2.0));
    }
    return out;
}

TEST(Dry, MatchesTheQuadraticDefinitionOnRandomHistories) {
    std::mt19937 rng(2024);
    for (int trial = 0; trial < 300; ++trial) {
        std::uniform_int_distribution<int32_t> token(0, trial % 2 == 0 ? 2 : 4);
        std::vector<int32_t> history(1 + rng() % 60);
        for (int32_t& t : history) t = token(rng);
        const int32_t breaker = trial % 3 == 0 ? 4 : -1;  // -1: none
        const auto breakers = breaker >= 0 ? breakers_of({{breaker, {}}}) : nullptr;
        EXPECT_EQ(dry_penalties(history, SIZE_MAX, breakers), naive_dry_penalties(history, breaker))
            << "trial " << trial;
    }
}

TEST(Dry, ResetForgetsTheHistory) {
    DryPenalty dry(kMultiplier, kBase, 2, SIZE_MAX, nullptr);
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) dry.accept(t);
    EXPECT_EQ(dry.penalties().size(), 1u);
    dry.reset();
    for (int32_t t : {1, 2, 3}) dry.accept(t);
    EXPECT_TRUE(dry.penalties().empty());
}

// A toy vocabulary: each token's text, and a tokenizer that maps each character to the
// token of that single character.
struct ToyVocab {
    std::vector<std::string> pieces;
    DrySequenceBreakers match(const std::vector<std::string>& breakers) const {
        return match_dry_sequence_breakers(
            breakers, static_cast<int32_t>(pieces.size()), [&](int32_t id) { return pieces[static_cast<size_t>(id)]; },
            [&](std::string_view text) {
                std::vector<int32_t> ids;
                for (char c : text) {
                    auto it = std::find(pieces.begin(), pieces.end(), std::string(1, c));
                    ids.push_back(static_cast<int32_t>(it - pieces.begin()));
                }
                return ids;
            });
    }
};

std::vector<std::vector<int32_t>> tails_of(const DrySequenceBreakers& b, int32_t head) {
    std::vector<std::vector<int32_t>> out;
    auto [first, last] = b.tails_by_head.equal_range(head);
    for (auto it = first; it != last; ++it) out.push_back(it->second);
    std::sort(out.begin(), out.end());
    return out;
}

TEST(DryBreakers, TokensContainingABreakerAreSingleTokenBreakers) {
    const ToyVocab v{{"a", "b", "\n", "x:", "hello", "ab", "cab!"}};
    const DrySequenceBreakers b = v.match({"\n", ":", "ab"});
    EXPECT_TRUE(b.is_single_token_breaker(2));  // "\n"
    EXPECT_TRUE(b.is_single_token_breaker(3));  // "x:"
    EXPECT_TRUE(b.is_single_token_breaker(5));  // "ab"
    EXPECT_TRUE(b.is_single_token_breaker(6));  // "cab!"
    EXPECT_FALSE(b.is_single_token_breaker(4));
    EXPECT_TRUE(tails_of(b, 4).empty());  // "hello" starts no breaker
}

TEST(DryBreakers, ATokenEndingWithAPrefixOfABreakerIsAHeadWithTheRestAsItsTail) {
    const ToyVocab v{{"a", "b", "c", "xa", "xab", "bc", "xyzab"}};
    const DrySequenceBreakers b = v.match({"abc"});
    // "a" and "xa" end with "a": the rest "bc" tokenizes (character by character) to b c.
    EXPECT_EQ(tails_of(b, 0), (std::vector<std::vector<int32_t>>{{1, 2}}));
    EXPECT_EQ(tails_of(b, 3), (std::vector<std::vector<int32_t>>{{1, 2}}));
    // "xab" and "xyzab" end with "ab": the rest is "c".
    EXPECT_EQ(tails_of(b, 4), (std::vector<std::vector<int32_t>>{{2}}));
    EXPECT_EQ(tails_of(b, 6), (std::vector<std::vector<int32_t>>{{2}}));
    // "b" and "bc" do not start with the breaker's first byte.
    EXPECT_TRUE(tails_of(b, 1).empty());
    EXPECT_TRUE(tails_of(b, 5).empty());
}

TEST(DryBreakers, EmptyBreakersAreSkippedAndTailsAreCutToTwentyTokens) {
    ToyVocab v{{"a", "b"}};
    const std::string long_breaker = "a" + std::string(30, 'b');
    const DrySequenceBreakers b = v.match({"", long_breaker});
    // "a" starts the breaker; the rest is 30 b's, cut to 20 tokens.
    EXPECT_EQ(tails_of(b, 0), (std::vector<std::vector<int32_t>>{std::vector<int32_t>(20, 1)}));
    EXPECT_EQ(b.tails_by_head.size(), 1u);
}

TEST(DryBreakers, DefaultBreakersOnRealVocabularies) {
    MOESERVE_REQUIRE_FIXTURES();
    // Every default breaker is one byte, so a token is a breaker exactly when its text holds
    // one of them, and no token can hold just a proper prefix of one (no multi-token tails).
    const SamplingParams defaults;
    for (const char* file : {"models/qwen3moe-tiny-s1-f16.gguf", "vocab/ggml-vocab-gpt-2.gguf"}) {
        const Tokenizer tok = Tokenizer::from_file(test::fixture(file).string());
        const DrySequenceBreakers b = match_dry_sequence_breakers(defaults.dry_sequence_breakers, tok);
        size_t n_breakers = 0;
        for (int32_t id = 0; id < static_cast<int32_t>(tok.n_tokens()); ++id) {
            const int32_t one[1] = {id};
            const std::string text = tok.detokenize(one, true);
            const bool holds = text.find_first_of("\n:\"*") != std::string::npos;
            ASSERT_EQ(b.is_single_token_breaker(id), holds) << file << " token " << id << " '" << text << "'";
            n_breakers += holds;
        }
        EXPECT_EQ(b.tails_by_head.size(), n_breakers) << file;
        EXPECT_GT(n_breakers, 3u) << file;
    }
}

// Every filter off, temperature 1: the chain is plain softmax sampling plus DRY.
SamplingParams dry_params(uint32_t seed = 7) {
    SamplingParams p;
    p.seed = seed;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.dry_multiplier = kMultiplier;
    return p;
}

// Final probabilities by token after one sample().
std::vector<double> probs_after(Sampler& s, const std::vector<float>& logits) {
    s.sample(logits);
    std::vector<double> out(logits.size(), 0.0);
    for (const TokenProb& tp : s.post_sampling_probs(logits.size())) out[static_cast<size_t>(tp.token)] = tp.prob;
    return out;
}

TEST(SamplerDry, InTheChainTheRepeatingTokensLogitDropsByThePenalty) {
    const std::vector<float> logits(10, 0.0f);
    Sampler s(dry_params(), 10);
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
    const auto p = probs_after(s, logits);
    // log(p4 / p0) is the difference of their logits: -1.4.
    EXPECT_NEAR(std::log(p[4] / p[0]), -1.4, 1e-5);
    EXPECT_NEAR(p[0], p[9], 1e-7);
}

TEST(SamplerDry, OffWhenNotInTheSamplersListOrWithMultiplierZero) {
    const std::vector<float> logits(10, 0.0f);
    SamplingParams p = dry_params();
    p.samplers = {SamplerType::penalties, SamplerType::temperature};
    Sampler unlisted(p, 10);
    SamplingParams q = dry_params();
    q.dry_multiplier = 0.0f;
    Sampler zero(q, 10);
    for (Sampler* s : {&unlisted, &zero}) {
        for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s->accept(t);
        const auto probs = probs_after(*s, logits);
        EXPECT_NEAR(probs[4], 0.1, 1e-6);
    }
}

TEST(SamplerDry, PenaltyLastNMinusOneUsesTheContextSize) {
    const std::vector<float> logits(10, 0.0f);
    SamplingParams p = dry_params();
    ASSERT_EQ(p.dry_penalty_last_n, -1);
    Sampler s(p, 10, /*n_ctx=*/6);  // the window is 2 3 4 1 2 3
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
    const auto probs = probs_after(s, logits);
    EXPECT_NEAR(std::log(probs[4] / probs[0]), -0.8, 1e-5);
}

TEST(SamplerDry, AfterTopKInACustomOrderOnlyTheSurvivorsArePenalized) {
    // Logits 9 - i: top_k 5 keeps tokens 0..4; DRY then lowers 4 by 1.4.
    std::vector<float> logits;
    for (int i = 0; i < 10; ++i) logits.push_back(9.0f - static_cast<float>(i));
    SamplingParams p = dry_params();
    p.top_k = 5;
    p.samplers = {SamplerType::top_k, SamplerType::dry, SamplerType::temperature};
    Sampler s(p, 10);
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
    const auto probs = probs_after(s, logits);
    EXPECT_NEAR(std::log(probs[4] / probs[0]), (5.0 - 1.4) - 9.0, 1e-5);
    EXPECT_EQ(probs[5], 0.0);
}

TEST(SamplerDry, GreedyPicksTheBestTokenAfterThePenalty) {
    // Token 4 leads by 1.0, but would extend the repeat and loses 1.4.
    std::vector<float> logits(10, 0.0f);
    logits[4] = 1.0f;
    SamplingParams p = dry_params();
    p.temperature = 0.0f;
    Sampler s(p, 10);
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
    EXPECT_EQ(s.sample(logits), 0);
    // Without the repeat, 4 wins.
    Sampler fresh(p, 10);
    EXPECT_EQ(fresh.sample(logits), 4);
}

TEST(SamplerDry, BreakersFromTheParamsLimitTheRepeat) {
    const std::vector<float> logits(10, 0.0f);
    SamplingParams p = dry_params();
    p.dry_breakers = breakers_of({{2, {}}});
    Sampler s(p, 10);
    for (int32_t t : {1, 2, 3, 4, 9, 0, 1, 2, 3, 4}) s.accept(t);
    const auto probs = probs_after(s, logits);
    EXPECT_NEAR(std::log(probs[9] / probs[0]), -0.8, 1e-5);
}

TEST(SamplerDry, ResetForgetsTheHistory) {
    const std::vector<float> logits(10, 0.0f);
    Sampler s(dry_params(), 10);
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
    s.reset();
    const auto probs = probs_after(s, logits);
    EXPECT_NEAR(probs[4], 0.1, 1e-6);
}

TEST(SamplerDry, InvalidParametersThrowNamingTheParameter) {
    SamplingParams p = dry_params();
    p.dry_penalty_last_n = -2;
    try {
        Sampler s(p, 10);
        FAIL() << "expected std::invalid_argument";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("dry_penalty_last_n"), std::string::npos) << e.what();
    }
    SamplingParams q = dry_params();
    q.dry_base = INFINITY;
    EXPECT_THROW(Sampler(q, 10), std::invalid_argument);
}

// Logits whose softmax is exactly probs.
std::vector<float> logits_of(const std::vector<double>& probs) {
    std::vector<float> out;
    for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
    return out;
}

SamplingParams mirostat_params(int version, float tau, uint32_t seed = 11) {
    SamplingParams p;
    p.seed = seed;
    p.temperature = 1.0f;
    p.mirostat = version;
    p.mirostat_tau = tau;
    p.mirostat_eta = 0.1f;
    return p;
}

TEST(Mirostat, V2MuStartsAtTwiceTauAndMovesByEtaTimesTheSurpriseError) {
    // p = 1/2, 1/4, 1/8, 1/8: surprises 1, 2, 3, 3 bits, all below mu = 10, so nothing is cut
    // and the sampled token keeps its probability.
    const std::vector<double> probs = {0.5, 0.25, 0.125, 0.125};
    const double surprise[] = {1.0, 2.0, 3.0, 3.0};
    Sampler s(mirostat_params(2, 5.0f), 4);
    EXPECT_FLOAT_EQ(s.mirostat_mu(), 10.0f);
    const int32_t t = s.sample(logits_of(probs));
    EXPECT_NEAR(s.sampled_prob(), probs[static_cast<size_t>(t)], 1e-6);
    // mu -= eta * (surprise - tau)
    EXPECT_NEAR(s.mirostat_mu(), 10.0 - 0.1 * (surprise[t] - 5.0), 1e-5);
}

TEST(Mirostat, V2CutsTokensMoreSurprisingThanMuUntilMuGrows) {
    // tau 0.6: mu = 1.2 keeps only the 1-bit token, whose probability becomes 1 (surprise 0),
    // so each step raises mu by 0.1 * 0.6 = 0.06. The 2-bit token joins once mu >= 2, after
    // 14 steps (1.2 + 14 * 0.06 = 2.04).
    const auto logits = logits_of({0.5, 0.25, 0.125, 0.125});
    Sampler s(mirostat_params(2, 0.6f), 4);
    for (int step = 0; step < 14; ++step) {
        ASSERT_EQ(s.sample(logits), 0) << "step " << step;
        EXPECT_FLOAT_EQ(s.sampled_prob(), 1.0f);
        EXPECT_EQ(s.post_sampling_probs(4).size(), 1u);
        EXPECT_NEAR(s.mirostat_mu(), 1.2 + 0.06 * (step + 1), 1e-5);
    }
    s.sample(logits);
    const auto kept = s.post_sampling_probs(4);
    ASSERT_EQ(kept.size(), 2u);  // 1/2 and 1/4, renormalized to 2/3 and 1/3
    EXPECT_NEAR(kept[0].prob, 2.0 / 3.0, 1e-6);
    EXPECT_NEAR(kept[1].prob, 1.0 / 3.0, 1e-6);
    s.reset();
    EXPECT_FLOAT_EQ(s.mirostat_mu(), 1.2f);
}

TEST(Mirostat, V2DrawsLikeDiscreteDistributionSeededWithTheSeed) {
    // With mu far above every surprise nothing is cut; each token is one draw of
    // std::discrete_distribution over the probabilities, from std::mt19937(seed).
    const std::vector<double> probs = {0.5, 0.25, 0.125, 0.125};
    const uint32_t seed = 4242;
    Sampler s(mirostat_params(2, 50.0f, seed), 4);
    std::mt19937 rng(seed);
    std::discrete_distribution<int> dist(probs.begin(), probs.end());
    for (int i = 0; i < 200; ++i) ASSERT_EQ(s.sample(logits_of(probs)), dist(rng)) << "draw " << i;
}

TEST(Mirostat, V1KeepsTheKTokensTheZipfEstimateGives) {
    // p_i proportional to 1/(i+1)^2 over 200 tokens: the estimated exponent s is 2, so with
    // mu = 2 * tau = 6, k = ((s - 1) * 2^mu / (1 - N^(1 - s)))^(1/s) = sqrt(64 / 0.995) = 8.02.
    const size_t n = 200;
    std::vector<double> probs;
    double z = 0.0;
    for (size_t i = 0; i < n; ++i) z += 1.0 / double((i + 1) * (i + 1));
    for (size_t i = 0; i < n; ++i) probs.push_back(1.0 / double((i + 1) * (i + 1)) / z);
    Sampler s(mirostat_params(1, 3.0f), static_cast<int32_t>(n));
    const int32_t t = s.sample(logits_of(probs));
    const auto kept = s.post_sampling_probs(n);
    ASSERT_EQ(kept.size(), 8u);
    double z8 = 0.0;
    for (size_t i = 0; i < 8; ++i) z8 += 1.0 / double((i + 1) * (i + 1));
    for (size_t i = 0; i < 8; ++i) {
        EXPECT_EQ(kept[i].token, static_cast<int32_t>(i));
        EXPECT_NEAR(kept[i].prob, 1.0 / double((i + 1) * (i + 1)) / z8, 1e-5);
    }
    ASSERT_LT(t, 8);
    const double p_t = 1.0 / double((t + 1) * (t + 1)) / z8;
    EXPECT_NEAR(s.mirostat_mu(), 6.0 - 0.1 * (-std::log2(p_t) - 3.0), 1e-4);
}

TEST(Mirostat, ReplacesTheSamplersButKeepsLogitBiasAndTemperature) {
    const auto logits = logits_of({0.5, 0.25, 0.125, 0.125});
    // top_k 1 and a presence penalty on token 0 would change the outcome if they ran.
    SamplingParams p = mirostat_params(2, 50.0f);
    p.top_k = 1;
    p.presence_penalty = 100.0f;
    Sampler s(p, 4);
    s.accept(0);
    s.sample(logits);
    const auto kept = s.post_sampling_probs(4);
    ASSERT_EQ(kept.size(), 4u);
    EXPECT_EQ(kept[0].token, 0);
    EXPECT_NEAR(kept[0].prob, 0.5, 1e-6);
    // logit_bias still applies: token 0 banned.
    SamplingParams q = mirostat_params(2, 50.0f);
    q.logit_bias = {{0, -INFINITY}};
    Sampler banned(q, 4);
    for (int i = 0; i < 50; ++i) EXPECT_NE(banned.sample(logits), 0);
    // Temperature 0 runs before Mirostat: only the argmax keeps a probability.
    SamplingParams g = mirostat_params(1, 5.0f);
    g.temperature = 0.0f;
    Sampler greedy(g, 4);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(greedy.sample(logits), 0);
}

TEST(Mirostat, SameSeedGivesTheSameTokensAndMu) {
    // Zipf with exponent 1.5 over 50 tokens: Mirostat 1 keeps all of them at the start
    // (k = (0.5 * 2^10 / (1 - 50^-0.5))^(1/1.5) = 71), Mirostat 2 too (the rarest is 9.7 bits).
    std::vector<double> probs;
    for (int i = 0; i < 50; ++i) probs.push_back(std::pow(i + 1.0, -1.5));
    for (int version : {1, 2}) {
        Sampler a(mirostat_params(version, 5.0f, 99), 50), b(mirostat_params(version, 5.0f, 99), 50),
            c(mirostat_params(version, 5.0f, 100), 50);
        std::vector<int32_t> ta, tb, tc;
        for (int i = 0; i < 64; ++i) {
            ta.push_back(a.sample(logits_of(probs)));
            tb.push_back(b.sample(logits_of(probs)));
            tc.push_back(c.sample(logits_of(probs)));
        }
        EXPECT_EQ(ta, tb) << "mirostat " << version;
        EXPECT_EQ(a.mirostat_mu(), b.mirostat_mu());
        EXPECT_NE(ta, tc) << "mirostat " << version;
    }
}

TEST(Mirostat, VersionIsClampedToZeroToTwo) {
    SamplingParams p = mirostat_params(7, 5.0f);
    Sampler s(p, 4);
    EXPECT_EQ(s.params().mirostat, 2);
    p.mirostat = -3;
    Sampler off(p, 4);
    EXPECT_EQ(off.params().mirostat, 0);
}

// The request fields through the real server on the tiny Qwen3-MoE fixture.
TEST(SamplerServerE2E, DryAndMirostatFieldsAreAcceptedAndEchoed) {
    MOESERVE_REQUIRE_FIXTURES();
    test::Server server(
        {"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "1", "-c", "512", "-t", "2"});
    ASSERT_TRUE(server.ready()) << server.log();

    auto r = test::curl(server.url("/completion"), "POST",
                        R"({"prompt":"Hello Hello Hello","n_predict":8,"seed":3,"dry_multiplier":0.8,
                            "dry_base":2.0,"dry_allowed_length":3,"dry_penalty_last_n":64,
                            "dry_sequence_breakers":["\n","##"],"samplers":["penalties","dry","temperature"]})");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto gs = r.json_body()["generation_settings"];
    EXPECT_FLOAT_EQ(gs["dry_multiplier"].get<float>(), 0.8f);
    EXPECT_FLOAT_EQ(gs["dry_base"].get<float>(), 2.0f);
    EXPECT_EQ(gs["dry_allowed_length"], 3);
    EXPECT_EQ(gs["dry_penalty_last_n"], 64);
    EXPECT_EQ(gs["dry_sequence_breakers"], test::json::parse(R"(["\n","##"])"));
    EXPECT_EQ(gs["samplers"], test::json::parse(R"(["penalties","dry","temperature"])"));
    EXPECT_EQ(gs["mirostat"], 0);

    // dry_base below 1 falls back to the default; mirostat is clamped into 0..2.
    r = test::curl(server.url("/completion"), "POST",
                   R"({"prompt":"Hi","n_predict":4,"seed":3,"dry_base":0.5,"mirostat":5,"mirostat_tau":3.5,
                       "mirostat_eta":0.25})");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto gs2 = r.json_body()["generation_settings"];
    EXPECT_FLOAT_EQ(gs2["dry_base"].get<float>(), 1.75f);
    EXPECT_EQ(gs2["mirostat"], 2);
    EXPECT_FLOAT_EQ(gs2["mirostat_tau"].get<float>(), 3.5f);
    EXPECT_FLOAT_EQ(gs2["mirostat_eta"].get<float>(), 0.25f);
    EXPECT_EQ(gs2["dry_sequence_breakers"], test::json::parse(R"(["\n",":","\"","*"])"));

    // The same seed and fields give the same text.
    const std::string mirostat_body = R"({"prompt":"Once","n_predict":12,"seed":5,"mirostat":2})";
    const auto a = test::curl(server.url("/completion"), "POST", mirostat_body).json_body();
    const auto b = test::curl(server.url("/completion"), "POST", mirostat_body).json_body();
    EXPECT_EQ(a["content"], b["content"]);

    // Wrong types and hard ranges are 400s naming the field.
    const std::pair<const char*, const char*> bad_fields[] = {
        {"dry_multiplier", R"("x")"},
        {"dry_allowed_length", "1.5"},
        {"dry_penalty_last_n", "-2"},
        {"dry_sequence_breakers", "[]"},
        {"dry_sequence_breakers", R"("\n")"},
        {"dry_sequence_breakers", "[1]"},
        {"mirostat", R"("2")"},
        {"mirostat_tau", "true"},
        {"mirostat_eta", "[0.1]"},
    };
    for (const auto& [field, value] : bad_fields) {
        const std::string body = std::string(R"({"prompt":"Hi",")") + field + "\":" + value + "}";
        const auto bad = test::curl(server.url("/completion"), "POST", body);
        EXPECT_EQ(bad.status, 400) << body;
        EXPECT_NE(bad.body.find(std::string("'") + field + "'"), std::string::npos) << body << " -> " << bad.body;
    }
    // llama.cpp samplers moeserve lacks are refused by name, never skipped.
    const auto infill =
        test::curl(server.url("/completion"), "POST", R"({"prompt":"Hi","samplers":["top_k","infill"]})");
    EXPECT_EQ(infill.status, 400);
    EXPECT_NE(infill.body.find("'infill' is not supported"), std::string::npos) << infill.body;
}

}  // namespace
}  // namespace moeserve
