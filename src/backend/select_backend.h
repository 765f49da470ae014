// Picks the backend for -ngl: the CPU, or the CUDA backend when this build
// has it and a device is present. The one place that knows which backends
// were built.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/split_backend.h"

namespace moeserve {

// -ngl: a layer count, or one of these.
inline constexpr int kGpuLayersAuto = -1;  // the GPU when there is one, else the CPU, silently
inline constexpr int kGpuLayersAll = -2;   // every layer on the GPU

struct BackendRequest {
    int n_threads = 1;     // CPU threads (the CPU backend)
    int n_gpu_layers = 0;  // 0: CPU only
    int n_layer = 0;       // the model's layer count, to tell "all" from a split
    // Per layer (empty: none): its routed experts stay in host memory and
    // run on the CPU (--cpu-moe, --n-cpu-moe, -ot; expert_placement.h).
    // A CPU run has them there anyway.
    std::vector<bool> host_experts;
};

// The backend for the request. A request for GPU layers in a build without
// CUDA, or on a machine without a device, falls back to the CPU with a note
// in *note (empty when nothing needs saying). Offloading only some layers
// (0 < n_gpu_layers <= n_layer) splits the model as llama.cpp counts them,
// the output head being layer n_layer: the head and the last
// n_gpu_layers - 1 blocks on the GPU, the embedding and the first blocks on
// the CPU (split_backend.h); so do layers whose experts stay in host memory:
// their expert FFNs run on the CPU, the rest of the model on the GPU.
std::shared_ptr<Backend> select_backend(const BackendRequest& request, std::string* note);

// How a GPU run of the request divides the model (split_backend.h); null
// when the whole model is on the GPU (or the request is for the CPU).
std::optional<SplitPlan> split_plan_for(const BackendRequest& request);

// The weights a GPU run of the request leaves in host memory: the CPU
// layers' of a layer split and the routed experts kept there (0 for a CPU
// run or the whole model on the card).
uint64_t host_weight_bytes(const GgufFile& file, const BackendRequest& request);

// The memory a run of the request must fit in: on a GPU (a CUDA build with
// a device, -ngl not 0), what is free on the card now, less nothing (call it
// once the backend exists, so its context is counted); else MemAvailable.
struct MemoryBudget {
    bool gpu = false;                // the budget is the card's
    uint64_t bytes = 0;              // 0: unknown
    uint64_t host_weight_bytes = 0;  // weights that stay in host memory (a GPU run)
    std::string label;               // "MemAvailable", "free on <the card>"
};
MemoryBudget memory_budget(const GgufFile& file, const BackendRequest& request);

// Whether this build has the CUDA backend.
bool cuda_backend_built();

// The GPU's device-to-device copy bandwidth in GB/s (bytes read plus bytes
// written per second, over a 1 GiB copy); 0 without CUDA or a device.
// The bound benchmarks compare GPU decode speeds with.
double measure_gpu_copy_bandwidth();

// Parses -ngl's value: N >= 0, "auto" or "all" (-1 means auto, as in
// llama.cpp). Throws std::invalid_argument naming the value.
int parse_gpu_layers(const std::string& value);

}  // namespace moeserve
