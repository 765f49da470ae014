#include "synth/synth_vocab.h"

#include <fmt/format.h>

#include <stdexcept>
#include <vector>

namespace moeserve {
namespace {

struct Special {
    const char* text;
    int32_t type;  // 3 = control, 4 = user-defined
};

// GLM-4.7-Flash's added tokens, in the order its tokenizer lists them.
const std::vector<Special> kGlmSpecials = {
    {"<|endoftext|>", 3}, {"[MASK]", 3},          {"[gMASK]", 3},         {"[sMASK]", 3},
    {"<sop>", 3},         {"<eop>", 3},           {"<|system|>", 3},      {"<|user|>", 3},
    {"<|assistant|>", 3}, {"<|observation|>", 3}, {"<think>", 4},         {"</think>", 4},
    {"<tool_call>", 4},   {"</tool_call>", 4},    {"<tool_response>", 4}, {"</tool_response>", 4},
    {"<arg_key>", 4},     {"</arg_key>", 4},      {"<arg_value>", 4},     {"</arg_value>", 4},
};

}  // namespace

std::string synth_byte_token(int b) {
    auto printable = [](int x) {
        return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    };
    int cp = b;
    if (!printable(b)) {
        cp = 256;
        for (int x = 0; x < b; ++x) cp += !printable(x);
    }
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

void write_glm_vocab(GgufWriter& w, int n_vocab) {
    const std::vector<Special>& specials = kGlmSpecials;
    const int n_special = static_cast<int>(specials.size());
    if (n_vocab < 256 + n_special)
        throw std::invalid_argument(fmt::format("synth needs a vocabulary of at least {} tokens", 256 + n_special));
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) tokens.push_back(synth_byte_token(b)), types.push_back(1);
    for (int i = 0; static_cast<int>(tokens.size()) < n_vocab - n_special; ++i)
        tokens.push_back(fmt::format("<|filler_{}|>", i)), types.push_back(4);
    const uint32_t first = static_cast<uint32_t>(tokens.size());
    for (const Special& s : specials) tokens.push_back(s.text), types.push_back(s.type);
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", "glm4");
    w.set("tokenizer.ggml.tokens", gguf_string_array(tokens));
    w.set("tokenizer.ggml.token_type", gguf_array(GgufValueType::INT32, types));
    w.set("tokenizer.ggml.merges", gguf_string_array({}));
    w.set("tokenizer.ggml.eos_token_id", first);  // <|endoftext|>
    w.set("tokenizer.ggml.padding_token_id", first);
    w.set("tokenizer.ggml.bos_token_id", first + 2);  // [gMASK]
    w.set("tokenizer.ggml.eot_token_id", first + 7);  // <|user|>
    w.set("tokenizer.ggml.add_bos_token", false);
}

}  // namespace moeserve
