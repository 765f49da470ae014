// Feed-forward blocks: dense gated/non-gated FFNs and the routed-expert MoE
// block (llama.cpp's build_moe_ffn, spec architectures §1.8). Each expert's
// weights are read once per batch for all the tokens routed to it.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// gate := act(gate, up) over n values.
void apply_activation(ExpertActivation act, float* gate, const float* up, int64_t n) {
    if (act == ExpertActivation::SwiGlu) {
        for (int64_t i = 0; i < n; ++i) gate[i] = silu(gate[i]) * up[i];
    } else {  // ReLU², non-gated: the "gate" buffer holds W_up·x
        for (int64_t i = 0; i < n; ++i) {
            const float r = std::max(gate[i], 0.0f);
            gate[i] = r * r;
        }
    }
}

struct Route {
    int expert;
    float weight;
};

// Gating, selection and weights for one token's router logits (spec §1.8 steps 2-8).
void route_token(const float* logits, const MoeParams& p, Route* out, std::vector<float>& prob,
                 std::vector<int>& order) {
    const int n = p.n_expert;
    prob.assign(logits, logits + n);
    if (p.gating == GatingFunc::Softmax) {
        const float mx = *std::max_element(prob.begin(), prob.end());
        double sum = 0.0;
        for (float& x : prob) sum += (x = std::exp(x - mx));
        for (float& x : prob) x = static_cast<float>(x / sum);
    } else {
        for (float& x : prob) x = 1.0f / (1.0f + std::exp(-x));
    }
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    auto sel = [&](int e) { return p.selection_bias ? prob[e] + p.selection_bias[e] : prob[e]; };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sel(a) > sel(b); });
    float sum = 0.0f;
    for (int j = 0; j < p.n_expert_used; ++j) {
        out[j] = {order[j], prob[order[j]]};
        sum += out[j].weight;
    }
    if (p.normalize_weights) {
        sum = std::max(sum, 6.103515625e-5f);  // the smallest normal f16, as llama.cpp clamps
        for (int j = 0; j < p.n_expert_used; ++j) out[j].weight /= sum;
    }
    if (p.weights_scale != 0.0f && p.weights_scale != 1.0f)
        for (int j = 0; j < p.n_expert_used; ++j) out[j].weight *= p.weights_scale;
}

}  // namespace

void CpuBackend::dense_ffn(const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
                           ExpertActivation act, float* out) {
    const int64_t n_ff = up.ne[1];
    scratch_.resize(2 * n_tokens * n_ff);
    float* g = scratch_.data();
    float* u = g + n_tokens * n_ff;
    if (gate) {
        matmul(gate, x, n_tokens, g, 0);
        matmul(up, x, n_tokens, u, 0);
    } else {
        matmul(up, x, n_tokens, g, 0);
    }
    apply_activation(act, g, u, n_tokens * n_ff);
    matmul(down, g, n_tokens, out, 0);
}

void CpuBackend::moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps,
                         const Weight& up_exps, const Weight& down_exps, const MoeParams& p, float* out) {
    const int64_t n_embd = up_exps.ne[0], n_ff = up_exps.ne[1];
    const int k = p.n_expert_used;

    // Router logits [n_tokens, n_expert] in f32, then the routes of each token.
    std::vector<float> logits(n_tokens * p.n_expert);
    matmul(router, x, n_tokens, logits.data(), 0);
    std::vector<Route> routes(n_tokens * k);
    {
        std::vector<float> prob;
        std::vector<int> order;
        for (int64_t t = 0; t < n_tokens; ++t) route_token(&logits[t * p.n_expert], p, &routes[t * k], prob, order);
    }

    // Group (token, slot) pairs by expert.
    std::vector<std::vector<int64_t>> by_expert(p.n_expert);  // entries t * k + j
    for (int64_t i = 0; i < n_tokens * k; ++i) by_expert[routes[i].expert].push_back(i);

    const GgmlType in_type = vec_dot_type(up_exps.type);
    const GgmlType down_type = vec_dot_type(down_exps.type);
    const size_t in_row = ggml_row_bytes(in_type, n_embd), down_row = ggml_row_bytes(down_type, n_ff);
    // Expert outputs per (token, slot), summed afterwards in top-k order as llama.cpp does.
    std::vector<float> expert_out(static_cast<size_t>(n_tokens) * k * n_embd);
    std::vector<float> xs, g, u;
    for (int e = 0; e < p.n_expert; ++e) {
        const auto& items = by_expert[e];
        const int64_t m = static_cast<int64_t>(items.size());
        if (m == 0) continue;
        xs.resize(m * n_embd);
        for (int64_t i = 0; i < m; ++i) {
            const float* src = x + (items[i] / k) * n_embd;
            std::copy(src, src + n_embd, xs.begin() + i * n_embd);
        }
        const uint8_t* xq = quantize_activations(in_type, xs.data(), m, n_embd, act_buf_);
        g.resize(m * n_ff);
        u.resize(m * n_ff);
        if (gate_exps) {
            if (vec_dot_type(gate_exps.type) != in_type) {
                const uint8_t* xg = quantize_activations(vec_dot_type(gate_exps.type), xs.data(), m, n_embd, act_buf2_);
                matmul_quantized(gate_exps, e, xg, ggml_row_bytes(vec_dot_type(gate_exps.type), n_embd), m, g.data(),
                                 n_ff);
            } else {
                matmul_quantized(gate_exps, e, xq, in_row, m, g.data(), n_ff);
            }
            matmul_quantized(up_exps, e, xq, in_row, m, u.data(), n_ff);
        } else {
            matmul_quantized(up_exps, e, xq, in_row, m, g.data(), n_ff);
        }
        apply_activation(p.activation, g.data(), u.data(), m * n_ff);
        const uint8_t* hq = quantize_activations(down_type, g.data(), m, n_ff, act_buf2_);
        xs.resize(m * n_embd);  // reuse as the down-projection output
        matmul_quantized(down_exps, e, hq, down_row, m, xs.data(), n_embd);
        for (int64_t i = 0; i < m; ++i)
            std::copy(xs.begin() + i * n_embd, xs.begin() + (i + 1) * n_embd, expert_out.begin() + items[i] * n_embd);
    }

    for (int64_t t = 0; t < n_tokens; ++t) {
        float* o = out + t * n_embd;
        for (int64_t i = 0; i < n_embd; ++i) {
            float sum = expert_out[(t * k) * n_embd + i] * routes[t * k].weight;
            for (int j = 1; j < k; ++j) sum += expert_out[(t * k + j) * n_embd + i] * routes[t * k + j].weight;
            o[i] += sum;
        }
    }
}

}  // namespace moeserve
