// GPU moe_ffn and dense_ffn against the CPU backend and a double-precision
// evaluation of the same dequantized weights (routing included).
//
// Tolerances. The GPU rounds each layer's activations as the CPU does for
// the weight type (q8_0 / q8_1 / q8_K / f16), so it is compared with the CPU
// backend (relative RMS error of the increments): the decode path (<= 32
// tokens) sums the same products in another order (~1e-6; bound 5e-5, or
// 2e-3 with Q5_1 weights, whose q8_1 partner the CPU takes with an
// fp16-rounded block sum), the GEMM path further rounds weights and
// activations to f16 (~2.5e-4 per layer; bound 3e-3). Against a double
// evaluation of the same dequantized weights the GPU may not be further off
// than the CPU (0.9-2% after the two layers' q8 rounding) plus the bound.
// Router inputs are redrawn until every token's k-th and (k+1)-th selection
// scores differ by 1e-4 relative, so that rounding cannot flip a choice of
// experts between the backends (logit errors are ~1e-6).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_test_util.h"

namespace moeserve::cuda::test {
namespace {

double silu(double x) {
    return x / (1.0 + std::exp(-x));
}

// h := act(g, u) in double (ReLU²: g is W_up·x).
void activate(ExpertActivation act, std::vector<double>& g, const std::vector<double>& u) {
    for (size_t i = 0; i < g.size(); ++i)
        if (act == ExpertActivation::SwiGlu) {
            g[i] = silu(g[i]) * u[i];
        } else {
            const double r = std::max(g[i], 0.0);
            g[i] = r * r;
        }
}

std::vector<double> matvec(const TestWeight& w, int64_t matrix, const std::vector<double>& x) {
    std::vector<double> y(w.host.ne[1]);
    for (int64_t o = 0; o < w.host.ne[1]; ++o) {
        const float* r = w.row(matrix, o);
        double s = 0;
        for (int64_t i = 0; i < w.host.ne[0]; ++i) s += r[i] * x[i];
        y[o] = s;
    }
    return y;
}

struct Route {
    std::vector<int> experts;
    std::vector<double> weights;
    double margin;  // (k-th score - (k+1)-th score) / |k-th score|
};

Route reference_route(const TestWeight& router, const float* x, const MoeParams& p) {
    const int n = p.n_expert, k = p.n_expert_used;
    std::vector<double> prob = matvec(router, 0, std::vector<double>(x, x + router.host.ne[0]));
    if (p.gating == GatingFunc::Softmax) {
        const double mx = *std::max_element(prob.begin(), prob.end());
        double sum = 0;
        for (double& v : prob) sum += (v = std::exp(v - mx));
        for (double& v : prob) v /= sum;
    } else {
        for (double& v : prob) v = 1.0 / (1.0 + std::exp(-v));
    }
    std::vector<double> sel(prob);
    if (p.selection_bias)
        for (int e = 0; e < n; ++e) sel[e] += p.selection_bias[e];
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sel[a] > sel[b]; });
    Route r;
    r.margin = k < n ? (sel[order[k - 1]] - sel[order[k]]) / std::abs(sel[order[k - 1]]) : 1.0;
    double sum = 0;
    for (int j = 0; j < k; ++j) {
        r.experts.push_back(order[j]);
        r.weights.push_back(prob[order[j]]);
        sum += prob[order[j]];
    }
    for (double& w : r.weights) {
        if (p.normalize_weights) w /= std::max(sum, 6.103515625e-5);
        if (p.weights_scale != 0.0f) w *= p.weights_scale;
    }
    return r;
}

struct MoeCase {
    const char* name;
    int n_expert, n_expert_used;
    GatingFunc gating;
    bool bias, normalize;
    float weights_scale;
    ExpertActivation act;
    GgmlType gate_type, up_type, down_type;  // gate_type F32 + act ReLU²: no gate
    int64_t n_embd, n_ff;
    int64_t n_latent;  // 0: the experts read x; else their own input of this width
};

class CudaFfn : public CudaBlasTest {
  protected:
    void run_moe_case(const MoeCase& c, std::mt19937& rng);
};

// One case's weights, run at 1, 5, 20 (decode path), 77 and 300 tokens (the
// grouped GEMM, or per-expert GEMMs for weights it does not read; at 300
// tokens the 8-expert cases give experts more than one 64-token tile).
void CudaFfn::run_moe_case(const MoeCase& c, std::mt19937& rng) {
    const bool gated = c.act == ExpertActivation::SwiGlu;
    const int64_t n_in = c.n_latent ? c.n_latent : c.n_embd;  // the experts' width
    const TestWeight router = make_test_weight(GgmlType::F32, c.n_embd, c.n_expert, 1, rng, 0.05f, "router");
    TestWeight gate;
    if (gated) gate = make_test_weight(c.gate_type, n_in, c.n_ff, c.n_expert, rng, 0.05f, "gate_exps");
    const TestWeight up = make_test_weight(c.up_type, n_in, c.n_ff, c.n_expert, rng, 0.05f, "up_exps");
    const TestWeight down = make_test_weight(c.down_type, c.n_ff, n_in, c.n_expert, rng, 0.05f, "down_exps");
    const std::vector<float> bias = random_floats(c.n_expert, rng, -0.1f, 0.1f);

    MoeParams p;
    p.n_expert = c.n_expert;
    p.n_expert_used = c.n_expert_used;
    p.gating = c.gating;
    p.normalize_weights = c.normalize;
    p.weights_scale = c.weights_scale;
    p.activation = c.act;
    p.selection_bias = c.bias ? bias.data() : nullptr;

    for (int64_t n_tokens : {1, 5, 20, 77, 300}) {
        SCOPED_TRACE(std::string(c.name) + ", " + std::to_string(n_tokens) + " tokens");
        // Inputs, each token's redrawn until its choice of experts is clear.
        std::vector<float> x(n_tokens * c.n_embd);
        std::vector<Route> routes(n_tokens);
        for (int64_t t = 0; t < n_tokens; ++t) {
            for (int tries = 0;; ++tries) {
                const std::vector<float> row = normal_floats(c.n_embd, rng);
                std::copy(row.begin(), row.end(), x.begin() + t * c.n_embd);
                routes[t] = reference_route(router, &x[t * c.n_embd], p);
                if (routes[t].margin >= 1e-4) break;
                ASSERT_LT(tries, 100) << "no clear routing found";
            }
        }
        const std::vector<float> xe = c.n_latent ? normal_floats(n_tokens * n_in, rng) : x;
        const std::vector<float> out0 = normal_floats(n_tokens * n_in, rng);  // moe_ffn adds into out

        // Double reference.
        std::vector<double> ref(out0.begin(), out0.end());
        for (int64_t t = 0; t < n_tokens; ++t) {
            const std::vector<double> xt(xe.begin() + t * n_in, xe.begin() + (t + 1) * n_in);
            for (int j = 0; j < c.n_expert_used; ++j) {
                const int e = routes[t].experts[j];
                std::vector<double> g = matvec(gated ? gate : up, e, xt);
                std::vector<double> u = gated ? matvec(up, e, xt) : std::vector<double>();
                activate(c.act, g, u);
                const std::vector<double> y = matvec(down, e, g);
                for (int64_t i = 0; i < n_in; ++i) ref[t * n_in + i] += routes[t].weights[j] * y[i];
            }
        }

        // CPU backend.
        std::vector<float> cpu_out(out0);
        const Weight no_gate;
        const auto cpu = make_cpu_backend(1);
        MoeParams cpu_p = p;
        cpu_p.expert_input = c.n_latent ? xe.data() : nullptr;
        cpu->moe_ffn(x.data(), n_tokens, router.host, gated ? gate.host : no_gate, up.host, down.host, cpu_p,
                     cpu_out.data());

        // GPU.
        DeviceArray<float> dx(x), dxe(xe), dbias(bias), dout(out0);
        MoeParams gpu_p = p;
        gpu_p.selection_bias = c.bias ? dbias.get() : nullptr;
        gpu_p.expert_input = c.n_latent ? dxe.get() : nullptr;
        moe_ffn(ctx_, dx.get(), n_tokens, router.device, gated ? gate.device : no_gate, up.device, down.device, gpu_p,
                dout.get());
        const std::vector<float> gpu_out = dout.download();

        // Compare the increments (out - out0): the outputs themselves are mostly out0.
        std::vector<double> ref_inc(ref.size());
        std::vector<float> gpu_inc(ref.size()), cpu_inc(ref.size());
        for (size_t i = 0; i < ref.size(); ++i) {
            ref_inc[i] = ref[i] - out0[i];
            gpu_inc[i] = static_cast<float>(static_cast<double>(gpu_out[i]) - out0[i]);
            cpu_inc[i] = static_cast<float>(static_cast<double>(cpu_out[i]) - out0[i]);
        }
        const bool q8_1_partner = c.up_type == GgmlType::Q5_1 || c.up_type == GgmlType::Q4_1 ||
                                  c.down_type == GgmlType::Q5_1 || c.down_type == GgmlType::Q4_1;
        const double bound = n_tokens <= 32 && !q8_1_partner ? 5e-5 : 3e-3;
        const std::vector<double> cpu_d = to_double(cpu_inc);
        const double gpu_cpu = relative_rms_error(gpu_inc, cpu_d);
        EXPECT_LT(gpu_cpu, bound);
        EXPECT_LT(max_error_over_rms(gpu_inc, cpu_d), 20 * bound);
        const double gpu_err = relative_rms_error(gpu_inc, ref_inc), cpu_err = relative_rms_error(cpu_inc, ref_inc);
        EXPECT_LT(gpu_err, cpu_err + bound) << "cpu error " << cpu_err;
        RecordProperty("gpu_vs_cpu", std::to_string(gpu_cpu));
        finish();
    }
}

// Qwen3-MoE-like (softmax, SwiGLU), Nemotron-like (sigmoid + selection bias,
// ReLU², scaled weights) and latent (Nemotron-3-Super) routing.
constexpr MoeCase kMoeCases[] = {
    {"softmax, 8 experts top 2, K-quants", 8, 2, GatingFunc::Softmax, false, true, 0.0f, ExpertActivation::SwiGlu,
     GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q6_K, 256, 256, 0},
    // Gate and up of different types: the decode path cannot fuse them into one launch.
    {"softmax, 8 experts top 2, gate Q4_K and up Q5_K", 8, 2, GatingFunc::Softmax, false, true, 0.0f,
     ExpertActivation::SwiGlu, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, 256, 256, 0},
    // 256 experts at 20 tokens: the fused routing launch's dynamic shared
    // memory (40 KiB) plus its static part (16 KiB) exceed the default 48 KiB.
    {"softmax, 256 experts top 8, Q8_0", 256, 8, GatingFunc::Softmax, false, true, 0.0f, ExpertActivation::SwiGlu,
     GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0, 256, 64, 0},
    {"softmax, 128 experts top 8, IQ4_XS", 128, 8, GatingFunc::Softmax, false, true, 0.0f, ExpertActivation::SwiGlu,
     GgmlType::IQ4_XS, GgmlType::IQ4_XS, GgmlType::Q8_0, 256, 128, 0},
    {"sigmoid + bias, 128 experts top 8, relu2, scaled", 128, 8, GatingFunc::Sigmoid, true, true, 2.5f,
     ExpertActivation::ReluSquared, GgmlType::F32, GgmlType::Q8_0, GgmlType::Q5_0, 320, 96, 0},
    {"sigmoid + bias, 8 experts top 2, latent input, unnormalized", 8, 2, GatingFunc::Sigmoid, true, false, 1.0f,
     ExpertActivation::ReluSquared, GgmlType::F32, GgmlType::Q4_0, GgmlType::Q8_0, 384, 64, 256},
    // Rows of 264 and 72 values are not whole 32-value steps of the grouped
    // GEMM: large batches take the per-expert cuBLAS path.
    {"softmax, 8 experts top 2, F16 rows of 264 and 72", 8, 2, GatingFunc::Softmax, false, true, 0.0f,
     ExpertActivation::SwiGlu, GgmlType::F16, GgmlType::F16, GgmlType::F16, 264, 72, 0},
};

TEST_F(CudaFfn, moe_ffn_matches_cpu_and_reference) {
    std::mt19937 rng(21);
    for (const MoeCase& c : kMoeCases) run_moe_case(c, rng);
}

TEST_F(CudaFfn, dense_ffn_matches_cpu_and_reference) {
    std::mt19937 rng(22);
    const auto cpu = make_cpu_backend(1);
    struct Case {
        ExpertActivation act;
        GgmlType gate_type, up_type, down_type;
        int64_t n_embd, n_ff;
    };
    for (const Case& c :
         {Case{ExpertActivation::SwiGlu, GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q6_K, 256, 512},
          Case{ExpertActivation::ReluSquared, GgmlType::F32, GgmlType::Q8_0, GgmlType::Q5_1, 320, 96}}) {
        const bool gated = c.act == ExpertActivation::SwiGlu;
        TestWeight gate;
        if (gated) gate = make_test_weight(c.gate_type, c.n_embd, c.n_ff, 1, rng);
        const TestWeight up = make_test_weight(c.up_type, c.n_embd, c.n_ff, 1, rng);
        const TestWeight down = make_test_weight(c.down_type, c.n_ff, c.n_embd, 1, rng);
        const Weight no_gate;
        for (int64_t n_tokens : {1, 7, 64}) {
            SCOPED_TRACE(std::string(gated ? "swiglu" : "relu2") + ", " + std::to_string(n_tokens) + " tokens");
            const std::vector<float> x = normal_floats(n_tokens * c.n_embd, rng);
            std::vector<double> ref(n_tokens * c.n_embd);
            for (int64_t t = 0; t < n_tokens; ++t) {
                const std::vector<double> xt(x.begin() + t * c.n_embd, x.begin() + (t + 1) * c.n_embd);
                std::vector<double> g = matvec(gated ? gate : up, 0, xt);
                std::vector<double> u = gated ? matvec(up, 0, xt) : std::vector<double>();
                activate(c.act, g, u);
                const std::vector<double> y = matvec(down, 0, g);
                std::copy(y.begin(), y.end(), ref.begin() + t * c.n_embd);
            }
            std::vector<float> want(n_tokens * c.n_embd);
            cpu->dense_ffn(x.data(), n_tokens, gated ? gate.host : no_gate, up.host, down.host, c.act, want.data());
            DeviceArray<float> dx(x), dout(n_tokens * c.n_embd);
            dense_ffn(ctx_, dx.get(), n_tokens, gated ? gate.device : no_gate, up.device, down.device, c.act,
                      dout.get());
            const std::vector<float> got = dout.download();
            // Decode path up to 16 tokens, GEMMs beyond (f16 inputs): see the top of the file.
            const bool q8_1_partner = c.down_type == GgmlType::Q5_1 || c.up_type == GgmlType::Q5_1;
            const double bound = n_tokens <= 16 && !q8_1_partner ? 5e-5 : 3e-3;
            const std::vector<double> want_d = to_double(want);
            EXPECT_LT(relative_rms_error(got, want_d), bound);
            EXPECT_LT(max_error_over_rms(got, want_d), 20 * bound);
            const double gpu_err = relative_rms_error(got, ref), cpu_err = relative_rms_error(want, ref);
            EXPECT_LT(gpu_err, cpu_err + bound) << "cpu error " << cpu_err;
            finish();
        }
    }
}

TEST(CudaMoeChecks, rejects_more_experts_per_token_than_experts) {
    // Thrown before any CUDA call, so this runs without a GPU too.
    Context ctx;
    Weight w;
    w.name = "router";
    w.ne = {64, 4, 1, 1};
    MoeParams p;
    p.n_expert = 4;
    p.n_expert_used = 6;
    try {
        moe_ffn(ctx, nullptr, 1, w, w, w, w, p, nullptr);
        FAIL() << "accepted 6 of 4 experts";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("6 experts per token of 4"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace moeserve::cuda::test
