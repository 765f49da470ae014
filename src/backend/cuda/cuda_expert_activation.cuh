// The FFN activations on the GPU, one definition for the separate activation
// kernel (cuda_moe.cu) and the matrix-vector kernel's fused epilogue
// (cuda_matmul.cu), so that both give the same bits.
#pragma once

#include "backend/backend.h"

namespace moeserve::cuda {

// e^x and silu(x) = x / (1 + e^-x) with the CPU backend's bits: its std::exp
// (glibc's expf, correctly rounded but in the rarest cases) is e^-x in double
// rounded once to float, and the add and divide are IEEE (--use_fast_math
// would make expf the approximate __expf and the division approximate). The
// bits matter where the result is next rounded to int8 (the down
// projection's q8_K input): an ulp can move a code.
__device__ __forceinline__ float cpu_expf(float x) {
    return static_cast<float>(exp(static_cast<double>(x)));
}
__device__ __forceinline__ float cpu_silu(float x) {
    return __fdiv_rn(x, __fadd_rn(1.0f, cpu_expf(-x)));
}

// SwiGLU: silu(g) * u. ReLU²: max(g, 0)², u unused.
__device__ __forceinline__ float expert_activation(float g, float u, ExpertActivation act) {
    if (act == ExpertActivation::SwiGlu) return __fmul_rn(cpu_silu(g), u);
    const float r = fmaxf(g, 0.0f);
    return __fmul_rn(r, r);
}

}  // namespace moeserve::cuda
