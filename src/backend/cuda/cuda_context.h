// What every CUDA op needs: the stream it runs on, the cuBLAS handle and a
// scratch arena for temporaries (quantized activations, dequantized weight
// tiles, routing tables). Plain C++ (no kernels), so .cpp files may include it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace moeserve::cuda {

// Throws std::runtime_error naming the call, file and line on a CUDA error.
#define MOESERVE_CUDA_CHECK(expr)                                                                             \
    do {                                                                                                      \
        cudaError_t moeserve_err_ = (expr);                                                                   \
        if (moeserve_err_ != cudaSuccess)                                                                     \
            ::moeserve::cuda::throw_cuda_error(#expr, cudaGetErrorString(moeserve_err_), __FILE__, __LINE__); \
    } while (0)

#define MOESERVE_CUBLAS_CHECK(expr)                                                                             \
    do {                                                                                                        \
        cublasStatus_t moeserve_st_ = (expr);                                                                   \
        if (moeserve_st_ != CUBLAS_STATUS_SUCCESS)                                                              \
            ::moeserve::cuda::throw_cuda_error(#expr, cublasGetStatusString(moeserve_st_), __FILE__, __LINE__); \
    } while (0)

[[noreturn]] void throw_cuda_error(const char* call, const char* what, const char* file, int line);

// Launch errors surface at the next call; check right after each launch.
#define MOESERVE_CUDA_CHECK_LAUNCH() MOESERVE_CUDA_CHECK(cudaGetLastError())

// Whether kernel launches (cuda_launch.cuh, cuda_launch.cu) carry the programmatic dependent
// launch attribute: MOESERVE_CUDA_PDL=1 (opt-in until a GPU run has checked
// and timed it) on a device of compute capability 9.0 or later that runs the
// kernels as compiled for PTX 9.0 or later (where kernel_prologue waits).
// Read once.
bool pdl_launches();

// A grow-only bump allocator in device memory. take() hands out aligned
// pieces until reset(); the memory stays valid until then even while kernels
// queued on the stream still use it. Growing (a rare event: the first batch
// of a new size) synchronizes the stream and keeps the old block alive until
// the next reset.
class Scratch {
  public:
    explicit Scratch(cudaStream_t stream) : stream_(stream) {}
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;

    void* take(size_t bytes, size_t align = 256);
    template <class T>
    T* take_n(size_t n) {
        return static_cast<T*>(take(n * sizeof(T)));
    }
    void reset();  // all pieces handed out since the last reset are free again
    size_t capacity() const { return capacity_; }
    // Grows the block to at least `bytes` now. While the stream is being
    // captured into a graph it throws NotCapturable instead (cuda_graph.h):
    // the pass runs again op by op and grows it then.
    void reserve(size_t bytes);
    // Counts the blocks allocated: a graph captured before holds addresses
    // in a block that may be gone.
    uint64_t generation() const { return generation_; }

  private:
    cudaStream_t stream_;
    char* base_ = nullptr;
    size_t capacity_ = 0;
    size_t used_ = 0;
    uint64_t generation_ = 0;
    std::vector<void*> retired_;  // outgrown blocks, freed at reset()
};

struct Context {
    int device = 0;
    int sm_count = 0;
    size_t shared_mem_per_block_optin = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    Scratch* scratch = nullptr;
};

// Lets `kernel` (a __global__ function) launch with `bytes` of dynamic shared
// memory on the current device. Only ever raises the function's limit: a
// launch captured into a CUDA graph with a larger request must still be
// allowed when the graph replays after smaller launches.
void raise_dynamic_smem_limit(const void* kernel, size_t bytes);

// Number of CUDA devices; 0 when there is no GPU or no driver (never throws).
int device_count();
// "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90", for logs and test skips.
std::string device_description(int device);
// Device-to-device copy bandwidth in bytes/s (read + written), best of a few
// 1 GiB copies.
double measure_copy_bandwidth(int device);

}  // namespace moeserve::cuda
