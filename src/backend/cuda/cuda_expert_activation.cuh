// The FFN activations on the GPU, one definition for the separate activation
// kernel (cuda_moe.cu) and the matrix-vector kernel's fused epilogue
// (cuda_matmul.cu), so that both give the same bits.
#pragma once

#include "backend/backend.h"

namespace moeserve::cuda {

// SwiGLU: silu(g) * u. ReLU²: max(g, 0)², u unused.
__device__ __forceinline__ float expert_activation(float g, float u, ExpertActivation act) {
    if (act == ExpertActivation::SwiGlu) return g / (1.0f + __expf(-g)) * u;
    const float r = fmaxf(g, 0.0f);
    return r * r;
}

}  // namespace moeserve::cuda
