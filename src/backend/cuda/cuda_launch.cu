// The programmatic-dependent-launch switch of cuda_launch.cuh.
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

// Never launched: compiled like every other kernel of the backend, it tells
// pdl_launches() which PTX version the device runs them as.
__global__ void pdl_probe() {
    kernel_prologue();
}

}  // namespace

bool pdl_launches() {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_PDL");
        if (!v || std::string(v) != "1") return false;
        int device = 0, major = 0;
        cudaFuncAttributes probe{};
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
            cudaFuncGetAttributes(&probe, reinterpret_cast<const void*>(pdl_probe)) != cudaSuccess) {
            cudaGetLastError();  // not left for the next launch check to report
            return false;
        }
        // kernel_prologue is empty in kernels compiled for a PTX version below
        // 9.0 (an architecture list without 90 or later, JIT-compiled for this
        // device): launched early, they would not wait for their inputs.
        return major >= 9 && probe.ptxVersion >= 90;
    }();
    return on;
}

}  // namespace moeserve::cuda
