// Which rows a matrix-vector block computes (shared by the float and int8
// kernels, cuda_matmul.cu and cuda_matvec_int8.cu).
#pragma once

#include "backend/cuda/cuda_matmul_kernels.h"

namespace moeserve::cuda {

// The block's work: weight matrix `matrix`, activation/output rows
// [first, first + count) offset by the group (x_off, y_off in floats).
struct MatvecBlock {
    int matrix;
    int count;
    int64_t first;
    int64_t x_off, y_off;
};

// False when the block has no tile (a device tile list shorter than the grid).
template <int NT>
__device__ __forceinline__ bool matvec_block(const MatvecArgs& a, MatvecBlock& b) {
    b.x_off = b.y_off = 0;
    if (a.tiles) {
        if (static_cast<int>(blockIdx.y) >= *a.n_tiles) return false;
        const MatvecTile tile = a.tiles[blockIdx.y];
        b.matrix = tile.matrix, b.first = tile.first_row, b.count = tile.n_rows;
    } else {
        b.matrix = a.matrix0 + static_cast<int>(blockIdx.z);
        b.first = static_cast<int64_t>(blockIdx.y) * NT;
        b.count = static_cast<int>(min(static_cast<int64_t>(NT), a.n_tokens - b.first));
        b.x_off = blockIdx.z * a.x_group_stride;
        b.y_off = blockIdx.z * a.y_group_stride;
    }
    return true;
}

}  // namespace moeserve::cuda
