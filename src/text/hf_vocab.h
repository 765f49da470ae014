// Hugging Face tokenizer.json (byte-level BPE) -> a vocabulary-only GGUF laid
// out the way llama.cpp's converter writes it: tokenizer.ggml.model = gpt2, the
// pre-tokenizer name, tokens in id order (holes filled with [PADn]), token
// types (control for special added tokens, user-defined for other added tokens),
// merges as "a b", special ids and add_bos/add_eos from tokenizer_config.json,
// and the chat template.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace moeserve {

class GgufWriter;

struct HfVocabOptions {
    std::optional<std::string> pre;           // tokenizer.ggml.pre; detected from the regex when absent
    std::optional<size_t> vocab_size;         // pad the token list to this many entries
    std::optional<std::string> architecture;  // general.architecture, when wanted
};

// Fills `out` with the vocabulary keys. `config` may be null (no
// tokenizer_config.json). Throws std::runtime_error with a message naming what
// is missing or unsupported.
void hf_vocab_to_gguf(const nlohmann::json& tokenizer, const nlohmann::json* config, const HfVocabOptions& options,
                      GgufWriter& out);

// Reads the files and writes the GGUF. config_path may be empty.
void convert_hf_vocab(const std::string& tokenizer_path, const std::string& config_path, const std::string& out_path,
                      const HfVocabOptions& options);

// The tokenizer.ggml.pre name for a tokenizer.json pre_tokenizer section, or
// nullopt when it is not one moeserve recognises.
std::optional<std::string> detect_hf_pre_tokenizer(const nlohmann::json& pre_tokenizer);

}  // namespace moeserve
