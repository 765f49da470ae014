#include "engine/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "backend/select_backend.h"
#include "memory/byte_size.h"

namespace moeserve {

GgmlType parse_cache_type(const std::string& name) {
    auto t = ggml_type_from_name(name);
    if (!t || !is_kv_cache_type(*t))
        throw std::invalid_argument(fmt::format(
            "unsupported cache type '{}' (allowed: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)", name));
    return *t;
}

PlanOptions engine_plan_options(const EngineOptions& options, int64_t n_ctx) {
    PlanOptions p;
    p.n_ctx = n_ctx;
    p.exact_cells = true;
    p.n_parallel = std::max(1, options.n_seq);
    p.type_k = options.type_k;
    p.type_v = options.type_v;
    p.n_ubatch = std::max<int64_t>(1, options.n_ubatch);
    p.n_threads = options.n_threads;
    p.n_recurrent_snapshots = options.n_rs_snapshots;
    p.speculative = options.speculative;
    p.spec_draft_max = options.spec_draft_max;
    return p;
}

Engine::Engine(const EngineOptions& options) : options_(options) {
    file_ = std::make_shared<GgufFile>(GgufFile::open(options.model_path, options.load_mode));
    const auto archs = supported_architectures();
    const bool loadable =
        !file_->header_only() && std::find(archs.begin(), archs.end(), file_->architecture()) != archs.end();

    // The backend first (nothing is loaded yet): a GPU run plans against
    // the card's free memory, less the weights that stay in host memory.
    int threads = options.n_threads > 0 ? options.n_threads : static_cast<int>(std::thread::hardware_concurrency());
    BackendRequest request;
    request.n_threads = std::max(1, threads);
    request.n_gpu_layers = options.n_gpu_layers;
    if (loadable) request.n_layer = static_cast<int>(file_->get_u32(file_->architecture() + ".block_count"));
    HostPlacement placement;
    if (loadable && options.experts.any()) {
        placement = resolve_expert_placement(*file_, request.n_layer, options.experts);
        request.host_experts = placement.host_experts;
    }
    backend_ = select_backend(request, &backend_note_);
    if (!backend_->runs_on_host()) {
        // On the CPU everything is in host memory anyway; on a GPU only whole
        // layers' experts can stay there.
        if (!placement.other_host_tensors.empty())
            throw std::invalid_argument(fmt::format(
                "-ot puts {} in host memory, but on a GPU moeserve keeps only routed experts (ffn_*_exps, with "
                "their router) there; narrow the pattern (e.g. -ot 'blk\\.[0-9]+\\.ffn_.*_exps\\.=CPU'), or use "
                "--cpu-moe, --n-cpu-moe N, or -ngl N below the layer count",
                placement.other_host_tensors.front()));
        for (const std::string& note : placement.notes) backend_note_ += (backend_note_.empty() ? "" : "; ") + note;
    }

    // Plan before loading: a configuration that does not fit is refused
    // here, with the numbers, rather than failing to allocate later.
    // Files the loader refuses by name (an unknown architecture, a
    // header-only file) get its error rather than the planner's.
    int64_t n_ctx = options.n_ctx;
    if (loadable) {
        MemoryBudget budget = memory_budget(*file_, request);
        if (backend_->runs_on_host()) budget.host_weight_bytes = 0;  // no device: all of it is here
        if (options.mem_bytes) {
            budget.bytes = options.mem_bytes;
            budget.label = "--mem";
        }
        PlanOptions po = engine_plan_options(options, 0);
        po.host_weight_bytes = budget.host_weight_bytes;
        const MemoryShape shape = read_memory_shape(*file_);
        if (n_ctx <= 0) n_ctx = shape.n_ctx_train;
        if (options.fit_ctx && budget.bytes) {
            n_ctx = largest_fitting_ctx(*file_, shape, po, budget.bytes);
            if (n_ctx == 0) n_ctx = 256;  // not even this fits: check_fits explains
        }
        po.n_ctx = n_ctx;
        plan_ = budget.bytes ? check_fits(*file_, po, budget.bytes, budget.label) : plan_memory(*file_, shape, po);
    }
    model_ = load_model(file_, backend_, options.rope);
    options_.n_ctx = n_ctx;
    KvCacheConfig cache_config =
        model_->kv_cache_config(n_ctx, std::max(1, options.n_seq), options.type_k, options.type_v);
    cache_config.n_rs_snapshots = options.n_rs_snapshots;
    cache_config.rs_rollback = options.speculative;
    cache_ = std::make_unique<KvCache>(cache_config, backend_->memory());
}

std::vector<float> Engine::eval(int seq, std::span<const int32_t> tokens, bool all_logits) {
    std::vector<float> out;
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t chunk = std::max<int64_t>(1, options_.n_ubatch);
    for (int64_t b = 0; b < n; b += chunk) {
        const int64_t e = std::min(n, b + chunk);
        Batch batch;
        const int64_t start = cache_->seq_length(seq);
        for (int64_t i = b; i < e; ++i)
            batch.add(tokens[i], static_cast<int32_t>(start + i - b), seq, all_logits || i == n - 1);
        std::vector<float> logits = model_->forward(batch, *cache_);
        out.insert(out.end(), logits.begin(), logits.end());
    }
    return out;
}

}  // namespace moeserve
