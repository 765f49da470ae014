// Helpers for the GPU tests of the weight-reading ops (matmul, embed, FFNs):
// a fixture with a cuBLAS handle on top of CudaOpTest (cuda_op_fixture.h:
// the skip without a GPU, stream, scratch, DeviceArray), random weights
// quantized with the real quantizers and held both on the host (for the CPU
// backend and the double-precision reference) and on the device, and error
// measures relative to the scale of the reference values.
#pragma once

#include <gtest/gtest.h>

#include <cublas_v2.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "cuda_op_fixture.h"
#include "quant/dequantize.h"
#include "quant/ggml_type.h"
#include "quant/quantize.h"

namespace moeserve::cuda::test {

// CudaOpTest plus the cuBLAS handle that the large-batch products use.
class CudaBlasTest : public CudaOpTest {
  protected:
    void SetUp() override {
        CudaOpTest::SetUp();
        if (IsSkipped()) return;
        MOESERVE_CUBLAS_CHECK(cublasCreate(&cublas_));
        MOESERVE_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
        ctx_.cublas = cublas_;
    }
    void TearDown() override {
        if (cublas_) {
            cudaStreamSynchronize(stream_);
            cublasDestroy(cublas_);
        }
        CudaOpTest::TearDown();
    }
    cublasHandle_t cublas_ = nullptr;
};

// A stacked weight {in, out, n_mat} of one type made from N(0, sigma)
// values with llama-quantize's rule, on the host and on the device.
struct TestWeight {
    Weight host;    // data -> bytes
    Weight device;  // data -> dev
    std::vector<uint8_t> bytes;
    std::unique_ptr<DeviceArray<uint8_t>> dev;
    std::vector<float> values;  // dequantize_row of every row: what both backends multiply with

    const float* row(int64_t matrix, int64_t r) const { return values.data() + (matrix * host.ne[1] + r) * host.ne[0]; }
};

inline TestWeight make_test_weight(GgmlType type, int64_t in, int64_t out, int64_t n_mat, std::mt19937& rng,
                                   float sigma = 0.05f, const std::string& name = "w") {
    TestWeight t;
    const size_t row_bytes = ggml_row_bytes(type, in);
    t.bytes.resize(row_bytes * out * n_mat);
    t.values.resize(static_cast<size_t>(in * out * n_mat));
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> f(in);
    for (int64_t r = 0; r < out * n_mat; ++r) {
        for (float& v : f) v = dist(rng);
        uint8_t* dst = t.bytes.data() + r * row_bytes;
        if (type == GgmlType::F32)
            std::memcpy(dst, f.data(), row_bytes);
        else
            quantize_weight_row(type, f.data(), dst, in);
        dequantize_row(type, dst, t.values.data() + r * in, in);
    }
    t.host.name = name;
    t.host.type = type;
    t.host.ne = {in, out, n_mat, 1};
    t.host.row_bytes = row_bytes;
    t.host.matrix_bytes = row_bytes * out;
    t.host.data = t.bytes.data();
    t.dev = std::make_unique<DeviceArray<uint8_t>>(t.bytes);
    t.device = t.host;
    t.device.data = t.dev->get();
    return t;
}

// ||a - ref|| / ||ref|| over all values.
inline double relative_rms_error(const std::vector<float>& a, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double d = (i < a.size() ? a[i] : 0.0) - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return a.size() == ref.size() && std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-300)) : 1e30;
}

// max |a - ref| / rms(ref): catches one wrong row that the RMS would hide.
inline double max_error_over_rms(const std::vector<float>& a, const std::vector<double>& ref) {
    double worst = 0, sq = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        sq += ref[i] * ref[i];
        const double e = std::abs((i < a.size() ? a[i] : 0.0) - ref[i]);
        if (!(e <= worst)) worst = e;  // NaN propagates and fails the bound
    }
    const double rms = std::sqrt(sq / std::max<size_t>(ref.size(), 1));
    return a.size() == ref.size() ? worst / std::max(rms, 1e-300) : 1e30;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
    return {v.begin(), v.end()};
}

// ref[t][o] = Σ_i W_matrix[o][i] · x[t][i] in double.
inline std::vector<double> reference_matmul(const TestWeight& w, int64_t matrix, const std::vector<float>& x,
                                            int64_t n_tokens) {
    const int64_t in = w.host.ne[0], out = w.host.ne[1];
    std::vector<double> y(n_tokens * out);
    for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t o = 0; o < out; ++o) {
            const float* wr = w.row(matrix, o);
            double s = 0;
            for (int64_t i = 0; i < in; ++i) s += static_cast<double>(wr[i]) * x[t * in + i];
            y[t * out + o] = s;
        }
    return y;
}

}  // namespace moeserve::cuda::test
