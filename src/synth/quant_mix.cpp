#include "synth/quant_mix.h"

#include <cctype>

namespace moeserve {
namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Row-length fallbacks (§6).
GgmlType fit_row(GgmlType t, int64_t ne0) {
    if (ne0 % ggml_type_info(t).block_size == 0) return t;
    GgmlType f = t;
    switch (t) {
        case GgmlType::IQ4_XS: f = GgmlType::IQ4_NL; break;
        case GgmlType::Q4_K: f = GgmlType::Q5_0; break;
        case GgmlType::Q5_K: f = GgmlType::Q5_1; break;
        case GgmlType::Q6_K: f = GgmlType::Q8_0; break;
        default: break;
    }
    return ne0 % ggml_type_info(f).block_size == 0 ? f : GgmlType::F16;
}

}  // namespace

std::optional<FileMix> file_mix_from_name(const std::string& name) {
    std::string n;
    for (char c : name) n += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (n == "F16") return FileMix::F16;
    if (n == "Q8_0") return FileMix::Q8_0;
    if (n == "Q4_K_M") return FileMix::Q4_K_M;
    if (n == "IQ4_XS") return FileMix::IQ4_XS;
    return std::nullopt;
}

const char* file_mix_name(FileMix mix) {
    switch (mix) {
        case FileMix::F16: return "F16";
        case FileMix::Q8_0: return "Q8_0";
        case FileMix::Q4_K_M: return "Q4_K_M";
        case FileMix::IQ4_XS: return "IQ4_XS";
    }
    return "?";
}

uint32_t file_mix_ftype(FileMix mix) {
    switch (mix) {
        case FileMix::F16: return 1;
        case FileMix::Q8_0: return 7;
        case FileMix::Q4_K_M: return 15;
        case FileMix::IQ4_XS: return 30;
    }
    return 0;
}

GgmlType mix_tensor_type(FileMix mix, const TensorContext& t) {
    const std::string& n = t.name;
    if (mix == FileMix::F16) return GgmlType::F16;
    if (mix == FileMix::Q8_0) return fit_row(GgmlType::Q8_0, t.ne0);  // the output head too
    const bool is_output = n == "output.weight" || (n == "token_embd.weight" && t.tied_output);
    if (is_output) return t.ne0 % 256 == 0 ? GgmlType::Q6_K : GgmlType::Q8_0;
    const bool eight_experts = t.n_expert == 8;
    const bool attn_v_like = contains(n, "attn_v.weight") || contains(n, "attn_qkv.weight") || contains(n, "attn_kv_b.weight");
    GgmlType chosen;
    if (mix == FileMix::Q4_K_M) {
        chosen = GgmlType::Q4_K;
        if (attn_v_like) {
            chosen = eight_experts ? GgmlType::Q8_0
                     : use_more_bits(t.attn_v_index, t.attn_v_count) ? GgmlType::Q6_K : GgmlType::Q4_K;
        } else if (contains(n, "attn_k.weight")) {
            chosen = eight_experts ? GgmlType::Q8_0 : GgmlType::Q4_K;
        } else if (contains(n, "attn_output.weight")) {
            chosen = eight_experts ? GgmlType::Q5_K : GgmlType::Q4_K;
        } else if (contains(n, "ffn_down")) {
            chosen = use_more_bits(t.layer, t.n_layer) ? GgmlType::Q6_K : GgmlType::Q4_K;
        }
    } else {  // IQ4_XS
        chosen = GgmlType::IQ4_XS;
        if (attn_v_like) {
            chosen = eight_experts ? GgmlType::Q8_0 : t.n_gqa >= 4 ? GgmlType::Q5_K : GgmlType::IQ4_XS;
        } else if (contains(n, "attn_k.weight")) {
            chosen = eight_experts ? GgmlType::Q8_0 : GgmlType::IQ4_XS;
        } else if (contains(n, "attn_output.weight")) {
            chosen = eight_experts ? GgmlType::Q5_K : GgmlType::IQ4_XS;
        } else if (contains(n, "ffn_down")) {
            chosen = t.layer >= 0 && t.layer < t.n_layer / 8 ? GgmlType::Q5_K : GgmlType::IQ4_XS;
        }
    }
    return fit_row(chosen, t.ne0);
}

}  // namespace moeserve
