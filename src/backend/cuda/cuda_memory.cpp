#include "backend/cuda/cuda_memory.h"

#include <fmt/format.h>

#include <algorithm>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/cuda_rows.h"

namespace moeserve::cuda {

CudaMemory::CudaMemory(int device) : device_(device) {
    MOESERVE_CUDA_CHECK(cudaSetDevice(device));
    MOESERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

namespace {

constexpr size_t kStagingBytes = size_t{8} << 20;
constexpr size_t kStagingRows = size_t{1} << 16;  // rows per piece at most (their indices: 256 KiB)
constexpr size_t kDirectRuns = 4;                 // up to this many runs: a copy each, no staging

size_t rows_per_piece(size_t row_bytes) {
    return std::min(kStagingRows, kStagingBytes / row_bytes);
}

size_t count_runs(std::span<const int32_t> cells) {
    size_t runs = 0;
    for_each_cell_run(cells, [&](size_t, size_t) { ++runs; });
    return runs;
}

}  // namespace

CudaMemory::~CudaMemory() {
    if (staging_) cudaFree(staging_);
    if (staging_cells_) cudaFree(staging_cells_);
    if (stream_) cudaStreamDestroy(stream_);
}

bool CudaMemory::ensure_staging() {
    if (staging_) return true;
    if (stream_is_capturing(stream_)) return false;
    if (cudaMalloc(&staging_, kStagingBytes) != cudaSuccess) {
        cudaGetLastError();
        staging_ = nullptr;
        return false;
    }
    if (cudaMalloc(&staging_cells_, kStagingRows * sizeof(int32_t)) != cudaSuccess) {
        cudaGetLastError();
        cudaFree(staging_);
        staging_ = nullptr, staging_cells_ = nullptr;
        return false;
    }
    return true;
}

bool CudaMemory::staged(size_t row_bytes, std::span<const int32_t> cells) {
    return row_bytes <= kStagingBytes && count_runs(cells) > kDirectRuns && ensure_staging();
}

void CudaMemory::download_rows(void* host_dst, const void* src, size_t row_bytes, std::span<const int32_t> cells) {
    if (cells.empty() || row_bytes == 0) return;
    if (!staged(row_bytes, cells)) {
        DeviceMemory::download_rows(host_dst, src, row_bytes, cells);
        return;
    }
    const size_t per_piece = rows_per_piece(row_bytes);
    auto* out = static_cast<uint8_t*>(host_dst);
    for (size_t i = 0; i < cells.size(); i += per_piece) {
        const size_t n = std::min(per_piece, cells.size() - i);
        MOESERVE_CUDA_CHECK(
            cudaMemcpyAsync(staging_cells_, cells.data() + i, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
        gather_rows(stream_, static_cast<const uint8_t*>(src), row_bytes, staging_cells_, static_cast<int64_t>(n),
                    staging_);
        MOESERVE_CUDA_CHECK(
            cudaMemcpyAsync(out + i * row_bytes, staging_, n * row_bytes, cudaMemcpyDeviceToHost, stream_));
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the staging block serves the next piece
    }
}

void CudaMemory::upload_rows(void* dst, const void* host_src, size_t row_bytes, std::span<const int32_t> cells) {
    if (cells.empty() || row_bytes == 0) return;
    if (!staged(row_bytes, cells)) {
        DeviceMemory::upload_rows(dst, host_src, row_bytes, cells);
        return;
    }
    const size_t per_piece = rows_per_piece(row_bytes);
    const auto* in = static_cast<const uint8_t*>(host_src);
    for (size_t i = 0; i < cells.size(); i += per_piece) {
        const size_t n = std::min(per_piece, cells.size() - i);
        MOESERVE_CUDA_CHECK(
            cudaMemcpyAsync(staging_cells_, cells.data() + i, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
        MOESERVE_CUDA_CHECK(
            cudaMemcpyAsync(staging_, in + i * row_bytes, n * row_bytes, cudaMemcpyHostToDevice, stream_));
        scatter_rows(stream_, static_cast<uint8_t*>(dst), row_bytes, staging_cells_, static_cast<int64_t>(n), staging_);
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
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
