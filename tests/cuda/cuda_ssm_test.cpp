// GPU Mamba2 ops (conv and selective scan) against the CPU backend, for
// decode steps of several sequences and a 300-token prefill of two
// interleaved sequences, from random starting states: outputs and the
// updated conv and SSM states must agree.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_op_fixture.h"
#include "memory/kv_cache.h"

namespace moeserve::cuda::test {
namespace {

constexpr int H = 8, P = 16, N = 128, G = 2, K = 4;
constexpr int64_t C = H * P + 2 * G * N;  // conv channels: x | B | C
constexpr int kSeqs = 3;

// A one-layer recurrent cache with random states, and its device copy.
struct States {
    explicit States(std::mt19937& rng) {
        KvCacheConfig cfg;
        cfg.n_cells = 1;
        cfg.n_seq_max = kSeqs;
        cfg.n_embd_k = {0};
        cfg.n_embd_v = {0};
        cfg.n_embd_r = {C * (K - 1)};
        cfg.n_embd_s = {static_cast<int64_t>(H) * P * N};
        cache = std::make_unique<KvCache>(cfg);
        for (int s = 0; s < kSeqs; ++s) {
            const auto conv = random_floats(C * (K - 1), rng);
            const auto ssm = random_floats(static_cast<size_t>(H) * P * N, rng, -0.5f, 0.5f);
            std::copy(conv.begin(), conv.end(), cache->conv_state(0, s));
            std::copy(ssm.begin(), ssm.end(), cache->ssm_state(0, s));
        }
        stride = cache->conv_state(0, 1) - cache->conv_state(0, 0);
        ssm_offset = cache->ssm_state(0, 0) - cache->conv_state(0, 0);
        dev = std::make_unique<DeviceArray<float>>(host_block());
        layer.conv = dev->get();
        layer.ssm = dev->get() + ssm_offset;
        layer.seq_stride = stride;
    }
    std::vector<float> host_block() const {
        const float* base = cache->conv_state(0, 0);
        return std::vector<float>(base, base + stride * kSeqs);
    }
    std::unique_ptr<KvCache> cache;
    int64_t stride = 0, ssm_offset = 0;
    std::unique_ptr<DeviceArray<float>> dev;
    RecurrentLayer layer;
};

Weight f32_weight(const std::vector<float>& host, const float* device, int64_t ne0, int64_t ne1) {
    Weight w;
    w.type = GgmlType::F32;
    w.ne = {ne0, ne1, 1, 1};
    w.row_bytes = ne0 * sizeof(float);
    w.data = reinterpret_cast<const uint8_t*>(device ? device : host.data());
    return w;
}

class CudaSsm : public CudaOpTest {
  protected:
    void check_batch(const std::vector<int32_t>& seq_ids, std::mt19937& rng);
};

void CudaSsm::check_batch(const std::vector<int32_t>& seq_ids, std::mt19937& rng) {
    Context& ctx = ctx_;
    const int64_t n = static_cast<int64_t>(seq_ids.size());
    States st(rng);
    auto cpu = make_cpu_backend(2);

    // ---- conv: x rows inside a wider projection row
    const int64_t x_stride = C + 40;
    const auto x = random_floats(n * x_stride, rng);
    const auto w = random_floats(C * K, rng, -0.5f, 0.5f), b = random_floats(C, rng, -0.2f, 0.2f);
    DeviceArray<float> dx(x), dw(w), db(b), dconv(n * C);
    DeviceArray<int32_t> dseq(seq_ids);
    std::vector<float> conv_want(n * C);
    cpu->ssm_conv(*st.cache, 0, x.data(), x_stride, n, seq_ids, f32_weight(w, nullptr, K, C),
                  f32_weight(b, nullptr, C, 1), conv_want.data());
    ssm_conv(ctx, st.layer, dx.get(), x_stride, n, dseq.get(), f32_weight(w, dw.get(), K, C),
             f32_weight(b, db.get(), C, 1), dconv.get());
    // SiLU of O(1) sums of 4 products: the FMA order and __expf differ by a few ulp.
    EXPECT_LT(max_scaled_error(dconv.download(), conv_want), 1e-5) << "conv output";

    // ---- scan, on random inputs in the conv output's range
    const int64_t dt_stride = H + 5;
    const auto xbc = random_floats(n * C, rng);
    const auto dt = random_floats(n * dt_stride, rng, -3.0f, 1.0f);
    const auto dt_bias = random_floats(H, rng, -1.0f, 1.0f), d = random_floats(H, rng);
    std::vector<float> a(H);
    for (float& v : a) v = -std::exp(std::uniform_real_distribution<float>(-1.0f, 1.5f)(rng));
    DeviceArray<float> dxbc(xbc), ddt(dt), ddtb(dt_bias), dd(d), da(a), dy(n * H * P);
    SsmParams p{H, P, N, G, dt_bias.data(), a.data(), d.data()};
    std::vector<float> y_want(n * H * P);
    cpu->ssm_scan(*st.cache, 0, xbc.data(), dt.data(), dt_stride, n, seq_ids, p, y_want.data());
    SsmParams dp{H, P, N, G, ddtb.get(), da.get(), dd.get()};
    ssm_scan(ctx, st.layer, dxbc.get(), ddt.get(), dt_stride, n, dseq.get(), dp, dy.get());
    // Outputs and states are O(1) sums of 128 products carried over up to 300
    // steps of decay; FMA order and __expf differ by ~1e-6 relative per step.
    EXPECT_LT(max_scaled_error(dy.download(), y_want), 2e-4) << "scan output";
    // Both ops' state updates (conv state, then SSM state) against the CPU's.
    EXPECT_LT(max_scaled_error(st.dev->download(), st.host_block()), 2e-4) << "updated states";
    finish();
}

TEST_F(CudaSsm, decode_steps_of_several_sequences_match_cpu) {
    std::mt19937 rng(30);
    check_batch({2, 0, 1}, rng);
    check_batch({1}, rng);
}

TEST_F(CudaSsm, prefill_of_two_interleaved_sequences_matches_cpu) {
    std::mt19937 rng(31);
    // 300 tokens: runs of sequence 0 and 2 of uneven lengths, including runs
    // shorter than the conv window, so states pass between runs both ways.
    std::vector<int32_t> ids;
    const int runs[][2] = {{0, 37}, {2, 2}, {0, 1}, {2, 90}, {0, 3}, {2, 1}, {0, 120}, {2, 46}};
    for (const auto& r : runs) ids.insert(ids.end(), r[1], r[0]);
    ASSERT_EQ(ids.size(), 300u);
    check_batch(ids, rng);
}

}  // namespace
}  // namespace moeserve::cuda::test
