#include "memory/memory_shape.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace moeserve {
namespace {

int64_t vocab_size(const GgufFile& f) {
    const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type() != GgufValueType::ARRAY)
        throw GgufError(fmt::format("{}: no vocabulary (tokenizer.ggml.tokens)", f.path()));
    return static_cast<int64_t>(tokens->as_array().items.size());
}

// Every layer attends with n_head_kv[l] heads of K and V (llama, qwen3, qwen3moe).
void read_gqa_layers(const GgufFile& f, const std::string& a, MemoryShape& s) {
    const auto n_head = f.has(a + "attention.head_count") ? f.get_u32_per_layer(a + "attention.head_count", s.n_layer)
                                                          : std::vector<uint32_t>(s.n_layer, 0);
    const auto n_head_kv =
        f.has(a + "attention.head_count_kv") ? f.get_u32_per_layer(a + "attention.head_count_kv", s.n_layer) : n_head;
    const uint32_t def = n_head[0] ? static_cast<uint32_t>(s.n_embd / n_head[0]) : 0;
    s.head_dim_k = static_cast<int>(f.find_u32(a + "attention.key_length").value_or(def));
    s.head_dim_v = static_cast<int>(f.find_u32(a + "attention.value_length").value_or(def));
    for (int l = 0; l < s.n_layer; ++l) {
        LayerShape& ls = s.layers[l];
        ls.kind = LayerKind::Attention;
        ls.n_head = static_cast<int>(n_head[l]);
        ls.n_head_kv = static_cast<int>(n_head_kv[l]);
        ls.n_embd_k = static_cast<int64_t>(n_head_kv[l]) * s.head_dim_k;
        ls.n_embd_v = static_cast<int64_t>(n_head_kv[l]) * s.head_dim_v;
    }
}

// MLA files cache one latent row per token: kv_lora_rank + n_rot values of K,
// no V (spec §5.4, §7.1). Files without the _mla keys use a full MHA cache.
void read_deepseek2_layers(const GgufFile& f, const std::string& a, MemoryShape& s) {
    read_gqa_layers(f, a, s);
    s.q_lora_rank = f.find_u32(a + "attention.q_lora_rank").value_or(0);
    s.kv_lora_rank = f.get_u32(a + "attention.kv_lora_rank");
    s.n_rot = f.find_u32(a + "rope.dimension_count").value_or(s.head_dim_k);
    s.head_dim_k_mla = f.find_u32(a + "attention.key_length_mla").value_or(0);
    s.head_dim_v_mla = f.find_u32(a + "attention.value_length_mla").value_or(0);
    if (s.head_dim_k_mla == 0 || s.head_dim_v_mla == 0) return;  // legacy MHA cache
    s.head_dim_k = static_cast<int>(s.kv_lora_rank + s.n_rot);
    s.head_dim_v = static_cast<int>(s.kv_lora_rank);
    for (LayerShape& ls : s.layers) {
        ls.kind = LayerKind::Mla;
        ls.n_head_kv = 1;
        ls.n_embd_k = s.kv_lora_rank + s.n_rot;
        ls.n_embd_v = 0;
    }
}

// Layer types from head_count_kv[l] and feed_forward_length[l] (spec §6.2).
void read_nemotron_h_layers(const GgufFile& f, const std::string& a, MemoryShape& s) {
    const auto n_head = f.get_u32_per_layer(a + "attention.head_count", s.n_layer);
    const auto n_head_kv = f.get_u32_per_layer(a + "attention.head_count_kv", s.n_layer);
    const auto n_ff = f.get_u32_per_layer(a + "feed_forward_length", s.n_layer);
    s.head_dim_k = static_cast<int>(f.get_u32(a + "attention.key_length"));
    s.head_dim_v = static_cast<int>(f.get_u32(a + "attention.value_length"));
    s.ssm_d_conv = f.get_u32(a + "ssm.conv_kernel");
    s.ssm_d_inner = f.get_u32(a + "ssm.inner_size");
    s.ssm_d_state = f.get_u32(a + "ssm.state_size");
    s.ssm_n_group = f.get_u32(a + "ssm.group_count");
    s.ssm_n_head = f.get_u32(a + "ssm.time_step_rank");
    for (int l = 0; l < s.n_layer; ++l) {
        LayerShape& ls = s.layers[l];
        ls.n_head = static_cast<int>(n_head[l]);
        ls.n_head_kv = static_cast<int>(n_head_kv[l]);
        if (n_ff[l] > 0) {
            ls.kind = LayerKind::Ffn;
        } else if (n_head_kv[l] > 0) {
            ls.kind = LayerKind::Attention;
            ls.n_embd_k = static_cast<int64_t>(n_head_kv[l]) * s.head_dim_k;
            ls.n_embd_v = static_cast<int64_t>(n_head_kv[l]) * s.head_dim_v;
        } else {
            // conv: the last K-1 inputs of every xBC channel; SSM: N × d_inner (spec §6.8).
            ls.kind = LayerKind::Mamba2;
            ls.n_embd_r = (s.ssm_d_conv - 1) * (s.ssm_d_inner + 2 * s.ssm_n_group * s.ssm_d_state);
            ls.n_embd_s = s.ssm_d_state * s.ssm_d_inner;
        }
    }
}

// Heap bytes glibc hands out for a request of n (usable size of the chunk).
uint64_t heap(uint64_t n) {
    return n == 0 ? 0 : std::max<uint64_t>(24, (n + 8 + 15) / 16 * 16 - 8);
}
uint64_t string_heap(size_t len) {
    return len > 15 ? heap(len + 1) : 0;
}

uint64_t value_heap(const GgufValue& v) {
    if (v.type() == GgufValueType::STRING) return string_heap(v.as_string().size());
    if (v.type() != GgufValueType::ARRAY) return 0;
    const GgufArray& a = v.as_array();
    uint64_t n = heap(a.items.size() * sizeof(GgufValue));
    for (const GgufValue& item : a.items) n += value_heap(item);
    return n;
}

// What GgufFile keeps of the header (values, key and name indexes) and what
// a loaded model keeps per tensor (a Weight with its name).
uint64_t tables_heap(const GgufFile& f) {
    constexpr uint64_t kIndexNode = 56;  // unordered_map<string, size_t> node
    uint64_t n = heap(f.metadata().size() * sizeof(GgufKv)) + heap(f.metadata().size() * 8);
    for (const GgufKv& kv : f.metadata()) n += 2 * string_heap(kv.key.size()) + value_heap(kv.value) + heap(kIndexNode);
    n += heap(f.tensors().size() * sizeof(GgufTensorInfo)) + heap(f.tensors().size() * 8);
    for (const GgufTensorInfo& t : f.tensors()) n += 3 * string_heap(t.name.size()) + heap(kIndexNode) + 128;
    return n + 4096;
}

}  // namespace

int64_t MemoryShape::kv_layers() const {
    int64_t n = 0;
    for (const auto& l : layers) n += l.n_embd_k > 0;
    return n;
}

int64_t MemoryShape::recurrent_layers() const {
    int64_t n = 0;
    for (const auto& l : layers) n += l.n_embd_r + l.n_embd_s > 0;
    return n;
}

int64_t MemoryShape::kv_elements_k() const {
    int64_t n = 0;
    for (const auto& l : layers) n += l.n_embd_k;
    return n;
}

int64_t MemoryShape::kv_elements_v() const {
    int64_t n = 0;
    for (const auto& l : layers) n += l.n_embd_v;
    return n;
}

int64_t MemoryShape::recurrent_floats_per_seq() const {
    int64_t n = 0;
    for (const auto& l : layers) n += l.n_embd_r + l.n_embd_s;
    return n;
}

MemoryShape read_memory_shape(const GgufFile& f) {
    MemoryShape s;
    s.arch = f.architecture();
    const std::string a = s.arch + ".";
    s.n_layer = static_cast<int>(f.get_u32(a + "block_count"));
    s.n_embd = f.get_u32(a + "embedding_length");
    s.n_ctx_train = f.get_u32(a + "context_length");
    if (s.n_layer <= 0 || s.n_layer > 4096 || s.n_embd <= 0)
        throw GgufError(
            fmt::format("{}: implausible shape: {} layers, embedding length {}", f.path(), s.n_layer, s.n_embd));
    // The embedding width sizes the compute workspace: a width the weights
    // contradict would be planned (and refused) as terabytes.
    if (const GgufTensorInfo* t = f.find_tensor("token_embd.weight"); t && t->ne[0] != s.n_embd)
        throw GgufError(fmt::format("{}: {}embedding_length is {}, but tensor token_embd.weight has shape {}", f.path(),
                                    a, s.n_embd, t->shape_string()));
    // Positions are int32 (the loader refuses the same; planning comes first).
    if (s.n_ctx_train < 1 || s.n_ctx_train > INT32_MAX)
        throw GgufError(
            fmt::format("{}: {}context_length {} is out of range (1 to {})", f.path(), a, s.n_ctx_train, INT32_MAX));
    s.n_vocab = vocab_size(f);
    s.n_expert = static_cast<int>(f.find_u32(a + "expert_count").value_or(0));
    s.n_expert_used = static_cast<int>(f.find_u32(a + "expert_used_count").value_or(0));
    s.layers.resize(s.n_layer);
    if (s.arch == "llama" || s.arch == "qwen3" || s.arch == "qwen3moe")
        read_gqa_layers(f, a, s);
    else if (s.arch == "deepseek2")
        read_deepseek2_layers(f, a, s);
    else if (s.arch == "nemotron_h_moe")
        read_nemotron_h_layers(f, a, s);
    else
        throw GgufError(
            fmt::format("{}: cannot plan memory for architecture '{}' (known: llama, qwen3, qwen3moe, "
                        "deepseek2, nemotron_h_moe)",
                        f.path(), s.arch));
    for (const auto& t : f.tensors()) {
        s.weights_bytes += t.nbytes;
        s.n_params += t.n_elements();
    }
    s.n_tensors = f.tensors().size();
    s.tables_bytes = tables_heap(f);
    return s;
}

}  // namespace moeserve
