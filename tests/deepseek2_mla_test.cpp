// MLA in the absorbed form (attn_k_b folded into the query, attention over
// the latent cache, attn_v_b after it; backend ops matmul_heads and
// attention_mla) equals the naive expanded form: decompress each head's K
// and V from the latent and run ordinary softmax attention. Random inputs,
// several sequences of different lengths in one batch, every cache type.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "latent_cache.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace moeserve {
namespace {

struct MlaShape {
    int n_head, qk_nope, n_rot, latent, dv;
};

// A stacked F32 weight {in, out, n} over `data`.
Weight f32_weight(std::vector<float>& data, int64_t in, int64_t out, int64_t n) {
    Weight w;
    w.name = "test";
    w.type = GgmlType::F32;
    w.ne = {in, out, n, 1};
    w.row_bytes = sizeof(float) * in;
    w.matrix_bytes = w.row_bytes * out;
    w.data = reinterpret_cast<const uint8_t*>(data.data());
    return w;
}

std::vector<float> random_vector(size_t n, std::mt19937& rng, float sd = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// The cached rows as the attention reads them (rounded to the cache type).
std::vector<float> rounded(GgmlType type, const std::vector<float>& rows, int64_t width) {
    std::vector<float> out(rows.size());
    std::vector<uint8_t> buf(ggml_row_bytes(type, width));
    for (size_t r = 0; r < rows.size() / width; ++r) {
        quantize_row_activation(type, rows.data() + r * width, buf.data(), width);
        dequantize_row(type, buf.data(), out.data() + r * width, width);
    }
    return out;
}

void check_absorbed_equals_expanded(const MlaShape& s, GgmlType cache_type, double tol) {
    std::mt19937 rng(1234);
    const int H = s.n_head, R = s.latent, D = s.latent + s.n_rot, dk = s.qk_nope + s.n_rot;
    auto backend = make_cpu_backend(2);

    // Two sequences: 0 has 700 cached positions before this batch of 3
    // tokens (long enough to be split across threads); 1 is a fresh 5-token prompt.
    const int past0 = 700, new0 = 3, new1 = 5;
    KvCache cache(test::latent_cache_config(cache_type, D, 1024, 2));

    // Per sequence: every cached row [latent | k_pe] in position order.
    std::vector<float> rows0 = random_vector(static_cast<size_t>(past0 + new0) * D, rng);
    std::vector<float> rows1 = random_vector(static_cast<size_t>(new1) * D, rng);
    std::vector<int32_t> cells0 = cache.append(0, past0);
    backend->store_kv(cache, 0, rows0.data(), nullptr, cells0);

    // The batch interleaves the two sequences' new tokens.
    struct Tok {
        int seq, pos;
    };
    std::vector<Tok> toks;
    for (int i = 0; i < std::max(new0, new1); ++i) {
        if (i < new0) toks.push_back({0, past0 + i});
        if (i < new1) toks.push_back({1, i});
    }
    const int64_t T = static_cast<int64_t>(toks.size());
    std::vector<float> krow(T * D);
    std::vector<int32_t> cells(T);
    for (int64_t t = 0; t < T; ++t) {
        const auto& src = toks[t].seq == 0 ? rows0 : rows1;
        std::copy(src.begin() + toks[t].pos * D, src.begin() + (toks[t].pos + 1) * D, krow.begin() + t * D);
        cells[t] = cache.append(toks[t].seq, 1)[0];
    }
    backend->store_kv(cache, 0, krow.data(), nullptr, cells);
    std::vector<const int32_t*> row_ptrs(T);
    std::vector<int32_t> n_cells(T);
    for (int64_t t = 0; t < T; ++t) {
        row_ptrs[t] = cache.seq_cells(toks[t].seq).data();
        n_cells[t] = toks[t].pos + 1;
    }
    AttentionRows attn_rows{row_ptrs, n_cells};

    // Weights: k_b {qk_nope, R, H}: k_b[h][r][d] = W_UK_h[d, r]; v_b {R, dv, H}: v_b[h][j][r] = W_UV_h[j, r].
    std::vector<float> k_b = random_vector(static_cast<size_t>(H) * R * s.qk_nope, rng, 0.1f);
    std::vector<float> v_b = random_vector(static_cast<size_t>(H) * s.dv * R, rng, 0.1f);
    const Weight wk = f32_weight(k_b, s.qk_nope, R, H), wv = f32_weight(v_b, R, s.dv, H);
    // q: [T, H, dk] = [q_nope | q_pe] per head.
    std::vector<float> q = random_vector(static_cast<size_t>(T) * H * dk, rng, 0.5f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(dk));

    // Absorbed: q_mla [T, H, D] = [W_UK_h^T q_nope | q_pe]; attention over the latent; o = W_UV_h o_lat.
    std::vector<float> q_abs(T * H * R), q_mla(T * H * D), o_lat(T * H * R), absorbed(T * H * s.dv);
    backend->matmul_heads(wk, q.data(), T, static_cast<int64_t>(H) * dk, dk, q_abs.data());
    for (int64_t th = 0; th < T * H; ++th) {
        std::copy(&q_abs[th * R], &q_abs[(th + 1) * R], &q_mla[th * D]);
        std::copy(&q[th * dk + s.qk_nope], &q[(th + 1) * dk], &q_mla[th * D + R]);
    }
    backend->attention_mla(cache, 0, q_mla.data(), T, H, R, attn_rows, scale, o_lat.data());
    backend->matmul_heads(wv, o_lat.data(), T, static_cast<int64_t>(H) * R, R, absorbed.data());

    // Expanded, in double: K_h[j] = [W_UK_h c_j | k_pe_j], V_h[j] = W_UV_h c_j, softmax(q·K * scale)·V.
    const std::vector<float> seen0 = rounded(cache_type, rows0, D), seen1 = rounded(cache_type, rows1, D);
    double max_err = 0, max_ref = 0;
    for (int64_t t = 0; t < T; ++t) {
        const auto& rows = toks[t].seq == 0 ? seen0 : seen1;
        const int n = toks[t].pos + 1;
        for (int h = 0; h < H; ++h) {
            const float* qh = &q[(t * H + h) * dk];
            std::vector<double> scores(n), o(s.dv, 0.0);
            double mx = -1e300;
            for (int j = 0; j < n; ++j) {
                const float* c = &rows[static_cast<size_t>(j) * D];
                double sc = 0;
                for (int d = 0; d < s.qk_nope; ++d) {
                    double k = 0;  // k_nope[d] = Σ_r W_UK_h[d, r] c[r]
                    for (int r = 0; r < R; ++r)
                        k += double(k_b[(static_cast<size_t>(h) * R + r) * s.qk_nope + d]) * c[r];
                    sc += qh[d] * k;
                }
                for (int d = 0; d < s.n_rot; ++d) sc += double(qh[s.qk_nope + d]) * c[R + d];
                scores[j] = sc * scale;
                mx = std::max(mx, scores[j]);
            }
            double sum = 0;
            for (auto& x : scores) sum += (x = std::exp(x - mx));
            for (int j = 0; j < n; ++j) {
                const float* c = &rows[static_cast<size_t>(j) * D];
                for (int i = 0; i < s.dv; ++i) {
                    double v = 0;  // v[i] = Σ_r W_UV_h[i, r] c[r]
                    for (int r = 0; r < R; ++r) v += double(v_b[(static_cast<size_t>(h) * s.dv + i) * R + r]) * c[r];
                    o[i] += scores[j] / sum * v;
                }
            }
            for (int i = 0; i < s.dv; ++i) {
                max_err = std::max(max_err, std::abs(o[i] - absorbed[(t * H + h) * s.dv + i]));
                max_ref = std::max(max_ref, std::abs(o[i]));
            }
        }
    }
    EXPECT_LE(max_err / max_ref, tol) << "max |error| " << max_err << " of max |value| " << max_ref << " for "
                                      << ggml_type_name(cache_type);
}

TEST(Deepseek2Mla, absorbed_form_equals_expanded_form_f32_cache) {
    check_absorbed_equals_expanded({4, 32, 16, 64, 48}, GgmlType::F32, 1e-4);
}

TEST(Deepseek2Mla, absorbed_form_equals_expanded_form_f16_cache_glm_width) {
    // The head layout of GLM-4.7-Flash (qk_nope 192, rope 64, latent 512, v 256), fewer heads.
    check_absorbed_equals_expanded({5, 192, 64, 512, 256}, GgmlType::F16, 1e-4);
}

TEST(Deepseek2Mla, absorbed_form_equals_expanded_form_bf16_cache) {
    check_absorbed_equals_expanded({3, 64, 32, 128, 64}, GgmlType::BF16, 1e-4);
}

// With a quantized cache the absorbed query is rounded to K's dot partner
// type (Q8_0 / Q8_1) before scoring, as llama.cpp does; that rounding
// (about 0.1% of the output) is the only difference left.
TEST(Deepseek2Mla, absorbed_form_equals_expanded_form_quantized_caches) {
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::IQ4_NL})
        check_absorbed_equals_expanded({3, 64, 32, 128, 64}, t, 4e-3);
}

}  // namespace
}  // namespace moeserve
