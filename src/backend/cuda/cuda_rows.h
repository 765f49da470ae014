// Gathering and scattering rows of a device array by index (the KV cache's
// cells of one sequence), for CudaMemory::download_rows / upload_rows: one
// launch instead of a copy per run of consecutive cells.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moeserve::cuda {

// dst[i] := row cells[i] of src, i < n (rows of row_bytes; cells in device memory).
void gather_rows(cudaStream_t stream, const uint8_t* src, size_t row_bytes, const int32_t* cells, int64_t n,
                 uint8_t* dst);
// Row cells[i] of dst := src[i], i < n.
void scatter_rows(cudaStream_t stream, uint8_t* dst, size_t row_bytes, const int32_t* cells, int64_t n,
                  const uint8_t* src);

}  // namespace moeserve::cuda
