#include "server/context_fit.h"

#include <algorithm>

#include "engine/engine.h"
#include "memory/planner.h"

namespace moeserve {

FitResult fit_context(const GgufFile& file, const ServerOptions& options, int n_slots, bool unified, uint64_t available,
                      uint64_t target, uint64_t host_weight_bytes,
                      const std::function<uint64_t(int)>& host_weight_bytes_for) {
    PlanOptions po;
    po.n_ctx = options.n_ctx_given ? options.n_ctx : 0;  // unset: the training context, as -c 0
    po.n_parallel = n_slots;
    po.kv_unified = unified;
    po.type_k = parse_cache_type(options.cache_type_k);
    po.type_v = parse_cache_type(options.cache_type_v);
    po.n_batch = options.n_batch;
    po.n_ubatch = options.n_ubatch;
    po.n_threads = options.n_threads > 0 ? options.n_threads : 0;
    po.n_recurrent_snapshots = options.ctx_checkpoints;
    po.host_weight_bytes = host_weight_bytes;
    const MemoryShape shape = read_memory_shape(file);
    FitResult r;
    r.full_bytes = plan_memory(file, shape, po).total_bytes;
    r.budget_bytes = available > target ? available - target : 0;
    if (available == 0 || r.full_bytes <= r.budget_bytes) return r;
    const auto fits = [&] { return plan_memory(file, shape, po).total_bytes <= r.budget_bytes; };
    if (!options.n_ctx_given) {
        const int64_t fitted = std::max(largest_fitting_ctx(file, shape, po, r.budget_bytes), options.fit_ctx);
        if (fitted < shape.n_ctx_train) {  // else --fit-ctx is the training context or more: nothing to lower
            r.n_ctx = po.n_ctx = fitted;
            r.lowered = true;
        }
    }
    if (!host_weight_bytes_for || fits()) return r;
    for (int n = 1; n <= shape.n_layer; ++n) {
        po.host_weight_bytes = host_weight_bytes_for(n);
        if (fits()) {
            r.n_cpu_moe = n;
            break;
        }
    }
    return r;
}

}  // namespace moeserve
