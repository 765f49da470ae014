#include "backend/cuda/cuda_memory.h"

#include <fmt/format.h>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_graph.h"

namespace moeserve::cuda {

CudaMemory::CudaMemory(int device) : device_(device) {
    MOESERVE_CUDA_CHECK(cudaSetDevice(device));
    MOESERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

CudaMemory::~CudaMemory() {
    if (stream_) cudaStreamDestroy(stream_);
}

void* CudaMemory::allocate(size_t bytes) {
    void* p = nullptr;
    if (bytes == 0) return nullptr;
    // Inside a graph capture the clearing below cannot wait; the pass runs
    // again op by op and allocates then.
    if (stream_is_capturing(stream_)) throw NotCapturable("GPU memory is allocated");
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();  // clear the error before asking for the numbers
        size_t free_bytes = 0, total = 0;
        cudaMemGetInfo(&free_bytes, &total);
        throw std::runtime_error(fmt::format("GPU out of memory: {:.2f} GiB requested, {:.2f} GiB free of {:.2f} GiB",
                                             bytes / double(1 << 30), free_bytes / double(1 << 30),
                                             total / double(1 << 30)));
    }
    // Allocations are rare (load time, a larger batch): clearing on the
    // stream and waiting keeps the "zero-filled" promise without ordering
    // questions.
    MOESERVE_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
    MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return p;
}

void CudaMemory::release(void* p) noexcept {
    if (!p) return;
    // Kernels queued on the stream may still use the block.
    cudaStreamSynchronize(stream_);
    cudaFree(p);
}

void CudaMemory::copy(void* dst, const void* src, size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaMemory::zero(void* dst, size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
}

void CudaMemory::upload(void* dst, const void* host_src, size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaMemory::download(void* host_dst, const void* src, size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

ManagedMemory::ManagedMemory(int device) : device_(device) {
    MOESERVE_CUDA_CHECK(cudaSetDevice(device));
}

void* ManagedMemory::allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    if (cudaMallocManaged(&p, bytes, cudaMemAttachGlobal) != cudaSuccess) {
        cudaGetLastError();
        throw std::runtime_error(
            fmt::format("out of CUDA managed memory: {:.2f} GiB requested", bytes / double(1 << 30)));
    }
    // Zeroed on the device: the pages start there, where most layers of a
    // split run; the host's layers pull theirs over on first touch.
    MOESERVE_CUDA_CHECK(cudaMemset(p, 0, bytes));
    MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
    return p;
}

void ManagedMemory::release(void* p) noexcept {
    if (!p) return;
    cudaDeviceSynchronize();
    cudaFree(p);
}

void ManagedMemory::copy(void* dst, const void* src, size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
    MOESERVE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void ManagedMemory::zero(void* dst, size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
    MOESERVE_CUDA_CHECK(cudaMemset(dst, 0, bytes));
    MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
}

void ManagedMemory::upload(void* dst, const void* host_src, size_t bytes) {
    copy(dst, host_src, bytes);
}

void ManagedMemory::download(void* host_dst, const void* src, size_t bytes) {
    copy(host_dst, src, bytes);
}

}  // namespace moeserve::cuda
