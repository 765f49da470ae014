// llama-server's --fit, for the one thing moeserve can adjust: the context.
// With -c left unset, the server plans the training context; when that
// needs more than the memory available less --fit-target, it takes the
// largest -c that fits instead, never below --fit-ctx (if even that does not
// fit, the engine's memory check refuses it with the numbers).
#pragma once

#include <cstdint>

#include "gguf/gguf_file.h"
#include "server/server_options.h"

namespace moeserve {

struct FitResult {
    int64_t n_ctx = 0;          // the -c to use; 0: the training context, unchanged
    bool lowered = false;       // n_ctx is a fitted context below the training one
    uint64_t full_bytes = 0;    // what the training context would need
    uint64_t budget_bytes = 0;  // available - target
};

// available: the memory the plan must fit in (0: unknown, nothing is
// changed); host_weight_bytes: on a GPU run, the weights that stay in host
// memory and so do not count against it.
FitResult fit_context(const GgufFile& file, const ServerOptions& options, int n_slots, bool unified, uint64_t available,
                      uint64_t target, uint64_t host_weight_bytes = 0);

}  // namespace moeserve
