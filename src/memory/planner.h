// The memory planner: every buffer the process will allocate for a model
// and a set of flags, from the GGUF metadata and tensor table alone —
// weights (mapped file bytes), KV cache, recurrent state, compute workspace
// for the largest batch and the logits buffer — and whether that fits.
//
// `moeserve plan` prints it; Engine runs it before loading and refuses a
// configuration that does not fit, naming the numbers and the largest -c
// that would (spec architectures §7, server-behaviour §2-§3).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "memory/kv_cache.h"
#include "memory/memory_shape.h"
#include "memory/workspace.h"
#include "quant/ggml_type.h"

namespace moeserve {

struct PlanOptions {
    int64_t n_ctx = 0;         // -c; 0: the model's training context
    int n_parallel = 1;        // -np: slots (sequences)
    bool kv_unified = false;   // --kv-unified: one stream of n_ctx cells shared by all slots
    bool exact_cells = false;  // n_ctx is the exact number of cells (the engine's view; no rounding to 256)
    GgmlType type_k = GgmlType::F16;
    GgmlType type_v = GgmlType::F16;
    int n_gpu_layers = -1;   // -ngl: shown; the buffers are the same on the CPU or a GPU
    int64_t n_batch = 2048;  // -b: caps the logits rows of one batch
    int64_t n_ubatch = 512;  // -ub: tokens in the largest forward pass
    int n_threads = 0;       // 0: all cores
    int64_t n_outputs = 0;   // logits rows per batch; 0: as llama-server (below)
    // Saved recurrent states per sequence besides the live one (what KvCache keeps:
    // up to RecurrentState::kDeviceSnapshots in the buffers, the rest in host RAM).
    int n_recurrent_snapshots = KvCacheConfig{}.n_rs_snapshots;
    // --checkpoint-min-step: the host-RAM snapshots are at least this many tokens
    // apart (after the first), which bounds how many one slot's context can hold.
    int64_t checkpoint_min_step = 8192;
    // Speculative decoding (--spec-type): a batch's logits rows are one per slot
    // and guess, min(n_batch, n_parallel × (1 + spec_draft_max)) as llama-server's
    // n_outputs_max; and hybrid models keep one more recurrent state per
    // sequence to roll back to when guesses are rejected (KvCacheConfig::rs_rollback).
    bool speculative = false;
    int spec_draft_max = 16;  // --spec-draft-n-max
    // A GPU run's weights that stay in host memory (the CPU layers of a
    // layer split, routed experts kept there: select_backend.h's
    // host_weight_bytes): not in weights_bytes or total_bytes, which are then
    // what the card holds.
    uint64_t host_weight_bytes = 0;
};

struct PlannedBuffer {
    std::string name;
    uint64_t bytes = 0;
    std::string detail;
};

struct MemoryPlan {
    MemoryShape shape;
    PlanOptions options;
    int n_seq = 1;           // sequences (slots)
    int n_stream = 1;        // KV streams: 1 unified, else one per slot
    int64_t n_ctx = 0;       // KV cells in all
    int64_t n_ctx_seq = 0;   // cells of one stream
    int64_t n_ctx_slot = 0;  // what one slot may hold: min(n_ctx_seq, n_ctx_train)
    int64_t n_tokens = 0;    // tokens of the largest batch
    int64_t n_outputs = 0;   // logits rows of one batch

    uint64_t weights_bytes = 0;       // the weights in the plan's memory (all, unless some stay in host memory)
    uint64_t host_weights_bytes = 0;  // options.host_weight_bytes: not in the total
    uint64_t tables_bytes = 0;        // metadata, tensor table and weight bindings
    uint64_t kv_bytes_per_token = 0;
    uint64_t kv_k_bytes = 0;
    uint64_t kv_v_bytes = 0;
    uint64_t kv_bytes = 0;        // kv_bytes_per_token × n_ctx
    uint64_t kv_index_bytes = 0;  // free list and per-sequence cell tables
    uint64_t recurrent_bytes_per_seq = 0;
    uint64_t recurrent_bytes = 0;
    // The message-start snapshots beyond the first kDeviceSnapshots, in host RAM
    // and allocated only as long conversations use them: not in total_bytes. At
    // most min(the rest of -ctxcp, 1 + a slot's context / checkpoint_min_step)
    // per slot.
    int recurrent_host_snapshots_max = 0;  // per slot
    uint64_t recurrent_host_bytes_max = 0;
    Workspace workspace;
    uint64_t workspace_bytes = 0;
    uint64_t output_bytes = 0;  // logits: n_outputs × n_vocab × 4
    uint64_t total_bytes = 0;

    // Host memory besides the mapped weights: what the process allocates.
    uint64_t allocated_bytes() const { return total_bytes - weights_bytes; }
    // One line per buffer, in the order llama.cpp reports them.
    std::vector<PlannedBuffer> buffers() const;
};

// KV cache bytes of one token (cell) over all layers for these cache types.
uint64_t kv_bytes_per_token(const MemoryShape& shape, GgmlType type_k, GgmlType type_v);

MemoryPlan plan_memory(const GgufFile& file, const PlanOptions& options);
MemoryPlan plan_memory(const GgufFile& file, const MemoryShape& shape, const PlanOptions& options);

// The largest -c (a multiple of 256, at most n_parallel × the training
// context) whose plan fits in mem_bytes; 0 when not even 256 fits.
int64_t largest_fitting_ctx(const GgufFile& file, const MemoryShape& shape, PlanOptions options, uint64_t mem_bytes);

class MemoryFitError : public std::runtime_error {
  public:
    MemoryFitError(const std::string& message, int64_t largest_ctx)
        : std::runtime_error(message), largest_ctx_(largest_ctx) {}
    int64_t largest_ctx() const { return largest_ctx_; }

  private:
    int64_t largest_ctx_;
};

// Plans the configuration; throws MemoryFitError naming each buffer, the
// budget and the largest -c that fits when it needs more than mem_bytes.
// mem_label says where the budget came from ("--mem", "MemAvailable").
MemoryPlan check_fits(const GgufFile& file, const PlanOptions& options, uint64_t mem_bytes,
                      const std::string& mem_label);

}  // namespace moeserve
