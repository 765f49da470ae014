// Byte-level BPE (tokenizer.ggml.model = gpt2): pre-tokenize, map bytes to
// GPT-2's printable alphabet, merge adjacent symbols by merge rank, emit ids.
// Matches llama.cpp's llm_tokenizer_bpe_session, including what happens to
// symbols that end up outside the vocabulary (their single bytes, if tokens).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/pre_tokenizer.h"
#include "text/vocab.h"

namespace moeserve::text {

class BpeTokenizer {
  public:
    explicit BpeTokenizer(const Vocab& vocab);

    // Tokenizes plain text (no special tokens) and appends the ids.
    void encode(std::string_view text, std::vector<TokenId>& out) const;

    // Tokenizes one pre-tokenized word (raw UTF-8 bytes; each byte is one
    // symbol of GPT-2's byte alphabet to start with).
    void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  private:
    struct TransparentHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    struct Merge {
        int32_t rank;
        int32_t result;  // symbol id of the merged text
    };
    static uint64_t pair_key(int32_t left, int32_t right) { return uint64_t(uint32_t(left)) << 32 | uint32_t(right); }

    int32_t symbol_id(std::string_view text) const;  // -1 when the text is in no token or merge

    const Vocab& vocab_;
    PreTokenizer pre_;
    bool ignore_merges_;
    // Every text that is a token or a part or result of a merge gets a symbol id.
    std::unordered_map<std::string, int32_t, TransparentHash, std::equal_to<>> symbols_;
    std::vector<TokenId> symbol_token_;  // symbol id -> token id, or kNoToken
    std::unordered_map<uint64_t, Merge> merges_;
    int32_t byte_symbol_[256];                 // symbol id of each byte's alphabet character
    std::vector<TokenId> byte_fallback_[256];  // what a byte in a symbol outside the vocabulary becomes
};

}  // namespace moeserve::text
