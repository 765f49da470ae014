#include "backend/select_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "backend/split_backend.h"

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

std::shared_ptr<Backend> select_backend(const BackendRequest& r, std::string* note) {
    if (note) note->clear();
    const bool wants_gpu = r.n_gpu_layers != 0;
    const bool explicit_gpu = r.n_gpu_layers > 0 || r.n_gpu_layers == kGpuLayersAll;
    // llama.cpp's count: the output head is layer n_layer, filled first, so
    // -ngl N up to the layer count puts the head and the last N-1 blocks on
    // the GPU, the rest on the CPU; above it, everything.
    const bool split = r.n_gpu_layers > 0 && r.n_layer > 0 && r.n_gpu_layers <= r.n_layer;
    const auto ignored = [&] { return r.n_gpu_layers == kGpuLayersAll ? "all" : std::to_string(r.n_gpu_layers); };
#ifdef MOESERVE_WITH_CUDA
    if (wants_gpu) {
        if (cuda::device_count() > 0) {
            const bool host_experts =
                std::find(r.host_experts.begin(), r.host_experts.end(), true) != r.host_experts.end();
            if (!split && !host_experts) return make_cuda_backend(0);
            SplitPlan plan;
            plan.n_layer = r.n_layer;
            plan.first_device_layer = split ? r.n_layer + 1 - r.n_gpu_layers : 0;
            plan.head_on_device = true;
            plan.host_experts = r.host_experts;
            std::shared_ptr<Backend> host = make_cpu_backend(std::max(1, r.n_threads));
            std::shared_ptr<Backend> device = make_cuda_backend(0);
            return make_split_backend(std::move(host), std::move(device), std::move(plan), make_cuda_managed_memory(0));
        }
        if (explicit_gpu && note)
            *note = fmt::format("no CUDA device found; -ngl {} is ignored, running on the CPU", ignored());
    }
#else
    (void)wants_gpu, (void)split;
    if (explicit_gpu && note)
        *note = fmt::format("this build has no GPU backend (build with `make cuda`); -ngl {} is ignored", ignored());
#endif
    return make_cpu_backend(std::max(1, r.n_threads));
}

}  // namespace moeserve
