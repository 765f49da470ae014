// llama-server's --fit: what moeserve adjusts so that a configuration fits
// the memory available less --fit-target. First the context: with -c left
// unset, the server plans the training context, and when that does not fit
// takes the largest -c that does, never below --fit-ctx. Then, on a GPU run
// whose placement was left to it (no -ngl, -ot, -cmoe or -ncmoe), the routed
// experts: when even that context does not fit on the card, the experts of
// the first N layers stay in host memory, the smallest N that fits (as
// llama.cpp's --fit keeps experts off the card first). What still does not
// fit, the engine's memory check refuses with the numbers.
#pragma once

#include <cstdint>
#include <functional>

#include "gguf/gguf_file.h"
#include "server/server_options.h"

namespace moeserve {

struct FitResult {
    int64_t n_ctx = 0;          // the -c to use; 0: the training context, unchanged
    bool lowered = false;       // n_ctx is a fitted context below the training one
    uint64_t full_bytes = 0;    // what the training context would need
    uint64_t budget_bytes = 0;  // available - target
    int n_cpu_moe = 0;          // > 0: keep the routed experts of the first n_cpu_moe layers in host memory
};

// available: the memory the plan must fit in (0: unknown, nothing is
// changed); host_weight_bytes: on a GPU run, the weights that stay in host
// memory and so do not count against it; host_weight_bytes_for: on a GPU run
// whose experts --fit may place, the weights left in host memory with the
// experts of the first N layers there (null: the placement is fixed).
FitResult fit_context(const GgufFile& file, const ServerOptions& options, int n_slots, bool unified, uint64_t available,
                      uint64_t target, uint64_t host_weight_bytes = 0,
                      const std::function<uint64_t(int)>& host_weight_bytes_for = nullptr);

}  // namespace moeserve
