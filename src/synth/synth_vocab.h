// Vocabularies of synthetic models: every byte a token (spelled with GPT-2's
// byte-to-unicode map, as byte-level BPE vocabularies are), placeholder
// filler tokens up to the model's vocabulary size, then the model family's
// special tokens at the end, with the tokenizer keys that name them.
// (qwen3moe and nemotron_h_moe synth files use Qwen's chat tokens; see
// synth_model.cpp.)
#pragma once

#include <string>

#include "gguf/gguf_writer.h"

namespace moeserve {

// The token of byte b (0..255): printable bytes stand for themselves, the
// others are shifted to U+0100 and up, so every byte is a visible character.
std::string synth_byte_token(int b);

// Sets tokenizer.ggml.* for a GLM-4.x vocabulary of n_vocab tokens:
// [gMASK] is BOS, <|endoftext|> EOS, <|user|> ends a turn, glm4 pre-tokenizer.
// Throws std::invalid_argument when n_vocab leaves no room for 256 bytes and
// the specials.
void write_glm_vocab(GgufWriter& w, int n_vocab);

}  // namespace moeserve
