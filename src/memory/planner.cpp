#include "memory/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "engine/slot_layout.h"
#include "memory/byte_size.h"

namespace moeserve {
namespace {

uint64_t row_bytes(GgmlType t, int64_t n) {
    return n > 0 ? ggml_row_bytes(t, n) : 0;
}

uint64_t k_bytes_per_token(const MemoryShape& s, GgmlType t) {
    uint64_t b = 0;
    for (const auto& l : s.layers) b += row_bytes(t, l.n_embd_k);
    return b;
}

uint64_t v_bytes_per_token(const MemoryShape& s, GgmlType t) {
    uint64_t b = 0;
    for (const auto& l : s.layers) b += row_bytes(t, l.n_embd_v);
    return b;
}

std::string type_name(GgmlType t) {
    return std::string(ggml_type_name(t));
}

}  // namespace

uint64_t kv_bytes_per_token(const MemoryShape& shape, GgmlType type_k, GgmlType type_v) {
    return k_bytes_per_token(shape, type_k) + v_bytes_per_token(shape, type_v);
}

MemoryPlan plan_memory(const GgufFile& file, const PlanOptions& options) {
    return plan_memory(file, read_memory_shape(file), options);
}

MemoryPlan plan_memory(const GgufFile& file, const MemoryShape& shape, const PlanOptions& o) {
    if (o.n_parallel < 1) throw std::invalid_argument(fmt::format("-np must be at least 1, got {}", o.n_parallel));
    if (o.n_ubatch < 1 || o.n_batch < 1)
        throw std::invalid_argument(fmt::format("-b and -ub must be at least 1, got {} and {}", o.n_batch, o.n_ubatch));
    for (GgmlType t : {o.type_k, o.type_v})
        for (const auto& l : shape.layers)
            if (l.n_embd_k % ggml_type_info(t).block_size || l.n_embd_v % ggml_type_info(t).block_size)
                throw std::invalid_argument(fmt::format("cache type {} needs rows that are a multiple of {} values",
                                                        ggml_type_name(t), ggml_type_info(t).block_size));
    MemoryPlan p;
    p.shape = shape;
    p.options = o;
    p.n_seq = o.n_parallel;
    if (o.exact_cells) {
        p.n_ctx = o.n_ctx > 0 ? o.n_ctx : shape.n_ctx_train;
        p.n_ctx_seq = p.n_ctx;
        p.n_ctx_slot = p.n_ctx;
    } else {
        const SlotLayout l = compute_slot_layout(o.n_ctx, shape.n_ctx_train, o.n_parallel, o.kv_unified);
        p.n_stream = o.kv_unified ? 1 : o.n_parallel;
        p.n_ctx = l.n_cells;
        p.n_ctx_seq = l.n_ctx_seq;
        p.n_ctx_slot = l.n_ctx_slot;
    }
    p.n_tokens = std::min(o.n_ubatch, p.n_ctx);
    const int64_t rows_per_seq = 1 + (o.speculative ? std::max(0, o.spec_draft_max) : 0);
    p.n_outputs =
        std::min(p.n_tokens, o.n_outputs > 0 ? o.n_outputs : std::min<int64_t>(o.n_batch, p.n_seq * rows_per_seq));

    p.host_weights_bytes = std::min(o.host_weight_bytes, shape.weights_bytes);
    p.weights_bytes = shape.weights_bytes - p.host_weights_bytes;
    p.tables_bytes = shape.tables_bytes;
    const uint64_t cells = static_cast<uint64_t>(p.n_ctx);
    p.kv_k_bytes = k_bytes_per_token(shape, o.type_k) * cells;
    p.kv_v_bytes = v_bytes_per_token(shape, o.type_v) * cells;
    p.kv_bytes_per_token = kv_bytes_per_token(shape, o.type_k, o.type_v);
    p.kv_bytes = p.kv_k_bytes + p.kv_v_bytes;
    p.kv_index_bytes = shape.kv_layers() > 0 ? cells * 8 : 0;  // free list + sequence cell tables, int32 each
    p.recurrent_bytes_per_seq = static_cast<uint64_t>(shape.recurrent_floats_per_seq()) * 4;
    const int device_snapshots = std::min(o.n_recurrent_snapshots, RecurrentState::kDeviceSnapshots);
    p.recurrent_bytes =
        p.recurrent_bytes_per_seq * std::max(1, p.n_seq) * (1 + device_snapshots + (o.speculative ? 1 : 0));
    int64_t rungs = o.n_recurrent_snapshots - device_snapshots;
    if (o.checkpoint_min_step > 0) rungs = std::min<int64_t>(rungs, 1 + p.n_ctx_slot / o.checkpoint_min_step);
    p.recurrent_host_snapshots_max = shape.recurrent_layers() > 0 ? static_cast<int>(rungs) : 0;
    p.recurrent_host_bytes_max = p.recurrent_bytes_per_seq * std::max(1, p.n_seq) * p.recurrent_host_snapshots_max;

    WorkspaceParams w;
    w.n_tokens = p.n_tokens;
    w.n_outputs = p.n_outputs;
    w.n_kv = std::min(p.n_ctx_seq, p.n_ctx);
    w.n_cells = p.n_ctx;
    w.n_seq = std::max(1, p.n_seq);
    w.n_threads = o.n_threads > 0 ? o.n_threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    w.type_k = o.type_k;
    w.type_v = o.type_v;
    p.workspace = plan_workspace(file, shape, w);
    p.workspace_bytes = p.workspace.total();
    p.output_bytes = static_cast<uint64_t>(p.n_outputs) * shape.n_vocab * 4;
    p.total_bytes = p.weights_bytes + p.tables_bytes + p.kv_bytes + p.kv_index_bytes + p.recurrent_bytes +
                    p.workspace_bytes + p.output_bytes;
    return p;
}

std::vector<PlannedBuffer> MemoryPlan::buffers() const {
    std::vector<PlannedBuffer> out;
    out.push_back({"weights", weights_bytes,
                   host_weights_bytes ? fmt::format("{} tensors, {} of them in host memory (not counted here)",
                                                    shape.n_tensors, format_bytes(host_weights_bytes))
                                      : fmt::format("{} tensors, mapped from the file", shape.n_tensors)});
    out.push_back({"metadata and tensor tables", tables_bytes, "the parsed header and weight bindings"});
    if (shape.kv_layers() > 0) {
        out.push_back({"KV cache K (" + type_name(options.type_k) + ")", kv_k_bytes,
                       fmt::format("{} layers × {} cells × {} B", shape.kv_layers(), n_ctx,
                                   k_bytes_per_token(shape, options.type_k) / shape.kv_layers())});
        const bool mla = shape.kv_elements_v() == 0;
        out.push_back({"KV cache V (" + type_name(options.type_v) + ")", kv_v_bytes,
                       mla ? std::string("none: MLA values are read from K's latent")
                           : fmt::format("{} layers × {} cells × {} B", shape.kv_layers(), n_ctx,
                                         v_bytes_per_token(shape, options.type_v) / shape.kv_layers())});
        out.push_back({"KV cell tables", kv_index_bytes, fmt::format("{} cells × 8 B", n_ctx)});
    }
    if (shape.recurrent_layers() > 0)
        out.push_back(
            {"recurrent state (f32)", recurrent_bytes,
             fmt::format("{} seqs × (live + {} snapshots{}) × {} ({} Mamba2 layers), any context length",
                         std::max(1, n_seq), std::min(options.n_recurrent_snapshots, RecurrentState::kDeviceSnapshots),
                         options.speculative ? " + 1 for speculative decoding" : "",
                         format_bytes(recurrent_bytes_per_seq), shape.recurrent_layers())});
    out.push_back(
        {"compute workspace", workspace_bytes,
         fmt::format("batch of {} tokens, {} cells visible: {} kept between passes + {} at the peak", n_tokens,
                     std::min(n_ctx_seq, n_ctx), format_bytes(workspace.held), format_bytes(workspace.transient))});
    out.push_back({"output (logits)", output_bytes, fmt::format("{} rows × {} × 4 B", n_outputs, shape.n_vocab)});
    return out;
}

int64_t largest_fitting_ctx(const GgufFile& file, const MemoryShape& shape, PlanOptions o, uint64_t mem_bytes) {
    const int64_t cap =
        std::min<int64_t>(static_cast<int64_t>(std::max(1, o.n_parallel)) * shape.n_ctx_train, int64_t{1} << 30);
    auto fits = [&](int64_t c) {
        o.n_ctx = c;
        return plan_memory(file, shape, o).total_bytes <= mem_bytes;
    };
    auto ctx_of = [&](int64_t k) { return std::min(k * 256, cap); };
    int64_t lo = 0, hi = (cap + 255) / 256;  // in steps of 256: lo fits (or is 0), hi does not
    if (fits(ctx_of(hi))) return ctx_of(hi);
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (fits(ctx_of(mid)))
            lo = mid;
        else
            hi = mid;
    }
    return ctx_of(lo);
}

MemoryPlan check_fits(const GgufFile& file, const PlanOptions& options, uint64_t mem_bytes,
                      const std::string& mem_label) {
    const MemoryShape shape = read_memory_shape(file);
    MemoryPlan plan = plan_memory(file, shape, options);
    if (plan.total_bytes <= mem_bytes) return plan;
    const int64_t best = largest_fitting_ctx(file, shape, options, mem_bytes);
    std::string parts;
    for (const auto& b : plan.buffers())
        if (b.bytes) parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", b.name, format_bytes(b.bytes));
    const bool capped = best >= static_cast<int64_t>(std::max(1, options.n_parallel)) * shape.n_ctx_train;
    std::string advice = best > 0 ? fmt::format("the largest context that fits is -c {}{} (--fit picks it)", best,
                                                capped ? ", the model's training context" : "")
                                  : fmt::format(
                                        "not even -c 256 fits: use a smaller model or quantization, fewer slots or a "
                                        "quantized KV cache (-ctk/-ctv q8_0 or q4_0)");
    throw MemoryFitError(
        fmt::format("{}: -c {} with {} slot(s) needs {} but {} is available ({}): {}; {}", file.path(), plan.n_ctx,
                    plan.n_seq, format_bytes(plan.total_bytes), format_bytes(mem_bytes), mem_label, parts, advice),
        best);
}

}  // namespace moeserve
