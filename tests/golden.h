// llama.cpp goldens (../shared/fixtures/models/golden) and the metrics the
// engine issues judge by: mean KL(ref || ours) over positions and top-1
// agreement where the reference's top-2 margin is at least 0.1.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fixtures.h"

namespace moeserve::test {

struct Golden {
    int64_t n_vocab = 0;
    int64_t n_prompt = 0;
    std::vector<int32_t> tokens;
    std::vector<float> logits;  // [tokens, n_vocab]
};

inline Golden load_golden(const std::string& stem) {
    Golden g;
    auto base = fixture("models/golden/" + stem);
    std::ifstream js(base.string() + ".json");
    auto j = nlohmann::json::parse(js);
    g.n_vocab = j["n_vocab"];
    g.n_prompt = j["n_prompt"];
    g.tokens = j["tokens"].get<std::vector<int32_t>>();
    std::ifstream bin(base.string() + ".logits.f32", std::ios::binary);
    g.logits.resize(g.tokens.size() * g.n_vocab);
    bin.read(reinterpret_cast<char*>(g.logits.data()), static_cast<std::streamsize>(g.logits.size() * 4));
    return g;
}

struct LogitAgreement {
    double mean_kl = 0, max_kl = 0;
    double top1_decisive = 1.0;  // agreement where the reference margin >= 0.1
    int64_t positions = 0, decisive = 0;
};

inline std::vector<double> softmax(const float* x, int64_t n) {
    double mx = *std::max_element(x, x + n), sum = 0;
    std::vector<double> p(n);
    for (int64_t i = 0; i < n; ++i) sum += (p[i] = std::exp(x[i] - mx));
    for (auto& v : p) v /= sum;
    return p;
}

inline LogitAgreement compare_logits(const float* ref, const float* ours, int64_t n_pos, int64_t n_vocab) {
    LogitAgreement a;
    int64_t agree = 0;
    double kl_sum = 0;
    for (int64_t p = 0; p < n_pos; ++p) {
        const float* r = ref + p * n_vocab;
        const float* o = ours + p * n_vocab;
        auto pr = softmax(r, n_vocab), po = softmax(o, n_vocab);
        double kl = 0;
        for (int64_t i = 0; i < n_vocab; ++i)
            if (pr[i] > 0) kl += pr[i] * std::log(pr[i] / std::max(po[i], 1e-30));
        kl_sum += kl;
        a.max_kl = std::max(a.max_kl, kl);
        int64_t top_r = std::max_element(r, r + n_vocab) - r, top_o = std::max_element(o, o + n_vocab) - o;
        std::vector<float> sorted(r, r + n_vocab);
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
        if (sorted[0] - sorted[1] >= 0.1f) {
            ++a.decisive;
            agree += top_r == top_o;
        }
    }
    a.positions = n_pos;
    a.mean_kl = kl_sum / std::max<int64_t>(1, n_pos);
    a.top1_decisive = a.decisive ? static_cast<double>(agree) / a.decisive : 1.0;
    return a;
}

}  // namespace moeserve::test
