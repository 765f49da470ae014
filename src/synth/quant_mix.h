// Which GGML type llama-quantize gives each tensor of a file type (spec
// quant-formats §5, §6): used by synth to write files with the same tensor
// types as the downloads people run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "quant/ggml_type.h"

namespace moeserve {

enum class FileMix { F16, Q8_0, Q4_K_M, IQ4_XS };

std::optional<FileMix> file_mix_from_name(const std::string& name);  // "Q4_K_M", "iq4_xs", ...
const char* file_mix_name(FileMix mix);
uint32_t file_mix_ftype(FileMix mix);  // general.file_type

struct TensorContext {
    std::string name;  // e.g. "blk.3.ffn_down_exps.weight"
    int64_t ne0 = 0;
    int layer = -1;        // from blk.N, -1 for global tensors
    int n_layer = 0;
    int n_expert = 0;
    int n_gqa = 0;         // head_count / head_count_kv of layer 0
    int attn_v_index = 0;  // index among attn-v-like tensors, and their count
    int attn_v_count = 0;
    bool tied_output = false;
};

// The type a weight tensor gets, or F32 for tensors that are never quantized
// (norms, routers, biases, 1-D tensors: decide those by name before asking).
GgmlType mix_tensor_type(FileMix mix, const TensorContext& t);

}  // namespace moeserve
