// One model ready to run: the mapped file, a backend, the model and its KV
// cache, built from the options every command shares (-m, -t, -c, -np,
// -ctk, -ctv).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/expert_placement.h"
#include "gguf/gguf_file.h"
#include "gguf/mapped_file.h"
#include "memory/kv_cache.h"
#include "memory/planner.h"
#include "model/model.h"

namespace moeserve {

struct EngineOptions {
    std::string model_path;
    int n_threads = 0;  // 0: all cores
    int64_t n_ctx = 0;  // 0: the model's training context
    int n_seq = 1;      // parallel sequences (slots)
    GgmlType type_k = GgmlType::F16;
    GgmlType type_v = GgmlType::F16;
    int64_t n_ubatch = 512;  // tokens per forward call when evaluating a prompt
    bool fit_ctx = false;    // --fit / -c max: the largest context that fits in the memory budget
    uint64_t mem_bytes = 0;  // memory budget (--mem); 0: MemAvailable when the engine starts
    int n_gpu_layers = 0;    // -ngl: 0 = CPU; N, kGpuLayersAll or kGpuLayersAuto = the GPU (select_backend.h)
    // --cpu-moe, --n-cpu-moe, -ot: on a GPU run, the layers whose routed
    // experts stay in host memory and run on the CPU (expert_placement.h).
    ExpertPlacementFlags experts;
    LoadMode load_mode = LoadMode::mmap;  // --mmap / --no-mmap / --mlock
    RopeOverrides rope;                   // --rope-scaling, --rope-scale, --yarn-*: over the file's RoPE
    // Hybrid models: recurrent-state snapshots kept per sequence (--ctx-checkpoints).
    int n_rs_snapshots = KvCacheConfig{}.n_rs_snapshots;
    // Speculative decoding (serve --spec-type): a step's logits rows grow by
    // spec_draft_max per sequence, and hybrid models keep a copy of each
    // sequence's recurrent state to roll back to (planned and allocated).
    bool speculative = false;
    int spec_draft_max = 16;
};

class Engine {
  public:
    // Plans memory first and throws MemoryFitError, before loading
    // anything, when the configuration does not fit the budget.
    explicit Engine(const EngineOptions& options);

    Model& model() { return *model_; }
    KvCache& cache() { return *cache_; }
    // n_ctx is the context actually used (the training context for 0, the
    // fitted one with fit_ctx).
    const EngineOptions& options() const { return options_; }
    // What the planner said this engine allocates.
    const MemoryPlan& plan() const { return plan_; }
    int64_t n_vocab() const { return model_->params().n_vocab; }
    Backend& backend() { return *backend_; }
    // Why the backend is not the one -ngl asked for, or how -ot placed a
    // layer's experts (empty when nothing needs saying).
    const std::string& backend_note() const { return backend_note_; }

    // Appends tokens to a sequence in ubatch-sized chunks. Returns the
    // logits of every token when all_logits, else only of the last one.
    std::vector<float> eval(int seq, std::span<const int32_t> tokens, bool all_logits);

  private:
    EngineOptions options_;
    std::shared_ptr<const GgufFile> file_;
    std::shared_ptr<Backend> backend_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<KvCache> cache_;
    MemoryPlan plan_;
    std::string backend_note_;
};

// The planner's view of an engine configuration: exactly n_ctx cells (no
// rounding) for n_seq sequences, batches of n_ubatch tokens.
PlanOptions engine_plan_options(const EngineOptions& options, int64_t n_ctx);

// Parses a cache type name for -ctk/-ctv; throws with the allowed list.
GgmlType parse_cache_type(const std::string& name);

}  // namespace moeserve
