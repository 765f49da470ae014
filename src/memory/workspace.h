// The compute workspace of one forward pass over the largest batch, worked
// out from the tensor table by walking the architecture's ops in order and
// sizing every buffer the way the CPU backend and the model files do:
//
//   held       buffers that grow to the largest call and stay: the model's
//              per-token activations (residual stream, Q/K/V, MLA latents,
//              Mamba2 in_proj/conv/scan outputs), activations converted to
//              each weight's dot-product partner type (Q8_K, Q8_0, f16, ...),
//              dense FFN and MoE intermediates (n_tokens × top-k rows)
//   transient  what one op allocates for its duration on top of those:
//              attention scores (one per visible cell per query head of a
//              KV group, per thread), MoE routing tables, gathered heads,
//              and the old copy of a buffer while it grows
//
// The workspace is the peak of held + transient over the pass, so a plan
// covers the worst moment, not just what stays allocated.
#pragma once

#include <cstdint>

#include "gguf/gguf_file.h"
#include "memory/memory_shape.h"
#include "quant/ggml_type.h"

namespace moeserve {

struct WorkspaceParams {
    int64_t n_tokens = 512;  // tokens in the largest batch (n_ubatch)
    int64_t n_outputs = 1;   // tokens of that batch whose logits are wanted
    int64_t n_kv = 0;        // cells one token may attend to (the full cache in the worst case)
    int64_t n_cells = 0;     // cells in all (0: n_kv)
    int n_seq = 1;           // sequences that may decode together
    int n_threads = 1;
    GgmlType type_k = GgmlType::F16;
    GgmlType type_v = GgmlType::F16;
};

struct Workspace {
    uint64_t held = 0;       // allocated after the pass, kept for the next one
    uint64_t transient = 0;  // the peak's excess over `held`
    uint64_t total() const { return held + transient; }
};

Workspace plan_workspace(const GgufFile& f, const MemoryShape& shape, const WorkspaceParams& p);

}  // namespace moeserve
