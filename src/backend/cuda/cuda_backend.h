// The CUDA backend: the backend interface on one GPU. Weights are uploaded
// once (load_weights) and stay in their GGUF block formats; activations, the
// KV cache and recurrent states are allocated in GPU memory (memory()); each
// forward pass's index arrays are uploaded once (begin_batch). The CPU only
// schedules: ops queue kernels on one stream and return.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cuda/cuda_graph.h"

namespace moeserve {

// Throws std::runtime_error when there is no usable CUDA device.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

// Managed memory on `device` (cuda_memory.h): what a layer split's CPU and
// GPU layers share.
std::unique_ptr<DeviceMemory> make_cuda_managed_memory(int device = 0);

// How the CUDA backend ran its passes (captured, replayed, op by op); zeros
// for any other backend.
cuda::GraphStats cuda_graph_stats(Backend& backend);
// Turns decode graphs on or off for one CUDA backend (on unless the
// environment has MOESERVE_CUDA_GRAPHS=0); no effect on other backends.
void set_cuda_graphs(Backend& backend, bool on);

}  // namespace moeserve
