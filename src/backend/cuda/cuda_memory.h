// GPU memory as a DeviceMemory: what the KV cache, recurrent states and
// activations are allocated from under the CUDA backend. Copies are ordered
// on the backend's stream, so they never overtake queued kernels.
#pragma once

#include <cuda_runtime.h>

#include "memory/device_memory.h"

namespace moeserve::cuda {

class CudaMemory final : public DeviceMemory {
  public:
    explicit CudaMemory(int device);
    ~CudaMemory() override;
    CudaMemory(const CudaMemory&) = delete;
    CudaMemory& operator=(const CudaMemory&) = delete;

    cudaStream_t stream() const { return stream_; }
    const char* name() const override { return "cuda"; }
    bool is_host() const override { return false; }
    // Throws std::runtime_error naming the size and the free memory.
    void* allocate(size_t bytes) override;
    void release(void* p) noexcept override;
    void copy(void* dst, const void* src, size_t bytes) override;
    void zero(void* dst, size_t bytes) override;
    // Both wait until the copy is done (the host buffer may go away after).
    void upload(void* dst, const void* host_src, size_t bytes) override;
    void download(void* host_dst, const void* src, size_t bytes) override;
    // Rows by index through a device staging block (8 MiB, made at the first
    // use; in pieces of that size): the indices up, one gather or scatter
    // launch, one copy of the packed rows, one wait, where a sequence's cells
    // make more than a few runs (a saved or restored slot whose decode steps
    // interleaved with other slots' is a run per token per layer otherwise).
    // Also wait until done.
    void download_rows(void* host_dst, const void* src, size_t row_bytes, std::span<const int32_t> cells) override;
    void upload_rows(void* dst, const void* host_src, size_t row_bytes, std::span<const int32_t> cells) override;

  private:
    // False (nothing allocated) inside a graph capture or when the GPU has no room: the caller copies run by run.
    bool ensure_staging();
    // Whether rows go through the staging block: more than a few runs, rows that fit it, and the block.
    bool staged(size_t row_bytes, std::span<const int32_t> cells);

    int device_;
    cudaStream_t stream_ = nullptr;
    uint8_t* staging_ = nullptr;        // packed rows, kStagingBytes
    int32_t* staging_cells_ = nullptr;  // their indices
};

// CUDA managed (unified) memory: one address both the host and the GPU
// dereference, the pages moving to whichever touches them. The layer split
// (split_backend.h) keeps activations, the KV cache and recurrent states
// here so that CPU layers and GPU layers share them. Every call first waits
// for the whole device, so host accesses never race queued kernels.
class ManagedMemory final : public DeviceMemory {
  public:
    explicit ManagedMemory(int device);
    const char* name() const override { return "cuda-managed"; }
    bool is_host() const override { return true; }
    void* allocate(size_t bytes) override;
    void release(void* p) noexcept override;
    void copy(void* dst, const void* src, size_t bytes) override;
    void zero(void* dst, size_t bytes) override;
    void upload(void* dst, const void* host_src, size_t bytes) override;
    void download(void* host_dst, const void* src, size_t bytes) override;

  private:
    int device_;
};

}  // namespace moeserve::cuda
