// moeserve plan: the memory budget of a model for a set of flags — every
// buffer, the total and whether it fits — then the largest context that
// fits for -np 1, 2, 4, 8 with each KV cache type, and KV bytes per 1K
// tokens. Needs only the GGUF header, so header-only synth files work.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "backend/expert_placement.h"
#include "backend/select_backend.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/engine_flags.h"
#include "engine/engine.h"
#include "engine/ngram_draft.h"
#include "gguf/file_type.h"
#include "memory/byte_size.h"
#include "memory/planner.h"

namespace moeserve::cli {
namespace {

const char* kUsage =
    "usage: moeserve plan -m MODEL [--mem SIZE] [flags...] [--json]\n"
    "\n"
    "Prints every buffer serving MODEL with these flags allocates (weights, KV\n"
    "cache, recurrent state, compute workspace, logits), the total, whether it\n"
    "fits in SIZE, and the largest context that fits for -np 1, 2, 4, 8 with an\n"
    "f16, q8_0 or q4_0 KV cache. Only the file's header is read.\n"
    "\n"
    "  -m, --model FILE          GGUF model (a header-only synth file will do)\n"
    "  --mem SIZE                memory budget: 24GiB, 24GB, 512MiB or bytes (default: MemAvailable)\n"
    "  -c, --ctx-size N          context size; 0 = the model's training context (default)\n"
    "  -np, --parallel N         slots (default: 4 slots sharing one unified cache, as llama-server)\n"
    "  -kvu, --kv-unified        one KV stream shared by all slots\n"
    "  -ctk, --cache-type-k T    K cache type (default f16)\n"
    "  -ctv, --cache-type-v T    V cache type (default f16)\n"
    "  -b, --batch-size N        logical batch (default 2048)\n"
    "  -ub, --ubatch-size N      tokens per forward pass (default 512)\n"
    "  -t, --threads N           threads (default: all cores)\n"
    "  -ctxcp, --ctx-checkpoints N  hybrid models: recurrent-state snapshots per slot (default 32: 4\n"
    "                            in the buffers, the rest in host RAM as long conversations use them)\n"
    "  -cms, --checkpoint-min-step N  hybrid models: tokens between those in host RAM (default 8192)\n"
    "  --spec-type TYPE          ngram-simple, ngram-mod or both: speculative decoding: logits rows for\n"
    "                            each slot's guesses, and hybrid models keep one more recurrent state per\n"
    "                            slot to roll back to (none: the default)\n"
    "  --spec-draft-n-max N      ngram-simple: most guesses per slot and step (default 16, at most\n"
    "                            --spec-ngram-simple-size-m, default 48)\n"
    "  --spec-ngram-mod-n-max N  ngram-mod: most guesses per slot and step (default 64)\n"
    "  -ngl, --n-gpu-layers N    a CUDA run: the buffers are the same, on the card; -ngl N up to the layer\n"
    "                            count keeps the first layers' weights in host memory, and the plan counts\n"
    "                            only the card's\n"
    "  -cmoe, -ncmoe N, -ot REGEX=BUFTYPE,...\n"
    "                            routed experts kept in host memory on a CUDA run (as serve; without -ngl:\n"
    "                            -ngl all): the plan, the fit and the table count only the card's bytes\n"
    "  -fa, --flash-attn MODE    accepted (on, off, auto); attention never materialises the score matrix\n"
    "  --json                    one JSON object, all sizes in bytes\n";

const GgmlType kTableTypes[] = {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0};
const int kTableSlots[] = {1, 2, 4, 8};

struct TableEntry {
    int n_parallel;
    GgmlType type;
    int64_t n_ctx;       // largest -c that fits; 0 = none
    int64_t n_ctx_slot;  // per slot, after rounding
    bool unified;
};

std::vector<TableEntry> largest_ctx_table(const GgufFile& f, const MemoryShape& shape, const PlanOptions& base,
                                          uint64_t mem) {
    std::vector<TableEntry> out;
    for (int np : kTableSlots)
        for (GgmlType t : kTableTypes) {
            PlanOptions o = base;
            o.n_parallel = np;
            o.type_k = o.type_v = t;
            TableEntry e{np, t, 0, 0, o.kv_unified};
            try {
                e.n_ctx = largest_fitting_ctx(f, shape, o, mem);
                if (e.n_ctx > 0) {
                    o.n_ctx = e.n_ctx;
                    e.n_ctx_slot = plan_memory(f, shape, o).n_ctx_slot;
                }
            } catch (const std::invalid_argument&) {
                // this cache type cannot hold the model's rows
            }
            out.push_back(e);
        }
    return out;
}

std::string gib(uint64_t bytes) {
    return format_bytes(bytes);
}

// What a CUDA run leaves in host memory: the CPU layers of -ngl N up to the
// layer count, the routed experts -cmoe/-ncmoe/-ot keep there.
struct HostPart {
    bool any = false;
    std::string what;    // "layers 0-9 on the CPU, the routed experts of layers 10-23"
    uint64_t bytes = 0;  // their weights
};

HostPart host_part_of(const GgufFile& f, int n_layer, int n_gpu_layers, const ExpertPlacementFlags& flags) {
    HostPart h;
    if (n_gpu_layers == 0 || (n_gpu_layers < 0 && !flags.any())) return h;  // the CPU, or no GPU run asked about
    BackendRequest r;
    r.n_gpu_layers = n_gpu_layers < 0 ? kGpuLayersAll : n_gpu_layers;
    r.n_layer = n_layer;
    if (flags.any()) {
        HostPlacement placement;
        try {
            placement = resolve_expert_placement(f, n_layer, flags);
        } catch (const std::invalid_argument& e) {
            throw UsageError(e.what());
        }
        if (!placement.other_host_tensors.empty())
            throw UsageError(fmt::format("-ot puts {} in host memory; only routed experts can stay there on a CUDA run",
                                         placement.other_host_tensors.front()));
        r.host_experts = placement.host_experts;
    }
    const std::optional<SplitPlan> plan = split_plan_for(r);
    if (!plan) return h;
    h.any = true;
    if (plan->first_device_layer > 0)
        h.what = plan->first_device_layer == 1 ? "layer 0 on the CPU"
                                               : fmt::format("layers 0-{} on the CPU", plan->first_device_layer - 1);
    std::vector<bool> experts(plan->host_experts.size(), false);
    for (int l = plan->first_device_layer; l < n_layer && l < static_cast<int>(experts.size()); ++l)
        experts[static_cast<size_t>(l)] = plan->host_experts[static_cast<size_t>(l)];
    if (const std::string layers = describe_layers(experts); !layers.empty())
        h.what += (h.what.empty() ? "" : ", ") + fmt::format("the routed experts of layers {}", layers);
    h.bytes = host_weight_bytes(f, r);
    return h;
}

void print_markdown(const GgufFile& f, const MemoryPlan& p, uint64_t mem, const std::string& mem_label,
                    const std::vector<TableEntry>& table, const HostPart& host) {
    const MemoryShape& s = p.shape;
    const PlanOptions& o = p.options;
    fmt::print("model: {}\n", f.path());
    fmt::print(
        "  {}, {} layers ({} with KV cache{}), {} parameters, {}, training context {}\n", s.arch, s.n_layer,
        s.kv_layers(), s.recurrent_layers() ? fmt::format(", {} recurrent", s.recurrent_layers()) : std::string(),
        format_param_count(s.n_params), file_type_name(f.find_u32("general.file_type").value_or(0)), s.n_ctx_train);
    fmt::print("flags: -c {} -np {}{} -ctk {} -ctv {} -b {} -ub {}{}\n", o.n_ctx, o.n_parallel,
               o.kv_unified ? " -kvu" : "", ggml_type_name(o.type_k), ggml_type_name(o.type_v), o.n_batch, o.n_ubatch,
               o.n_gpu_layers >= 0 || o.n_gpu_layers == kGpuLayersAll
                   ? fmt::format(" -ngl {} (the same buffers on a CUDA run, in GPU memory)",
                                 o.n_gpu_layers == kGpuLayersAll ? "all" : std::to_string(o.n_gpu_layers))
                   : std::string());
    fmt::print("context: {} cells in {} stream(s) of {}; each slot holds up to {} tokens\n\n", p.n_ctx, p.n_stream,
               p.n_ctx_seq, p.n_ctx_slot);

    fmt::print("| buffer | size | detail |\n|---|---:|---|\n");
    for (const auto& b : p.buffers()) fmt::print("| {} | {} | {} |\n", b.name, gib(b.bytes), b.detail);
    fmt::print("| **total** | **{}** | {} bytes |\n\n", gib(p.total_bytes), p.total_bytes);
    if (host.any)
        fmt::print(
            "on a CUDA run {} of weights stay in host memory ({}): the total, the fit and the table below are "
            "the card's\n\n",
            gib(host.bytes), host.what);
    if (p.recurrent_host_bytes_max)
        fmt::print(
            "and in host RAM, only as long conversations use them: up to {} of recurrent checkpoints at message "
            "starts ({} per slot: the rest of -ctxcp {}, at most one per --checkpoint-min-step {} tokens of a "
            "slot's context)\n\n",
            gib(p.recurrent_host_bytes_max), p.recurrent_host_snapshots_max, o.n_recurrent_snapshots,
            o.checkpoint_min_step);
    if (p.total_bytes <= mem)
        fmt::print("fits in {} ({}): {} to spare\n\n", gib(mem), mem_label, gib(mem - p.total_bytes));
    else
        fmt::print("does NOT fit in {} ({}): {} over\n\n", gib(mem), mem_label, gib(p.total_bytes - mem));

    fmt::print("KV cache per 1K tokens:");
    for (GgmlType t : kTableTypes) {
        try {
            fmt::print("{} {} {}", t == kTableTypes[0] ? "" : ",", ggml_type_name(t),
                       gib(kv_bytes_per_token(s, t, t) * 1024));
        } catch (const std::invalid_argument&) {
            fmt::print("{} {} -", t == kTableTypes[0] ? "" : ",", ggml_type_name(t));
        }
    }
    if (s.recurrent_layers())
        fmt::print("; recurrent state {} per sequence at any context length", gib(p.recurrent_bytes_per_seq));
    fmt::print("\n\nlargest -c that fits in {} (-ub {}{}; capped at slots × training context):\n\n", gib(mem),
               o.n_ubatch, table[0].unified ? ", unified KV" : "");
    fmt::print("| -np |");
    for (GgmlType t : kTableTypes) fmt::print(" KV {} |", ggml_type_name(t));
    fmt::print("\n|---:|");
    for (size_t i = 0; i < std::size(kTableTypes); ++i) fmt::print("---:|");
    for (size_t i = 0; i < table.size(); ++i) {
        const TableEntry& e = table[i];
        if (i % std::size(kTableTypes) == 0) fmt::print("\n| {} |", e.n_parallel);
        if (e.n_ctx == 0)
            fmt::print(" does not fit |");
        else if (e.n_parallel == 1)
            fmt::print(" {} |", e.n_ctx);
        else
            fmt::print(" {} ({} per slot) |", e.n_ctx, e.n_ctx_slot);
    }
    fmt::print("\n");
}

void print_json(const GgufFile& f, const MemoryPlan& p, uint64_t mem, const std::string& mem_label,
                const std::vector<TableEntry>& table, const HostPart& host) {
    using json = nlohmann::ordered_json;
    const PlanOptions& o = p.options;
    json j;
    j["model"] = f.path();
    j["arch"] = p.shape.arch;
    j["n_params"] = p.shape.n_params;
    j["n_ctx_train"] = p.shape.n_ctx_train;
    j["n_parallel"] = p.n_seq;
    j["kv_unified"] = o.kv_unified;
    j["type_k"] = std::string(ggml_type_name(o.type_k));
    j["type_v"] = std::string(ggml_type_name(o.type_v));
    j["n_ubatch"] = p.n_tokens;
    j["n_ctx"] = p.n_ctx;
    j["n_ctx_per_slot"] = p.n_ctx_slot;
    j["n_stream"] = p.n_stream;
    j["weights_bytes"] = p.weights_bytes;
    j["tables_bytes"] = p.tables_bytes;
    j["kv_bytes_per_token"] = p.kv_bytes_per_token;
    j["kv_bytes"] = p.kv_bytes;
    j["kv_k_bytes"] = p.kv_k_bytes;
    j["kv_v_bytes"] = p.kv_v_bytes;
    j["kv_index_bytes"] = p.kv_index_bytes;
    j["recurrent_bytes_per_seq"] = p.recurrent_bytes_per_seq;
    j["recurrent_bytes"] = p.recurrent_bytes;
    j["recurrent_host_bytes_max"] = p.recurrent_host_bytes_max;
    j["workspace_bytes"] = p.workspace_bytes;
    j["output_bytes"] = p.output_bytes;
    j["total_bytes"] = p.total_bytes;
    if (host.any) {
        j["host_weights"] = host.what;
        j["host_weights_bytes"] = host.bytes;  // not in weights_bytes or total_bytes, which are the card's
    }
    j["mem_bytes"] = mem;
    j["mem_source"] = mem_label;
    j["fits"] = p.total_bytes <= mem;
    json per_1k = json::object();
    for (GgmlType t : kTableTypes) {
        try {
            per_1k[std::string(ggml_type_name(t))] = kv_bytes_per_token(p.shape, t, t) * 1024;
        } catch (const std::invalid_argument&) {
            per_1k[std::string(ggml_type_name(t))] = nullptr;
        }
    }
    j["kv_bytes_per_1k_tokens"] = per_1k;
    json rows = json::array();
    for (const auto& e : table)
        rows.push_back({{"n_parallel", e.n_parallel},
                        {"cache_type", std::string(ggml_type_name(e.type))},
                        {"n_ctx", e.n_ctx},
                        {"n_ctx_per_slot", e.n_ctx_slot}});
    j["largest_ctx"] = rows;
    fmt::print("{}\n", j.dump(2));
}

int run_plan(const std::vector<std::string>& argv) {
    Args args(argv);
    std::string model;
    PlanOptions o;
    o.n_parallel = -1;
    uint64_t mem = 0;
    bool json = false;
    SpeculativeConfig spec;  // --spec-type and the flags that set its longest draft
    ExpertPlacementFlags experts;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (args.flag({"-m", "--model"})) {
            model = args.value();
        } else if (args.flag({"--mem"})) {
            try {
                mem = parse_byte_size(args.value());
            } catch (const std::invalid_argument& e) {
                throw UsageError(std::string("--mem: ") + e.what());
            }
        } else if (args.flag({"-c", "--ctx-size"})) {
            o.n_ctx = args.int_value();
            if (o.n_ctx < 0) throw UsageError("--ctx-size must not be negative");
        } else if (args.flag({"-np", "--parallel"})) {
            o.n_parallel = static_cast<int>(args.int_value());
            if (o.n_parallel < 1) throw UsageError("--parallel must be at least 1");
        } else if (args.flag({"-kvu", "--kv-unified"})) {
            o.kv_unified = true;
        } else if (args.flag({"-ctk", "--cache-type-k"})) {
            o.type_k = parse_cache_type(args.value());
        } else if (args.flag({"-ctv", "--cache-type-v"})) {
            o.type_v = parse_cache_type(args.value());
        } else if (args.flag({"-b", "--batch-size"})) {
            o.n_batch = args.int_value();
            if (o.n_batch < 1) throw UsageError("--batch-size must be at least 1");
        } else if (args.flag({"-ub", "--ubatch-size"})) {
            o.n_ubatch = args.int_value();
            if (o.n_ubatch < 1) throw UsageError("--ubatch-size must be at least 1");
        } else if (args.flag({"-t", "--threads"})) {
            o.n_threads = static_cast<int>(args.int_value());
        } else if (args.flag({"-ctxcp", "--ctx-checkpoints", "--swa-checkpoints"})) {
            o.n_recurrent_snapshots = static_cast<int>(args.int_value());
            if (o.n_recurrent_snapshots < 0 || o.n_recurrent_snapshots > (1 << 20))
                throw UsageError("--ctx-checkpoints must be between 0 and 1048576");
        } else if (args.flag({"-cms", "--checkpoint-min-step"})) {
            o.checkpoint_min_step = args.int_value();
            if (o.checkpoint_min_step < 0) throw UsageError("--checkpoint-min-step must be 0 or more");
        } else if (args.flag({"--spec-type"})) {
            try {
                spec.kinds = parse_spec_type(args.value());
                spec.enabled = !spec.kinds.empty();
            } catch (const std::invalid_argument& e) {
                throw UsageError(std::string("--spec-type: ") + e.what());
            }
        } else if (args.flag({"--spec-draft-n-max", "--draft-max", "--draft", "--draft-n"})) {
            spec.n_max = static_cast<int>(args.int_value(0, 1024));
        } else if (args.flag({"--spec-ngram-simple-size-m", "--spec-ngram-size-m"})) {
            spec.ngram.size_m = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--spec-ngram-mod-n-max"})) {
            spec.mod.n_max = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"-ngl", "--n-gpu-layers", "--gpu-layers"})) {
            try {
                o.n_gpu_layers = parse_gpu_layers(args.value());
            } catch (const std::invalid_argument& e) {
                throw UsageError(e.what());
            }
        } else if (parse_expert_placement_flag(args, experts)) {
        } else if (args.flag({"-fa", "--flash-attn"})) {
            args.value();
        } else if (args.flag({"--json"})) {
            json = true;
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve plan --help)");
        }
    }
    if (model.empty()) throw UsageError("no model given (-m FILE)");
    o.speculative = spec.enabled;
    o.spec_draft_max = spec.draft_max();
    PlanOptions table_base = o;  // the table's rows set -np; unified only when asked for
    if (o.n_parallel < 0) {      // llama-server's auto: 4 slots sharing one cache
        o.n_parallel = 4;
        o.kv_unified = true;
    }
    const std::string mem_label = mem ? "--mem" : "MemAvailable";
    if (!mem) mem = available_memory_bytes();
    if (!mem) throw UsageError("cannot read MemAvailable from /proc/meminfo: give the budget with --mem SIZE");

    const GgufFile f = GgufFile::open(model);
    const MemoryShape shape = read_memory_shape(f);
    const HostPart host = host_part_of(f, shape.n_layer, o.n_gpu_layers, experts);
    o.host_weight_bytes = table_base.host_weight_bytes = host.bytes;
    const MemoryPlan p = plan_memory(f, shape, o);
    const auto table = largest_ctx_table(f, shape, table_base, mem);
    if (json)
        print_json(f, p, mem, mem_label, table, host);
    else
        print_markdown(f, p, mem, mem_label, table, host);
    return 0;
}

}  // namespace

MOESERVE_COMMAND("plan", "memory budget of a model for given flags, and the largest context that fits", run_plan);

}  // namespace moeserve::cli
