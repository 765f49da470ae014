// CpuBackend::matmul: every output is the single-row dot of its weight row
// and its token's quantized activations, bit for bit, whichever path the
// batch takes (tiles of 16 tokens, a zero-padded last tile, four-row
// kernels, single rows), so a token's result does not depend on its batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

// A random weight of `rows` rows of n values, quantized to `type`.
struct TestMatrix {
    std::vector<uint8_t> data;
    Weight w;
    TestMatrix(GgmlType type, int64_t n, int64_t rows, std::mt19937& rng) {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        const size_t row_bytes = ggml_row_bytes(type, n);
        data.resize(row_bytes * rows);
        std::vector<float> f(n);
        for (int64_t r = 0; r < rows; ++r) {
            for (auto& v : f) v = dist(rng);
            quantize_row(type, f.data(), data.data() + r * row_bytes, n);
        }
        w.name = "w_" + std::string(ggml_type_name(type));
        w.type = type;
        w.ne = {n, rows, 1, 1};
        w.row_bytes = row_bytes;
        w.matrix_bytes = row_bytes * rows;
        w.data = data.data();
    }
};

// Every output of y = W·x against the single-row dot of its row and token.
void expect_single_row_dots(const TestMatrix& m, const std::vector<float>& x, int64_t n_tokens,
                            const std::vector<float>& y) {
    const Weight& w = m.w;
    const int64_t n = w.ne[0], rows = w.ne[1];
    const GgmlType at = vec_dot_type(w.type);
    std::vector<uint8_t> a(ggml_row_bytes(at, n));
    for (int64_t t = 0; t < n_tokens; ++t) {
        quantize_row_activation(at, x.data() + t * n, a.data(), n);
        for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(y[t * rows + r], vec_dot(w.type, m.data.data() + r * w.row_bytes, a.data(), n))
                << ggml_type_name(w.type) << " tokens " << n_tokens << " token " << t << " row " << r;
    }
}

TEST(CpuMatmul, every_batch_size_gives_the_single_row_dots_exactly) {
    std::mt19937 rng(21);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int64_t rows = 37;  // not a multiple of the row block or of the tile's weight rows
    CpuBackend backend(2);
    for (GgmlType type : {GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::IQ4_NL, GgmlType::Q4_K,
                          GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS}) {
        const bool super_blocks =
            type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q6_K || type == GgmlType::IQ4_XS;
        const int64_t n = super_blocks ? 2816 : 2688;  // Nemotron's hidden size where it can be
        const TestMatrix m(type, n, rows, rng);
        // 1: decode; 2, 3: two or three slots' decode step (the few-row kernels); 5: four-row + one;
        // 16: one tile; 20, 23, 25, 28: a tile and 4, 7, 9, 12 more (a padded tile or not, by the
        // format's min_partial); 37: two tiles, four-row, one.
        for (int64_t n_tokens : {1, 2, 3, 5, 16, 20, 23, 25, 28, 37}) {
            std::vector<float> x(n * n_tokens), y(rows * n_tokens);
            for (auto& v : x) v = dist(rng);
            backend.matmul(m.w, x.data(), n_tokens, y.data(), 0);
            expect_single_row_dots(m, x, n_tokens, y);
        }
    }
}

// Projections of one input whose tile kernels pack the same layout but pad a
// last tile from different token counts (Q5_K from 7, Q4_K from 10, Q6_K from
// 11, IQ4_XS from 12: 9 extra tokens pad a Q5_K tile only) must not share
// tiles the other did not pack.
TEST(CpuMatmul, shared_input_projections_with_different_tile_counts_give_the_single_row_dots) {
    std::mt19937 rng(22);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    CpuBackend backend(2);
    const int64_t n = 1024;
    const TestMatrix q4(GgmlType::Q4_K, n, 21, rng), q5(GgmlType::Q5_K, n, 19, rng), q6(GgmlType::Q6_K, n, 18, rng),
        iq(GgmlType::IQ4_XS, n, 17, rng);
    for (int64_t n_tokens : {16 + 5, 16 + 9, 32 + 12, 3}) {
        std::vector<float> x(n * n_tokens);
        for (auto& v : x) v = dist(rng);
        std::vector<float> y4(q4.w.ne[1] * n_tokens), y5(q5.w.ne[1] * n_tokens), y6(q6.w.ne[1] * n_tokens),
            yi(iq.w.ne[1] * n_tokens);
        // Outputs reset before each run, so each run's own results are checked.
        auto run_and_check = [&](std::span<const Backend::Projection> projections) {
            for (auto* y : {&y4, &y5, &y6, &yi}) std::fill(y->begin(), y->end(), std::nanf(""));
            backend.matmul_shared_input(x.data(), n_tokens, projections);
            expect_single_row_dots(q4, x, n_tokens, y4);
            expect_single_row_dots(q5, x, n_tokens, y5);
            expect_single_row_dots(q6, x, n_tokens, y6);
            expect_single_row_dots(iq, x, n_tokens, yi);
        };
        // Both orders: the job that would pack fewer tiles first, and last.
        const Backend::Projection first[] = {
            {&q4.w, y4.data()}, {&q5.w, y5.data()}, {&q6.w, y6.data()}, {&iq.w, yi.data()}};
        run_and_check(first);
        const Backend::Projection second[] = {
            {&iq.w, yi.data()}, {&q5.w, y5.data()}, {&q4.w, y4.data()}, {&q6.w, y6.data()}};
        run_and_check(second);
    }
}

}  // namespace
}  // namespace moeserve
