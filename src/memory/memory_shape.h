// What the memory planner needs to know about a model, read from the GGUF
// metadata and tensor table only (no tensor data, so header-only files
// work): for each layer whether it keeps a KV cache (and how wide its rows
// are) or a recurrent state, per architecture (spec architectures §7):
//
//   llama, qwen3, qwen3moe  every layer: K and V of n_head_kv × head_dim
//   deepseek2 (MLA files)   every layer: K of kv_lora_rank + n_rot, 1 head, no V
//   nemotron_h_moe          attention layers: K and V; Mamba2 layers: conv and
//                           SSM state per sequence; MoE layers: nothing
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"

namespace moeserve {

enum class LayerKind {
    Attention,  // GQA self-attention (+ an FFN in the same block, except nemotron_h_moe)
    Mla,        // deepseek2 multi-head latent attention (+ FFN)
    Mamba2,     // nemotron_h_moe recurrent layer
    Ffn,        // nemotron_h_moe MoE (or dense) layer: no attention, no state
};

struct LayerShape {
    LayerKind kind = LayerKind::Attention;
    int n_head = 0;
    int n_head_kv = 0;
    int64_t n_embd_k = 0;  // K elements per cell (0: no KV cache)
    int64_t n_embd_v = 0;  // V elements per cell (0: no V, as in MLA)
    int64_t n_embd_r = 0;  // conv state floats per sequence (Mamba2)
    int64_t n_embd_s = 0;  // SSM state floats per sequence (Mamba2)
};

struct MemoryShape {
    std::string arch;
    int n_layer = 0;
    int64_t n_embd = 0;
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int head_dim_k = 0;  // of the cached K head (MLA: kv_lora_rank + n_rot)
    int head_dim_v = 0;  // of the V head (MLA: kv_lora_rank, the latent the heads attend to)
    int n_expert = 0;
    int n_expert_used = 0;
    // deepseek2
    int64_t q_lora_rank = 0, kv_lora_rank = 0, n_rot = 0, head_dim_k_mla = 0, head_dim_v_mla = 0;
    // nemotron_h_moe Mamba2
    int64_t ssm_d_conv = 0, ssm_d_inner = 0, ssm_d_state = 0, ssm_n_group = 0, ssm_n_head = 0;
    std::vector<LayerShape> layers;

    uint64_t weights_bytes = 0;  // Σ tensor data bytes: what is mapped
    uint64_t tables_bytes = 0;   // the parsed metadata, tensor table and weight bindings on the heap
    int64_t n_params = 0;        // Σ tensor elements
    size_t n_tensors = 0;

    int64_t kv_layers() const;         // layers with a KV cache
    int64_t recurrent_layers() const;  // layers with a recurrent state
    int64_t kv_elements_k() const;     // Σ n_embd_k over layers
    int64_t kv_elements_v() const;     // Σ n_embd_v over layers
    int64_t recurrent_floats_per_seq() const;
};

// Reads the shape of a llama, qwen3, qwen3moe, deepseek2 or nemotron_h_moe
// file. Throws GgufError for another architecture or missing keys.
MemoryShape read_memory_shape(const GgufFile& f);

}  // namespace moeserve
