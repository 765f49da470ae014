// How every kernel of the CUDA backend is launched, and the first thing each
// one does, so that consecutive kernels can overlap their launch with the
// previous kernel's end (programmatic dependent launch, PDL, compute
// capability 9.0 and later).
//
// Why: a decoded token of a 48-layer MoE model is ~15 small dependent kernels
// a layer, each of a few µs, and on the H200 a layer took ~91 µs where its
// weights need ~8 µs of bandwidth (bench/README.md): most of the step is the
// gaps between kernels. With MOESERVE_CUDA_PDL=1 each launch carries the
// programmatic-stream-serialization attribute (captured into CUDA graphs as
// programmatic edges): the next kernel may be scheduled as soon as every
// block of the current one has passed its prologue (so once the kernel before
// it has finished), and it waits at its first statement (kernel_prologue)
// until the current one has finished and its writes are visible. Without the
// attribute both instructions of the prologue return at once, so the default
// path is unchanged. Internal to src/backend/cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "backend/cuda/cuda_context.h"

namespace moeserve::cuda {

// The first statement of every __global__ function (tests/cuda_kernel_sources_test.cpp
// checks the sources): waits for the previous kernel in the stream to finish
// (griddepcontrol.wait), then lets the next one be scheduled
// (griddepcontrol.launch_dependents). Nothing may be read or written before
// it: the previous kernel may still be running.
__device__ __forceinline__ void kernel_prologue() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), with the PDL attribute when
// pdl_launches(); throws on a launch error.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    cudaLaunchAttribute attribute[1] = {};
    if (pdl_launches()) {
        attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute[0].val.programmaticStreamSerializationAllowed = 1;
        config.attrs = attribute;
        config.numAttrs = 1;
    }
    MOESERVE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace moeserve::cuda
