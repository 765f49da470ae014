// Feed-forward blocks: dense gated/non-gated FFNs and the routed-expert MoE
// block (llama.cpp's build_moe_ffn, spec architectures §1.8). Each expert's
// weights are read once per batch for all the tokens routed to it, and all
// experts of a layer run in one parallel pass per projection.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

inline float silu(float x) {
    return x / (1.0f + std::exp(-x));
}

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
    std::partial_sort(order.begin(), order.begin() + p.n_expert_used, order.end(), [&](int a, int b) {
        return sel(a) > sel(b) || (sel(a) == sel(b) && a < b);  // ties: lower expert id first
    });
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
        const Projection both[] = {{&gate, g}, {&up, u}};
        matmul_shared_input(x, n_tokens, both);
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
    const int64_t n_items = n_tokens * k;  // (token, slot) pairs

    // Router logits [n_tokens, n_expert] in f32, then each token's routes.
    moe_.logits.resize(n_tokens * p.n_expert);
    matmul(router, x, n_tokens, moe_.logits.data(), 0);
    std::vector<Route> routes(n_items);
    for (int64_t t = 0; t < n_tokens; ++t)
        route_token(&moe_.logits[t * p.n_expert], p, &routes[t * k], moe_.prob, moe_.order);

    // Items sorted by expert: slice [start[e], start[e+1]) of the sorted list is expert e's.
    std::vector<int64_t> start(p.n_expert + 1, 0), item_of(n_items);
    for (const Route& r : routes) ++start[r.expert + 1];
    std::partial_sum(start.begin(), start.end(), start.begin());
    {
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t i = 0; i < n_items; ++i) item_of[fill[routes[i].expert]++] = i;
    }

    // xs: the input row of each sorted item [n_items, n_embd], quantized for gate/up.
    const float* xe = p.expert_input ? p.expert_input : x;  // latent MoE: experts read their own input
    moe_.xs.resize(n_items * n_embd);
    for (int64_t s = 0; s < n_items; ++s)
        std::copy(xe + (item_of[s] / k) * n_embd, xe + (item_of[s] / k + 1) * n_embd, moe_.xs.begin() + s * n_embd);
    const GgmlType up_type = vec_dot_type(up_exps.type);
    const GgmlType gate_type = gate_exps ? vec_dot_type(gate_exps.type) : up_type;
    const size_t up_row = ggml_row_bytes(up_type, n_embd), gate_row = ggml_row_bytes(gate_type, n_embd);
    const uint8_t* xq_up = quantize_activations(up_type, moe_.xs.data(), n_items, n_embd, act_buf_);
    const uint8_t* xq_gate = xq_up;
    if (gate_type != up_type) xq_gate = quantize_activations(gate_type, moe_.xs.data(), n_items, n_embd, act_buf2_);

    // gate and up of every active expert in one pass: g, u are [n_items, n_ff].
    moe_.g.resize(n_items * n_ff);
    moe_.u.resize(n_items * n_ff);
    std::vector<MatmulJob> jobs;
    for (int e = 0; e < p.n_expert; ++e) {
        const int64_t m = start[e + 1] - start[e];
        if (m == 0) continue;
        const int64_t s = start[e];
        if (gate_exps) {
            jobs.push_back({&gate_exps, e, xq_gate + s * gate_row, gate_row, m, moe_.g.data() + s * n_ff, n_ff});
            jobs.push_back({&up_exps, e, xq_up + s * up_row, up_row, m, moe_.u.data() + s * n_ff, n_ff});
        } else {
            jobs.push_back({&up_exps, e, xq_up + s * up_row, up_row, m, moe_.g.data() + s * n_ff, n_ff});
        }
    }
    run_matmul_jobs(jobs);
    apply_activation(p.activation, moe_.g.data(), moe_.u.data(), n_items * n_ff);

    // down of every active expert in one pass: results [n_items, n_embd] (reusing xs).
    const GgmlType down_type = vec_dot_type(down_exps.type);
    const size_t down_row = ggml_row_bytes(down_type, n_ff);
    const uint8_t* hq = quantize_activations(down_type, moe_.g.data(), n_items, n_ff, act_buf2_);
    jobs.clear();
    for (int e = 0; e < p.n_expert; ++e) {
        const int64_t m = start[e + 1] - start[e];
        if (m == 0) continue;
        const int64_t s = start[e];
        jobs.push_back({&down_exps, e, hq + s * down_row, down_row, m, moe_.xs.data() + s * n_embd, n_embd});
    }
    run_matmul_jobs(jobs);

    // out[t] += Σ_j w_j * expert_j(x[t]), summed in top-k order as llama.cpp does.
    std::vector<int64_t> sorted_of(n_items);
    for (int64_t s = 0; s < n_items; ++s) sorted_of[item_of[s]] = s;
    for (int64_t t = 0; t < n_tokens; ++t) {
        float* o = out + t * n_embd;
        const float* first = moe_.xs.data() + sorted_of[t * k] * n_embd;
        const float w0 = routes[t * k].weight;
        for (int64_t i = 0; i < n_embd; ++i) {
            float sum = first[i] * w0;
            for (int j = 1; j < k; ++j) sum += moe_.xs[sorted_of[t * k + j] * n_embd + i] * routes[t * k + j].weight;
            o[i] += sum;
        }
    }
}

}  // namespace moeserve
