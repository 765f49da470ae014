// GPU elementwise ops against the CPU backend (or, for the ops the CPU
// backend lacks, against plain loops) on random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_op_fixture.h"

namespace moeserve::cuda::test {
namespace {

using CudaElementwise = CudaOpTest;

TEST_F(CudaElementwise, rms_norm_matches_cpu) {
    std::mt19937 rng(1);
    for (int64_t n : {4096, 2048 + 7, 64}) {
        const int64_t rows = 5;
        const auto x = normal_floats(rows * n, rng, 3.0f);
        const auto w = random_floats(n, rng, 0.5f, 1.5f);
        std::vector<float> want(rows * n);
        make_cpu_backend(1)->rms_norm(x.data(), w.data(), 1e-6f, rows, n, want.data());
        DeviceArray<float> dx(x), dw(w), dout(rows * n);
        rms_norm(ctx_, dx.get(), dw.get(), 1e-6f, rows, n, dout.get());
        // Outputs are O(1): float sums of squares in another order differ by ~1e-6 relative.
        EXPECT_LT(max_scaled_error(dout.download(), want), 1e-5) << "n=" << n;
        rms_norm(ctx_, dx.get(), dw.get(), 1e-6f, rows, n, dx.get());  // in place
        EXPECT_LT(max_scaled_error(dx.download(), want), 1e-5) << "in place, n=" << n;
    }
}

// The residual add and the norm after it in one launch: x and out bit for
// bit those of add followed by rms_norm.
TEST_F(CudaElementwise, add_rms_norm_equals_add_then_rms_norm) {
    std::mt19937 rng(3);
    for (int64_t n : {2048, 2688, 100}) {
        const int64_t rows = 7;
        const auto x = normal_floats(rows * n, rng, 3.0f), y = normal_floats(rows * n, rng);
        const auto w = random_floats(n, rng, 0.5f, 1.5f);
        DeviceArray<float> x1(x), x2(x), dy(y), dw(w), out1(rows * n), out2(rows * n);
        add(ctx_, x1.get(), dy.get(), rows * n);
        rms_norm(ctx_, x1.get(), dw.get(), 1e-6f, rows, n, out1.get());
        add_rms_norm(ctx_, x2.get(), dy.get(), dw.get(), 1e-6f, rows, n, out2.get());
        EXPECT_EQ(x2.download(), x1.download()) << "n=" << n;
        EXPECT_EQ(out2.download(), out1.download()) << "n=" << n;
    }
}

struct RopeCase {
    RopeMode mode;
    int head_dim, n_rot;
    bool yarn, freq_factors;
};

// A case's RoPE parameters for the CPU (host) and the GPU (device), with
// random frequency factors when the case has them.
struct RopeSetup {
    RopeParams host, device;
    std::vector<float> ff;
    DeviceArray<float> dff;
    RopeSetup(const RopeCase& c, float freq_base, std::mt19937& rng)
        : ff(c.freq_factors ? random_floats(c.n_rot / 2, rng, 1.0f, 8.0f) : std::vector<float>()),
          dff(std::max<size_t>(ff.size(), 1)) {
        host.mode = c.mode;
        host.n_rot = c.n_rot;
        host.freq_base = freq_base;
        if (c.yarn) {
            host.freq_scale = 0.25f;
            host.ext_factor = 1.0f;
            host.attn_factor = 1.0f;
            host.beta_fast = 32.0f;
            host.beta_slow = 1.0f;
            host.n_ctx_orig = 4096;
        }
        device = host;
        if (!ff.empty()) {
            dff.upload(ff);
            host.freq_factors = ff.data();
            device.freq_factors = dff.get();
        }
    }
};

TEST_F(CudaElementwise, rope_matches_cpu_in_both_modes_with_yarn_and_freq_factors) {
    std::mt19937 rng(2);
    const RopeCase cases[] = {{RopeMode::Neox, 128, 128, false, false}, {RopeMode::Normal, 128, 128, false, false},
                              {RopeMode::Neox, 128, 64, true, false},   {RopeMode::Normal, 64, 64, true, true},
                              {RopeMode::Neox, 64, 32, false, true},    {RopeMode::Neox, 576, 64, true, false}};
    for (const RopeCase& c : cases) {
        const int64_t n_tokens = 9;
        const int n_head = 6;
        // Positions from 0 to near a million: the angle is large and must be reduced accurately.
        std::vector<int32_t> pos = {0, 1, 2, 17, 4095, 32768, 131071, 500000, 999999};
        auto x = normal_floats(n_tokens * n_head * c.head_dim, rng);
        const RopeSetup r(c, c.yarn ? 1000000.0f : 10000.0f, rng);
        DeviceArray<float> dx(x);
        DeviceArray<int32_t> dpos(pos);
        make_cpu_backend(1)->rope(x.data(), n_tokens, n_head, c.head_dim, pos, r.host);
        rope(ctx_, dx.get(), n_tokens, n_head, c.head_dim, dpos.get(), r.device);
        // The GPU repeats the CPU's float operations; only cos/sin may differ in the last bit.
        EXPECT_LT(max_scaled_error(dx.download(), x), 2e-6)
            << "mode " << (c.mode == RopeMode::Neox ? "neox" : "normal") << " head_dim " << c.head_dim << " n_rot "
            << c.n_rot << " yarn " << c.yarn << " freq_factors " << c.freq_factors;
    }
}

// QK-norm and RoPE in one launch against the CPU's rms_norm then rope: the
// same operations but the norm's sum in another order (~1e-7 relative).
TEST_F(CudaElementwise, rms_norm_rope_matches_cpu_norm_then_rope) {
    std::mt19937 rng(4);
    const RopeCase cases[] = {{RopeMode::Neox, 128, 128, false, false},
                              {RopeMode::Normal, 128, 128, false, false},
                              {RopeMode::Neox, 128, 64, true, false},
                              {RopeMode::Normal, 64, 32, false, true},
                              {RopeMode::Neox, 256, 256, true, true}};
    for (const RopeCase& c : cases) {
        const int64_t n_tokens = 5;
        const int n_head = 9;
        std::vector<int32_t> pos = {0, 3, 4095, 131071, 999999};
        auto x = normal_floats(n_tokens * n_head * c.head_dim, rng, 2.0f);
        const auto w = random_floats(c.head_dim, rng, 0.5f, 1.5f);
        const RopeSetup r(c, 1000000.0f, rng);
        DeviceArray<float> dx(x), dw(w);
        DeviceArray<int32_t> dpos(pos);
        auto cpu = make_cpu_backend(1);
        cpu->rms_norm(x.data(), w.data(), 1e-6f, n_tokens * n_head, c.head_dim, x.data());
        cpu->rope(x.data(), n_tokens, n_head, c.head_dim, pos, r.host);
        rms_norm_rope(ctx_, dx.get(), dw.get(), 1e-6f, n_tokens, n_head, c.head_dim, dpos.get(), r.device);
        EXPECT_LT(max_scaled_error(dx.download(), x), 1e-5)
            << "mode " << (c.mode == RopeMode::Neox ? "neox" : "normal") << " head_dim " << c.head_dim << " n_rot "
            << c.n_rot << " yarn " << c.yarn;
    }
}

// q and k in one launch: bit for bit the two rms_norm_rope launches (9 and 3 heads, so the second tensor
// starts in the middle of a block's group of heads).
TEST_F(CudaElementwise, rms_norm_rope_qk_equals_the_two_launches) {
    std::mt19937 rng(5);
    const RopeCase c{RopeMode::Neox, 128, 128, true, false};
    const int64_t n_tokens = 3;
    const int n_q = 9, n_k = 3;
    const std::vector<int32_t> pos = {7, 8, 9};
    const auto q = normal_floats(n_tokens * n_q * c.head_dim, rng, 2.0f);
    const auto k = normal_floats(n_tokens * n_k * c.head_dim, rng, 2.0f);
    const auto wq = random_floats(c.head_dim, rng, 0.5f, 1.5f), wk = random_floats(c.head_dim, rng, 0.5f, 1.5f);
    const RopeSetup r(c, 1000000.0f, rng);
    DeviceArray<float> dq(q), dk(k), dq2(q), dk2(k), dwq(wq), dwk(wk);
    DeviceArray<int32_t> dpos(pos);
    rms_norm_rope(ctx_, dq.get(), dwq.get(), 1e-6f, n_tokens, n_q, c.head_dim, dpos.get(), r.device);
    rms_norm_rope(ctx_, dk.get(), dwk.get(), 1e-6f, n_tokens, n_k, c.head_dim, dpos.get(), r.device);
    rms_norm_rope_qk(ctx_, dq2.get(), dwq.get(), n_q, dk2.get(), dwk.get(), n_k, 1e-6f, n_tokens, c.head_dim,
                     dpos.get(), r.device);
    EXPECT_EQ(dq2.download(), dq.download());
    EXPECT_EQ(dk2.download(), dk.download());
}

TEST_F(CudaElementwise, add_broadcast_copy_gather_fill_do_what_they_say) {
    std::mt19937 rng(3);
    const int64_t rows = 7, n = 1000;
    const auto a = random_floats(rows * n, rng), b = random_floats(rows * n, rng), bias = random_floats(n, rng);
    {
        DeviceArray<float> y(a), x(b);
        add(ctx_, y.get(), x.get(), rows * n);
        const auto got = y.download();
        for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(got[i], a[i] + b[i]) << i;
    }
    {
        DeviceArray<float> y(a), db(bias);
        add_row_broadcast(ctx_, y.get(), db.get(), rows, n);
        const auto got = y.download();
        for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(got[i], a[i] + bias[i % n]) << i;
    }
    {
        // 5 rows of width 300 from a [rows, n] matrix at column 100 into a [5, 400] one at column 50.
        DeviceArray<float> src(a), dst(5 * 400);
        copy_rows(ctx_, dst.get() + 50, 400, src.get() + 100, n, 5, 300);
        const auto got = dst.download();
        for (int r = 0; r < 5; ++r)
            for (int i = 0; i < 400; ++i) {
                const float want = i >= 50 && i < 350 ? a[r * n + 100 + (i - 50)] : 0.0f;
                ASSERT_EQ(got[r * 400 + i], want) << r << "," << i;
            }
    }
    {
        const std::vector<int64_t> idx = {6, 0, 3, 3, 1};
        DeviceArray<float> src(a), dst(idx.size() * n);
        DeviceArray<int64_t> didx(idx);
        gather_rows(ctx_, dst.get(), src.get(), n, didx.get(), static_cast<int64_t>(idx.size()));
        const auto got = dst.download();
        for (size_t r = 0; r < idx.size(); ++r)
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[r * n + i], a[idx[r] * n + i]) << r << "," << i;
    }
    {
        DeviceArray<float> y(a);
        fill(ctx_, y.get(), -2.5f, rows * n - 3);
        const auto got = y.download();
        for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(got[i], i < rows * n - 3 ? -2.5f : a[i]) << i;
    }
}

TEST_F(CudaElementwise, gated_group_norm_matches_cpu) {
    std::mt19937 rng(4);
    const int64_t rows = 6, n = 4096, z_stride = 4096 + 4096 + 33;  // z inside a wider projection row
    const int n_group = 8;
    auto y = normal_floats(rows * n, rng);
    const auto z = normal_floats(rows * z_stride, rng, 2.0f);
    const auto w = random_floats(n, rng, 0.5f, 1.5f);
    DeviceArray<float> dy(y), dz(z), dw(w);
    make_cpu_backend(1)->gated_group_norm(y.data(), z.data(), z_stride, w.data(), 1e-5f, rows, n, n_group);
    gated_group_norm(ctx_, dy.get(), dz.get(), z_stride, dw.get(), 1e-5f, rows, n, n_group);
    // O(1) outputs; __expf in SiLU is within a few ulp of expf.
    EXPECT_LT(max_scaled_error(dy.download(), y), 2e-5);
}

}  // namespace
}  // namespace moeserve::cuda::test
