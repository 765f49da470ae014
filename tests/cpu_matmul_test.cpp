// CpuBackend::matmul: every output is the single-row dot of its weight row
// and its token's quantized activations, bit for bit, whichever path the
// batch takes (tiles of 16 tokens, a zero-padded last tile, four-row
// kernels, single rows), so a token's result does not depend on its batch.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

TEST(CpuMatmul, every_batch_size_gives_the_single_row_dots_exactly) {
    std::mt19937 rng(21);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int64_t rows = 37;  // not a multiple of the row block or of the tile's weight rows
    CpuBackend backend(2);
    for (GgmlType type : {GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::IQ4_NL, GgmlType::Q4_K}) {
        const int64_t n = type == GgmlType::Q4_K ? 2816 : 2688;  // Nemotron's hidden size where it can be
        const size_t row_bytes = ggml_row_bytes(type, n);
        std::vector<uint8_t> data(row_bytes * rows);
        std::vector<float> f(n);
        for (int64_t r = 0; r < rows; ++r) {
            for (auto& v : f) v = dist(rng);
            quantize_row(type, f.data(), data.data() + r * row_bytes, n);
        }
        Weight w;
        w.name = "w";
        w.type = type;
        w.ne = {n, rows, 1, 1};
        w.row_bytes = row_bytes;
        w.matrix_bytes = row_bytes * rows;
        w.data = data.data();
        // 1: decode; 5: four-row + one; 16: one tile; 23: a tile, then a padded one; 37: two tiles, four-row, one.
        for (int64_t n_tokens : {1, 5, 16, 23, 37}) {
            std::vector<float> x(n * n_tokens), y(rows * n_tokens);
            for (auto& v : x) v = dist(rng);
            backend.matmul(w, x.data(), n_tokens, y.data(), 0);
            const GgmlType at = vec_dot_type(type);
            std::vector<uint8_t> a(ggml_row_bytes(at, n));
            for (int64_t t = 0; t < n_tokens; ++t) {
                quantize_row_activation(at, x.data() + t * n, a.data(), n);
                for (int64_t r = 0; r < rows; ++r)
                    ASSERT_EQ(y[t * rows + r], vec_dot(type, data.data() + r * row_bytes, a.data(), n))
                        << ggml_type_name(type) << " tokens " << n_tokens << " token " << t << " row " << r;
            }
        }
    }
}

}  // namespace
}  // namespace moeserve
