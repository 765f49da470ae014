// A norm that writes its output's int8 forms in its own launch
// (rms_norm_rounded, a decode fusion): the forms must be the rounding
// kernel's bytes, and every product that reads them (the int8 matrix-vector
// kernels, the routed experts through their token rows, the tensor-core
// prompt products) must give the same floats, bit for bit, as when it rounds
// its input itself.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_test_util.h"

namespace moeserve::cuda::test {
namespace {

using CudaNormRounding = CudaBlasTest;

template <class T>
std::vector<T> download_n(const T* p, size_t n) {
    std::vector<T> host(n);
    MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
    MOESERVE_CUDA_CHECK(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
}

template <class T>
void expect_same_bytes(const std::vector<T>& got, const std::vector<T>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(T)), 0) << what << " element " << i;
}

// The int8 arrays of n_rows rows of width values of act.
void expect_same_q8(const Q8Rows& got, const Q8Rows& want, GgmlType act, int64_t n_rows, int64_t width) {
    const size_t n = static_cast<size_t>(n_rows * width);
    expect_same_bytes(download_n(got.q, n), download_n(want.q, n), "codes");
    expect_same_bytes(download_n(got.d, n / q8_block(act)), download_n(want.d, n / q8_block(act)), "scales");
    if (act == GgmlType::Q8_K) expect_same_bytes(download_n(got.bsum, n / 16), download_n(want.bsum, n / 16), "sums");
}

TEST_F(CudaNormRounding, int8_forms_are_the_rounding_kernels_bytes) {
    std::mt19937 rng(41);
    for (const bool residual : {false, true}) {
        for (const int64_t n : {int64_t{256}, int64_t{2048}, int64_t{4096}}) {
            for (const int64_t n_rows : {int64_t{1}, int64_t{3}, int64_t{32}}) {
                SCOPED_TRACE(std::string(residual ? "add_rms_norm" : "rms_norm") + ", " + std::to_string(n_rows) +
                             " rows of " + std::to_string(n));
                const std::vector<float> x = normal_floats(n_rows * n, rng, 3.0f);
                const std::vector<float> y = normal_floats(n_rows * n, rng);
                const std::vector<float> w = random_floats(n, rng, 0.5f, 1.5f);
                DeviceArray<float> dx1(x), dx2(x), dy(y), dw(w), out1(n_rows * n), out2(n_rows * n);
                // The plain norm, then the rounding kernel over its output.
                if (residual)
                    add_rms_norm(ctx_, dx1.get(), dy.get(), dw.get(), 1e-6f, n_rows, n, out1.get());
                else
                    rms_norm(ctx_, dx1.get(), dw.get(), 1e-6f, n_rows, n, out1.get());
                Q8Rows k_want = take_q8_rows(ctx_, n_rows, n, GgmlType::Q8_K);
                Q8Rows o_want = take_q8_rows(ctx_, n_rows, n, GgmlType::Q8_0);
                round_rows_f32(ctx_, GgmlType::Q8_K, out1.get(), n, 0, n_rows, n, 1, nullptr, &k_want);
                round_rows_f32(ctx_, GgmlType::Q8_0, out1.get(), n, 0, n_rows, n, 1, nullptr, &o_want);
                // The fused launch.
                const NormRows r = rms_norm_rounded(ctx_, dx2.get(), residual ? dy.get() : nullptr, dw.get(), 1e-6f,
                                                    n_rows, n, out2.get());
                ASSERT_EQ(r.rows, out2.get());
                expect_same_bytes(out2.download(), out1.download(), "norm output");
                expect_same_bytes(dx2.download(), dx1.download(), "residual sum");
                expect_same_q8(r.q8k, k_want, GgmlType::Q8_K, n_rows, n);
                expect_same_q8(r.q80, o_want, GgmlType::Q8_0, n_rows, n);
                EXPECT_EQ(r.find(out2.get(), n_rows, n, GgmlType::Q8_K), &r.q8k);
                EXPECT_EQ(r.find(out2.get(), n_rows, n, GgmlType::Q8_0), &r.q80);
                EXPECT_EQ(r.find(out1.get(), n_rows, n, GgmlType::Q8_K), nullptr);  // other rows
                EXPECT_EQ(r.find(out2.get(), n_rows, n, GgmlType::Q8_1), nullptr);  // no int8 form
                finish();
            }
        }
    }
}

// Rows with no int8 form (not whole 256s) or too long for the kernel's
// registers get the plain norm and no forms.
TEST_F(CudaNormRounding, other_widths_get_the_plain_norm) {
    std::mt19937 rng(42);
    for (const int64_t n : {int64_t{2688}, int64_t{8192}}) {
        SCOPED_TRACE(std::to_string(n) + " values a row");
        const std::vector<float> x = normal_floats(2 * n, rng);
        const std::vector<float> w = random_floats(n, rng, 0.5f, 1.5f);
        DeviceArray<float> dx(x), dw(w), out1(2 * n), out2(2 * n);
        rms_norm(ctx_, dx.get(), dw.get(), 1e-6f, 2, n, out1.get());
        const NormRows r = rms_norm_rounded(ctx_, dx.get(), nullptr, dw.get(), 1e-6f, 2, n, out2.get());
        EXPECT_EQ(r.rows, nullptr);
        EXPECT_EQ(r.find(out2.get(), 2, n, GgmlType::Q8_K), nullptr);
        expect_same_bytes(out2.download(), out1.download(), "norm output");
        finish();
    }
}

// A norm's output and its forms, as the backend makes them before a product.
struct Normed {
    std::unique_ptr<DeviceArray<float>> out;
    NormRows rows;
};

// Overwrites the norm's int8 codes (not its rows): a product that reads the
// forms then gives other floats, one that rounds the rows itself does not.
void spoil_forms(const Normed& in, int64_t n_rows, int64_t n) {
    MOESERVE_CUDA_CHECK(cudaMemset(in.rows.q8k.q, 1, static_cast<size_t>(n_rows * n)));
    MOESERVE_CUDA_CHECK(cudaMemset(in.rows.q80.q, 1, static_cast<size_t>(n_rows * n)));
}

Normed normed_input(Context& ctx, int64_t n_rows, int64_t n, std::mt19937& rng) {
    DeviceArray<float> x(normal_floats(n_rows * n, rng, 2.0f)), w(random_floats(n, rng, 0.5f, 1.5f));
    Normed r;
    r.out = std::make_unique<DeviceArray<float>>(n_rows * n);
    r.rows = rms_norm_rounded(ctx, x.get(), nullptr, w.get(), 1e-6f, n_rows, n, r.out->get());
    MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // x and w go out of scope
    return r;
}

TEST_F(CudaNormRounding, projections_give_the_same_floats) {
    std::mt19937 rng(43);
    const int64_t n = 512;
    // Q4_K and Q6_K read q8_K, Q8_0 q8_0 (int8 kernels); IQ4_XS reads q8_K in float (rounded by the product).
    const TestWeight wk = make_test_weight(GgmlType::Q4_K, n, 96, 1, rng);
    const TestWeight w6 = make_test_weight(GgmlType::Q6_K, n, 64, 1, rng);
    const TestWeight w8 = make_test_weight(GgmlType::Q8_0, n, 80, 1, rng);
    const TestWeight wi = make_test_weight(GgmlType::IQ4_XS, n, 48, 1, rng);
    for (const int64_t n_tokens : {int64_t{1}, int64_t{5}, int64_t{16}, int64_t{32}}) {  // 32: prompt products
        SCOPED_TRACE(std::to_string(n_tokens) + " tokens");
        const Normed in = normed_input(ctx_, n_tokens, n, rng);
        auto run = [&](const NormRows* norm) {
            std::vector<std::unique_ptr<DeviceArray<float>>> ys;
            std::vector<DeviceProjection> ps;
            for (const TestWeight* w : {&wk, &w6, &w8, &wi}) {
                ys.push_back(std::make_unique<DeviceArray<float>>(n_tokens * w->device.ne[1]));
                ps.push_back({w->device, ys.back()->get()});
            }
            matmul_shared_input(ctx_, in.out->get(), n_tokens, ps, norm);
            std::vector<std::vector<float>> out;
            for (auto& y : ys) out.push_back(y->download());
            // One product alone too.
            DeviceArray<float> y1(n_tokens * wk.device.ne[1]);
            matmul(ctx_, wk.device, in.out->get(), n_tokens, y1.get(), 0, norm);
            out.push_back(y1.download());
            return out;
        };
        const auto plain = run(nullptr), fused = run(&in.rows);
        for (size_t i = 0; i < plain.size(); ++i) expect_same_bytes(fused[i], plain[i], "product output");
        // The forms were what the int8 products read: spoiled, the Q4_K/Q6_K/Q8_0 outputs change, IQ4_XS's not.
        if (matvec_int8_supports(GgmlType::Q4_K)) {
            spoil_forms(in, n_tokens, n);
            const auto spoiled = run(&in.rows);
            for (size_t i : {size_t{0}, size_t{1}, size_t{2}, size_t{4}}) EXPECT_NE(spoiled[i], plain[i]) << i;
            expect_same_bytes(spoiled[3], plain[3], "IQ4_XS output (floats, rounded by the product)");
        }
        finish();
    }
}

TEST_F(CudaNormRounding, routed_and_dense_ffns_give_the_same_floats) {
    std::mt19937 rng(44);
    const int64_t n = 256, n_ff = 256;
    struct Case {
        const char* name;
        GgmlType gate, up, down;
        ExpertActivation act;
    };
    for (const Case& c :
         {Case{"Q4_K, SwiGLU", GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q6_K, ExpertActivation::SwiGlu},
          Case{"gate Q4_K, up Q5_K", GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, ExpertActivation::SwiGlu},
          Case{"Q8_0, ReLU2", GgmlType::F32, GgmlType::Q8_0, GgmlType::Q5_0, ExpertActivation::ReluSquared}}) {
        const bool gated = c.act == ExpertActivation::SwiGlu;
        const TestWeight router = make_test_weight(GgmlType::F32, n, 8, 1, rng, 0.05f, "router");
        TestWeight gate, dgate;
        if (gated) gate = make_test_weight(c.gate, n, n_ff, 8, rng, 0.05f, "gate_exps");
        const TestWeight up = make_test_weight(c.up, n, n_ff, 8, rng, 0.05f, "up_exps");
        const TestWeight down = make_test_weight(c.down, n_ff, n, 8, rng, 0.05f, "down_exps");
        if (gated) dgate = make_test_weight(c.gate, n, n_ff, 1, rng);
        const TestWeight dup = make_test_weight(c.up, n, n_ff, 1, rng);
        const TestWeight ddown = make_test_weight(c.down, n_ff, n, 1, rng);
        MoeParams p;
        p.n_expert = 8, p.n_expert_used = 2, p.activation = c.act;
        const Weight no_gate;
        for (const int64_t n_tokens : {int64_t{1}, int64_t{5}, int64_t{20}}) {
            SCOPED_TRACE(std::string(c.name) + ", " + std::to_string(n_tokens) + " tokens");
            const Normed in = normed_input(ctx_, n_tokens, n, rng);
            const std::vector<float> out0 = normal_floats(n_tokens * n, rng);
            auto run = [&](const NormRows* norm) {
                DeviceArray<float> moe(out0), dense(n_tokens * n);
                moe_ffn(ctx_, in.out->get(), n_tokens, router.device, gated ? gate.device : no_gate, up.device,
                        down.device, p, moe.get(), norm);
                dense_ffn(ctx_, in.out->get(), n_tokens, gated ? dgate.device : no_gate, dup.device, ddown.device,
                          c.act, dense.get(), norm);
                return std::pair(moe.download(), dense.download());
            };
            const auto plain = run(nullptr), fused = run(&in.rows);
            expect_same_bytes(fused.first, plain.first, "moe_ffn output");
            expect_same_bytes(fused.second, plain.second, "dense_ffn output");
            // The forms were what the experts (through the fused routing's row index) and the dense FFN read.
            if (matvec_int8_supports(c.up) && decode_fusions()) {
                spoil_forms(in, n_tokens, n);
                const auto spoiled = run(&in.rows);
                EXPECT_NE(spoiled.first, plain.first) << "moe_ffn did not read the forms";
                EXPECT_NE(spoiled.second, plain.second) << "dense_ffn did not read the forms";
            }
            finish();
        }
    }
}

}  // namespace
}  // namespace moeserve::cuda::test
