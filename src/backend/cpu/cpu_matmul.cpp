// Matrix products straight from quantized weights. The activations of a
// batch are quantized once to the weight type's partner (Q8_K for K-quants
// and IQ4_XS, Q8_0/Q8_1 for the legacy types, f16 for F16 weights, ...),
// then every output is one vec_dot of a weight row with a quantized
// activation row. Work is split over output rows, in blocks of rows small
// enough to stay in L1 while all tokens of the batch stream past them.
#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {

const uint8_t* CpuBackend::quantize_activations(GgmlType type, const float* x, int64_t n_tokens, int64_t n,
                                                std::vector<uint8_t>& buf) {
    const size_t row = ggml_row_bytes(type, n);
    if (buf.size() < row * n_tokens) buf.resize(row * n_tokens);
    if (type == GgmlType::F32) {
        std::memcpy(buf.data(), x, row * n_tokens);
        return buf.data();
    }
    auto rows = [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) quantize_row_activation(type, x + t * n, buf.data() + t * row, n);
    };
    if (n_tokens == 1) rows(0, 1);
    else pool_.parallel_for(n_tokens, rows);
    return buf.data();
}

void CpuBackend::matmul_quantized(const Weight& w, int expert, const uint8_t* xq, size_t xq_row_bytes,
                                  int64_t n_tokens, float* y, int64_t y_stride) {
    const VecDotFn dot = vec_dot_kernel(w.type);
    const int64_t n_in = w.ne[0], n_out = w.ne[1];
    const uint8_t* base = w.data + static_cast<size_t>(expert) * w.matrix_bytes;
    constexpr int64_t kRowBlock = 16;
    const int64_t n_blocks = (n_out + kRowBlock - 1) / kRowBlock;
    pool_.parallel_for(n_blocks, [&](int64_t b, int64_t e) {
        for (int64_t blk = b; blk < e; ++blk) {
            const int64_t r0 = blk * kRowBlock, r1 = std::min(n_out, r0 + kRowBlock);
            for (int64_t t = 0; t < n_tokens; ++t) {
                const uint8_t* a = xq + t * xq_row_bytes;
                float* yt = y + t * y_stride;
                for (int64_t r = r0; r < r1; ++r) yt[r] = dot(base + r * w.row_bytes, a, n_in);
            }
        }
    });
}

void CpuBackend::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert) {
    const GgmlType act_type = vec_dot_type(w.type);
    const uint8_t* xq = quantize_activations(act_type, x, n_tokens, w.ne[0], act_buf_);
    matmul_quantized(w, expert, xq, ggml_row_bytes(act_type, w.ne[0]), n_tokens, y, w.ne[1]);
}

}  // namespace moeserve
