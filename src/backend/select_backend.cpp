#include "backend/select_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "backend/split_backend.h"
#include "gguf/gguf_file.h"
#include "memory/byte_size.h"

#ifdef MOESERVE_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#endif

namespace moeserve {

bool cuda_backend_built() {
#ifdef MOESERVE_WITH_CUDA
    return true;
#else
    return false;
#endif
}

double measure_gpu_copy_bandwidth() {
#ifdef MOESERVE_WITH_CUDA
    return cuda::device_count() > 0 ? cuda::measure_copy_bandwidth(0) / 1e9 : 0.0;
#else
    return 0.0;
#endif
}

int parse_gpu_layers(const std::string& value) {
    if (value == "auto" || value == "-1") return kGpuLayersAuto;
    if (value == "all") return kGpuLayersAll;
    int n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < 0)
        throw std::invalid_argument(fmt::format("-ngl expects a layer count, 'auto' or 'all', got '{}'", value));
    return n;
}

namespace {

// Whether a request for GPU layers gets the GPU: a CUDA build with a device.
bool gpu_present() {
#ifdef MOESERVE_WITH_CUDA
    return cuda::device_count() > 0;
#else
    return false;
#endif
}

}  // namespace

std::optional<SplitPlan> split_plan_for(const BackendRequest& r) {
    if (r.n_gpu_layers == 0 || r.n_layer <= 0) return std::nullopt;
    // llama.cpp's count: the output head is layer n_layer, filled first, so
    // -ngl N up to the layer count puts the head and the last N-1 blocks on
    // the GPU, the rest on the CPU; above it, everything.
    const bool split = r.n_gpu_layers > 0 && r.n_gpu_layers <= r.n_layer;
    const bool host_experts = std::find(r.host_experts.begin(), r.host_experts.end(), true) != r.host_experts.end();
    if (!split && !host_experts) return std::nullopt;
    SplitPlan plan;
    plan.n_layer = r.n_layer;
    plan.first_device_layer = split ? r.n_layer + 1 - r.n_gpu_layers : 0;
    plan.head_on_device = true;
    plan.host_experts = r.host_experts;
    return plan;
}

uint64_t host_weight_bytes(const GgufFile& file, const BackendRequest& r) {
    const std::optional<SplitPlan> plan = split_plan_for(r);
    if (!plan) return 0;
    const bool tied = ties_output_to_embedding(file);
    uint64_t bytes = 0;
    for (const auto& t : file.tensors())
        if (!split_device_holds(*plan, t.name, tied)) bytes += t.nbytes;
    return bytes;
}

MemoryBudget memory_budget(const GgufFile& file, const BackendRequest& r) {
    MemoryBudget b;
#ifdef MOESERVE_WITH_CUDA
    if (r.n_gpu_layers != 0 && gpu_present()) {
        size_t free_bytes = 0, total = 0;
        if (cudaMemGetInfo(&free_bytes, &total) == cudaSuccess) {
            b.gpu = true;
            b.bytes = free_bytes;
            b.host_weight_bytes = host_weight_bytes(file, r);
            b.label = "free on " + cuda::device_description(0);
            return b;
        }
        cudaGetLastError();
    }
#endif
    (void)file, (void)r;
    b.bytes = available_memory_bytes();
    b.label = "MemAvailable";
    return b;
}

std::shared_ptr<Backend> select_backend(const BackendRequest& r, std::string* note) {
    if (note) note->clear();
    const bool wants_gpu = r.n_gpu_layers != 0;
    const bool explicit_gpu = r.n_gpu_layers > 0 || r.n_gpu_layers == kGpuLayersAll;
    const auto ignored = [&] { return r.n_gpu_layers == kGpuLayersAll ? "all" : std::to_string(r.n_gpu_layers); };
#ifdef MOESERVE_WITH_CUDA
    if (wants_gpu) {
        if (gpu_present()) {
            std::optional<SplitPlan> plan = split_plan_for(r);
            if (!plan) return make_cuda_backend(0);
            std::shared_ptr<Backend> host = make_cpu_backend(std::max(1, r.n_threads));
            std::shared_ptr<Backend> device = make_cuda_backend(0);
            return make_split_backend(std::move(host), std::move(device), std::move(*plan),
                                      make_cuda_managed_memory(0));
        }
        if (explicit_gpu && note)
            *note = fmt::format("no CUDA device found; -ngl {} is ignored, running on the CPU", ignored());
    }
#else
    (void)wants_gpu;
    if (explicit_gpu && note)
        *note = fmt::format("this build has no GPU backend (build with `make cuda`); -ngl {} is ignored", ignored());
#endif
    return make_cpu_backend(std::max(1, r.n_threads));
}

}  // namespace moeserve
