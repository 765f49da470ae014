// Row gathers and scatters by index (cuda_rows.h): a block per row (a grid
// stride beyond 4096 rows), its threads copying the row in the widest unit
// that the row size and both base addresses allow.
#include "backend/cuda/cuda_rows.h"

#include <algorithm>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxBlocks = 4096;

// GATHER: dst row r := src row cells[r]; else dst row cells[r] := src row r.
template <class U, bool GATHER>
__global__ void move_rows_kernel(const uint8_t* src, uint8_t* dst, size_t row_bytes, const int32_t* cells, int64_t n) {
    kernel_prologue();
    const size_t units = row_bytes / sizeof(U);
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        const size_t from = GATHER ? static_cast<size_t>(cells[r]) : static_cast<size_t>(r);
        const size_t to = GATHER ? static_cast<size_t>(r) : static_cast<size_t>(cells[r]);
        const U* s = reinterpret_cast<const U*>(src + from * row_bytes);
        U* d = reinterpret_cast<U*>(dst + to * row_bytes);
        for (size_t i = threadIdx.x; i < units; i += blockDim.x) d[i] = s[i];
    }
}

template <bool GATHER>
void move_rows(cudaStream_t stream, const uint8_t* src, uint8_t* dst, size_t row_bytes, const int32_t* cells,
               int64_t n) {
    if (n <= 0 || row_bytes == 0) return;
    const auto fits = [&](size_t a) {
        return row_bytes % a == 0 && reinterpret_cast<uintptr_t>(src) % a == 0 &&
               reinterpret_cast<uintptr_t>(dst) % a == 0;
    };
    const dim3 grid(static_cast<unsigned>(std::min(n, kMaxBlocks)));
    if (fits(16))
        launch_kernel(move_rows_kernel<uint4, GATHER>, grid, kThreads, 0, stream, src, dst, row_bytes, cells, n);
    else if (fits(4))
        launch_kernel(move_rows_kernel<uint32_t, GATHER>, grid, kThreads, 0, stream, src, dst, row_bytes, cells, n);
    else if (fits(2))
        launch_kernel(move_rows_kernel<uint16_t, GATHER>, grid, kThreads, 0, stream, src, dst, row_bytes, cells, n);
    else
        launch_kernel(move_rows_kernel<uint8_t, GATHER>, grid, kThreads, 0, stream, src, dst, row_bytes, cells, n);
    MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gather_rows(cudaStream_t stream, const uint8_t* src, size_t row_bytes, const int32_t* cells, int64_t n,
                 uint8_t* dst) {
    move_rows<true>(stream, src, dst, row_bytes, cells, n);
}

void scatter_rows(cudaStream_t stream, uint8_t* dst, size_t row_bytes, const int32_t* cells, int64_t n,
                  const uint8_t* src) {
    move_rows<false>(stream, src, dst, row_bytes, cells, n);
}

}  // namespace moeserve::cuda
