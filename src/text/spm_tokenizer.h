// SentencePiece-style tokenizer (tokenizer.ggml.model = llama): spaces become
// U+2581, adjacent symbols merge greedily by the score of the token they would
// form, and what is not a token falls back to <0xNN> byte tokens. Matches
// llama.cpp's llm_tokenizer_spm_session.
#pragma once

#include <string_view>
#include <vector>

#include "text/vocab.h"

namespace moeserve::text {

class SpmTokenizer {
  public:
    explicit SpmTokenizer(const Vocab& vocab);

    // Tokenizes text whose spaces are already escaped to U+2581; appends the ids.
    void encode(std::string_view text, std::vector<TokenId>& out) const;

  private:
    const Vocab& vocab_;
    TokenId byte_token_[256];  // <0xNN>, else the one-byte token, else unk
};

// Replaces every ' ' with U+2581 ("▁").
std::string escape_spaces(std::string_view text);

}  // namespace moeserve::text
