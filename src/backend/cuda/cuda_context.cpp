#include "backend/cuda/cuda_context.h"

#include "backend/cuda/cuda_graph.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace moeserve::cuda {

void throw_cuda_error(const char* call, const char* what, const char* file, int line) {
    throw std::runtime_error(fmt::format("CUDA error: {} ({}) at {}:{}", what, call, file, line));
}

Scratch::~Scratch() {
    // Destructors must not throw; a failed free at exit is not actionable.
    if (base_) cudaFree(base_);
    for (void* p : retired_) cudaFree(p);
}

void Scratch::reserve(size_t bytes) {
    if (bytes <= capacity_) return;
    if (stream_is_capturing(stream_)) throw NotCapturable("scratch memory grows");
    // Kernels queued earlier may still read the old block: keep it until
    // reset(), which runs between ops when nothing handed out is in use.
    if (base_) retired_.push_back(base_);
    base_ = nullptr;
    const size_t grown = std::max(bytes, capacity_ + capacity_ / 2);
    MOESERVE_CUDA_CHECK(cudaMalloc(&base_, grown));
    capacity_ = grown;
    used_ = 0;
    ++generation_;
}

void* Scratch::take(size_t bytes, size_t align) {
    size_t start = (used_ + align - 1) / align * align;
    if (start + bytes > capacity_) {
        // The pieces already handed out stay valid (their block is retired,
        // not freed); the new block starts empty.
        reserve(std::max(start + bytes, size_t{64} << 20));
        start = 0;
    }
    used_ = start + bytes;
    return base_ + start;
}

void Scratch::reset() {
    if (!retired_.empty()) {
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
        for (void* p : retired_) MOESERVE_CUDA_CHECK(cudaFree(p));
        retired_.clear();
    }
    used_ = 0;
}

void raise_dynamic_smem_limit(const void* kernel, size_t bytes) {
    static std::mutex mutex;
    static std::map<std::pair<int, const void*>, size_t> limits;  // (device, kernel) -> the highest set
    int device = 0;
    MOESERVE_CUDA_CHECK(cudaGetDevice(&device));
    std::lock_guard<std::mutex> lock(mutex);
    size_t& limit = limits[{device, kernel}];
    if (bytes <= limit) return;
    MOESERVE_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    limit = bytes;
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

std::string device_description(int device) {
    cudaDeviceProp prop{};
    MOESERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    return fmt::format("{}, {:.1f} GiB, sm_{}{}", prop.name, prop.totalGlobalMem / double(1 << 30), prop.major,
                       prop.minor);
}

double measure_copy_bandwidth(int device) {
    MOESERVE_CUDA_CHECK(cudaSetDevice(device));
    constexpr size_t kBytes = size_t{1} << 30;
    void* a = nullptr;
    void* b = nullptr;
    MOESERVE_CUDA_CHECK(cudaMalloc(&a, kBytes));
    MOESERVE_CUDA_CHECK(cudaMalloc(&b, kBytes));
    cudaEvent_t start, stop;
    MOESERVE_CUDA_CHECK(cudaEventCreate(&start));
    MOESERVE_CUDA_CHECK(cudaEventCreate(&stop));
    float best_ms = 0;
    for (int i = 0; i < 5; ++i) {  // the first copy warms up
        MOESERVE_CUDA_CHECK(cudaEventRecord(start));
        MOESERVE_CUDA_CHECK(cudaMemcpy(b, a, kBytes, cudaMemcpyDeviceToDevice));
        MOESERVE_CUDA_CHECK(cudaEventRecord(stop));
        MOESERVE_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        MOESERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        if (i > 0 && (best_ms == 0 || ms < best_ms)) best_ms = ms;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * kBytes / (best_ms / 1e3);
}

}  // namespace moeserve::cuda
