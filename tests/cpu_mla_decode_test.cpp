// attention_mla at decode (one token per sequence) against f64 softmax
// attention over the rows as cached: several sequences of odd lengths, one
// long enough to be split into chunks whose partial softmax states are
// merged, cells interleaved between sequences, 1-3 threads, f16 and
// quantized caches at GLM-4.7-Flash's width (20 heads, row 576 = latent 512
// | RoPE 64).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "latent_cache.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/ggml_type.h"
#include "quant/quantize.h"

namespace moeserve {
namespace {

constexpr int kWidth = 576;   // cache row: latent 512 | RoPE 64
constexpr int kLatent = 512;  // V: the first 512 values
constexpr int kHeads = 20;

std::vector<float> random_values(size_t n, std::mt19937& rng, float sd) {
    std::normal_distribution<float> dist(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// x rounded through `type` and back; activation: as llama.cpp rounds Q, else as it writes the cache.
std::vector<float> rounded(GgmlType type, const float* x, int n, bool activation) {
    std::vector<uint8_t> buf(ggml_row_bytes(type, n));
    if (activation)
        quantize_row_activation(type, x, buf.data(), n);
    else
        quantize_row(type, x, buf.data(), n);
    std::vector<float> out(n);
    dequantize_row(type, buf.data(), out.data(), n);
    return out;
}

class CpuMlaDecode : public ::testing::TestWithParam<GgmlType> {};

TEST_P(CpuMlaDecode, matches_f64_softmax_attention_over_the_cached_rows) {
    const GgmlType type = GetParam();
    const bool quantized = type != GgmlType::F16;
    const std::vector<int> lengths = {1, 33, 700, 2501};
    const int n_seq = static_cast<int>(lengths.size());
    std::mt19937 rng(14);
    KvCache cache(test::latent_cache_config(type, kWidth, 4096, n_seq));
    auto store = make_cpu_backend(1);
    std::vector<std::vector<float>> seen(n_seq);       // each sequence's rows as cached
    for (int done = 0, more = 1; more; done += 100) {  // appended 100 at a time, round robin
        more = 0;
        for (int sq = 0; sq < n_seq; ++sq) {
            const int n = std::min(100, lengths[sq] - done);
            if (n <= 0) continue;
            more = 1;
            const std::vector<float> x = random_values(static_cast<size_t>(n) * kWidth, rng, 1.0f);
            store->store_kv(cache, 0, x.data(), nullptr, cache.append(sq, n));
            for (int j = 0; j < n; ++j) {
                const std::vector<float> r = rounded(type, x.data() + j * kWidth, kWidth, false);
                seen[sq].insert(seen[sq].end(), r.begin(), r.end());
            }
        }
    }
    const std::vector<float> q = random_values(static_cast<size_t>(n_seq) * kHeads * kWidth, rng, 0.1f);
    const float scale = 0.0625f;
    std::vector<const int32_t*> cells(n_seq);
    std::vector<int32_t> n_cells(n_seq);
    for (int sq = 0; sq < n_seq; ++sq) {
        ASSERT_EQ(static_cast<int>(cache.seq_cells(sq).size()), lengths[sq]);
        cells[sq] = cache.seq_cells(sq).data();
        n_cells[sq] = lengths[sq];
    }
    const AttentionRows rows{cells, n_cells};

    // Reference: q as the kernel sees it (rounded to q8_0 for a quantized
    // cache, as llama.cpp's decode path does), f64 scores, softmax and V.
    std::vector<double> ref(static_cast<size_t>(n_seq) * kHeads * kLatent, 0.0);
    for (int sq = 0; sq < n_seq; ++sq)
        for (int h = 0; h < kHeads; ++h) {
            const float* qh = q.data() + (sq * kHeads + h) * kWidth;
            const std::vector<float> qr =
                quantized ? rounded(GgmlType::Q8_0, qh, kWidth, true) : std::vector<float>(qh, qh + kWidth);
            const int n = lengths[sq];
            std::vector<double> sc(n);
            double mx = -1e300, sum = 0;
            for (int j = 0; j < n; ++j) {
                double dot = 0;
                for (int i = 0; i < kWidth; ++i) dot += double(qr[i]) * seen[sq][static_cast<size_t>(j) * kWidth + i];
                mx = std::max(mx, sc[j] = dot * scale);
            }
            for (auto& x : sc) sum += (x = std::exp(x - mx));
            double* o = &ref[(static_cast<size_t>(sq) * kHeads + h) * kLatent];
            for (int j = 0; j < n; ++j)
                for (int i = 0; i < kLatent; ++i) o[i] += sc[j] / sum * seen[sq][static_cast<size_t>(j) * kWidth + i];
        }
    for (int threads : {1, 2, 3}) {
        auto backend = make_cpu_backend(threads);
        std::vector<float> out(ref.size());
        backend->attention_mla(cache, 0, q.data(), n_seq, kHeads, kLatent, rows, scale, out.data());
        double max_err = 0, max_ref = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
            max_err = std::max(max_err, std::abs(ref[i] - out[i]));
            max_ref = std::max(max_ref, std::abs(ref[i]));
        }
        EXPECT_LE(max_err / max_ref, 1e-5)
            << ggml_type_name(type) << ", " << threads << " threads: max |error| " << max_err << " of " << max_ref;
    }
}

// A decoded token's output does not depend on the threads or the batch: its
// chunks of rows follow its row count alone (mla_decode_chunk_rows). The
// 2,501-row sequence decoded alone on one thread, then beside three others
// on three threads: the same bits.
TEST_P(CpuMlaDecode, a_decoded_token_gets_the_same_bits_with_any_threads_or_batch) {
    const GgmlType type = GetParam();
    const std::vector<int> lengths = {2501, 33, 700, 1};
    const int n_seq = static_cast<int>(lengths.size());
    std::mt19937 rng(21);
    KvCache cache(test::latent_cache_config(type, kWidth, 4096, n_seq));
    auto one = make_cpu_backend(1), three = make_cpu_backend(3);
    for (int sq = 0; sq < n_seq; ++sq) {
        const std::vector<float> x = random_values(static_cast<size_t>(lengths[sq]) * kWidth, rng, 1.0f);
        one->store_kv(cache, 0, x.data(), nullptr, cache.append(sq, lengths[sq]));
    }
    const std::vector<float> q = random_values(static_cast<size_t>(n_seq) * kHeads * kWidth, rng, 0.1f);
    std::vector<const int32_t*> cells(n_seq);
    for (int sq = 0; sq < n_seq; ++sq) cells[sq] = cache.seq_cells(sq).data();
    std::vector<int32_t> n_cells(lengths.begin(), lengths.end());
    std::vector<float> alone(kHeads * kLatent), batch(static_cast<size_t>(n_seq) * kHeads * kLatent);
    one->attention_mla(cache, 0, q.data(), 1, kHeads, kLatent,
                       AttentionRows{std::span(cells.data(), 1), std::span(n_cells.data(), 1)}, 0.0625f, alone.data());
    three->attention_mla(cache, 0, q.data(), n_seq, kHeads, kLatent, AttentionRows{cells, n_cells}, 0.0625f,
                         batch.data());
    for (size_t i = 0; i < alone.size(); ++i) ASSERT_EQ(alone[i], batch[i]) << ggml_type_name(type) << " element " << i;
}

INSTANTIATE_TEST_SUITE_P(Caches, CpuMlaDecode, ::testing::Values(GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace moeserve
