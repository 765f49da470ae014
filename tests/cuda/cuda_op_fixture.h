// Test helpers for the GPU op tests (elementwise, attention, MLA, SSM): a
// device array that uploads from and downloads to std::vector, and a fixture
// that skips without a GPU and owns a stream, a Context and its scratch.
#pragma once

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_context.h"

namespace moeserve::cuda::test {

template <class T>
class DeviceArray {
  public:
    explicit DeviceArray(size_t n) : n_(n) {
        MOESERVE_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)));
        MOESERVE_CUDA_CHECK(cudaMemset(p_, 0, std::max<size_t>(n, 1) * sizeof(T)));
    }
    explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
    ~DeviceArray() { cudaFree(p_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    T* get() const { return p_; }
    size_t size() const { return n_; }
    void upload(const std::vector<T>& host) {
        MOESERVE_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    std::vector<T> download() const {
        std::vector<T> host(n_);
        MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
        MOESERVE_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
        return host;
    }

  private:
    T* p_ = nullptr;
    size_t n_;
};

// Sets an environment variable for its lifetime, then puts back what was
// there: gpu-check runs whole suites with such a switch already set, and the
// tests after this one must still see it.
class ScopedEnv {
  public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        setenv(name, value, 1);
    }
    ~ScopedEnv() {
        if (old_)
            setenv(name_, old_->c_str(), 1);
        else
            unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

// Picks the attention kernel for its lifetime (MOESERVE_CUDA_ATTENTION):
// "f32" (the f32 flash-decoding kernel), "mma" (the tensor-core form, the
// default where shapes allow) or one of the opt-in forms.
class AttentionForm {
  public:
    explicit AttentionForm(const char* form) : env_("MOESERVE_CUDA_ATTENTION", form) {}

  private:
    ScopedEnv env_;
};

class CudaOpTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU op tests need one";
        MOESERVE_CUDA_CHECK(cudaSetDevice(0));
        MOESERVE_CUDA_CHECK(cudaStreamCreate(&stream_));
        scratch_ = std::make_unique<Scratch>(stream_);
        ctx_.device = 0;
        int v = 0;
        MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0));
        ctx_.sm_count = v;
        MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
        ctx_.shared_mem_per_block_optin = static_cast<size_t>(v);
        ctx_.stream = stream_;
        ctx_.scratch = scratch_.get();
    }
    void TearDown() override {
        if (stream_) {
            cudaStreamSynchronize(stream_);
            scratch_.reset();
            cudaStreamDestroy(stream_);
        }
    }
    // Waits for the queued ops and starts the next batch's scratch.
    void finish() {
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
        scratch_->reset();
    }

    Context ctx_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Scratch> scratch_;
};

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

inline std::vector<float> normal_floats(size_t n, std::mt19937& rng, float sigma = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// The largest |a[i] - b[i]| / (1 + |b[i]|): an absolute error for values
// below 1 and a relative one above.
inline double max_scaled_error(const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0.0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        const double e = std::abs(static_cast<double>(a[i]) - b[i]) / (1.0 + std::abs(static_cast<double>(b[i])));
        if (!(e <= worst)) worst = e;  // a NaN makes the result NaN, which fails every bound
    }
    return a.size() == b.size() ? worst : 1e30;
}

}  // namespace moeserve::cuda::test
