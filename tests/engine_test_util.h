// Shared pieces of the engine tests on the fixture models: engine options
// for a fixture file, prompt tokens from a golden, a logits comparison, and
// evaluating two sequences interleaved in one batch.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "golden.h"

namespace moeserve::test {

// Options for models/<stem>-<weights>.gguf with `kv` for both cache types.
inline EngineOptions fixture_engine_options(const std::string& stem, const std::string& weights, const std::string& kv,
                                            int n_seq, int64_t n_ubatch = 512) {
    EngineOptions opt;
    opt.model_path = fixture("models/" + stem + "-" + weights + ".gguf").string();
    opt.n_threads = 2;
    opt.n_ctx = 512;
    opt.n_seq = n_seq;
    opt.n_ubatch = n_ubatch;
    opt.type_k = opt.type_v = parse_cache_type(kv);
    return opt;
}

// n tokens of the stem's F16/f16 golden, from `offset`.
inline std::vector<int32_t> golden_tokens(const std::string& stem, size_t n, size_t offset = 0) {
    Golden g = load_golden(stem + "-f16.kv-f16");
    return std::vector<int32_t>(g.tokens.begin() + offset, g.tokens.begin() + offset + n);
}

// Two logits dumps of the same positions agree: mean KL <= max_kl, the same
// top-1 at every decisive position and, when max_abs > 0, no logit further apart.
inline void expect_logits_close(const std::vector<float>& a, const std::vector<float>& b, int64_t n_vocab,
                                double max_kl, float max_abs = 0.0f) {
    ASSERT_EQ(a.size(), b.size());
    auto m = compare_logits(a.data(), b.data(), static_cast<int64_t>(a.size()) / n_vocab, n_vocab);
    EXPECT_LE(m.mean_kl, max_kl) << "max KL " << m.max_kl;
    EXPECT_EQ(m.top1_decisive, 1.0);
    if (max_abs > 0.0f) {
        float worst = 0;
        for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
        EXPECT_LE(worst, max_abs);
    }
}

// Evaluates sequences 0 (tokens a) and 1 (tokens b) in one batch, their
// tokens interleaved so the attention rows of the two mix within the batch,
// and returns each sequence's logits.
inline std::pair<std::vector<float>, std::vector<float>> eval_interleaved(Engine& engine, const std::vector<int32_t>& a,
                                                                          const std::vector<int32_t>& b) {
    Batch batch;
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        if (i < a.size()) batch.add(a[i], static_cast<int32_t>(i), 0, true);
        if (i < b.size()) batch.add(b[i], static_cast<int32_t>(i), 1, true);
    }
    std::vector<float> out = engine.model().forward(batch, engine.cache());
    const int64_t V = engine.n_vocab();
    std::pair<std::vector<float>, std::vector<float>> split;
    for (size_t i = 0; i < batch.size(); ++i) {
        auto& dst = batch.seq_ids[i] == 0 ? split.first : split.second;
        dst.insert(dst.end(), out.begin() + i * V, out.begin() + (i + 1) * V);
    }
    return split;
}

}  // namespace moeserve::test

namespace moeserve::test {

// Greedy decoding one token at a time from a golden's prompt, as llama.cpp
// made the golden: the tokens must agree until a step where the golden's
// top-2 margin is below 0.05 (a legitimate near-tie). Returns how many
// generated tokens matched.
inline size_t expect_greedy_continuation(Engine& e, const Golden& g) {
    std::vector<int32_t> prompt(g.tokens.begin(), g.tokens.begin() + g.n_prompt);
    std::vector<float> logits = e.eval(0, prompt, false);
    size_t matched = 0;
    for (size_t i = g.n_prompt; i < g.tokens.size(); ++i) {
        const int32_t ours = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        if (ours != g.tokens[i]) {
            const float* ref = &g.logits[(i - 1) * g.n_vocab];
            std::vector<float> sorted(ref, ref + g.n_vocab);
            std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
            EXPECT_LT(sorted[0] - sorted[1], 0.05f) << "diverged at generated token " << i - g.n_prompt;
            return matched;
        }
        ++matched;
        logits = e.eval(0, std::span<const int32_t>(&g.tokens[i], 1), false);
    }
    return matched;
}

}  // namespace moeserve::test
