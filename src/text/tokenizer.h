// The tokenizer layer (src/text/): text <-> token ids for GGUF vocabularies,
// matching llama.cpp token for token.
//
//   Tokenizer             text -> ids (BPE or SentencePiece, special tokens,
//                         BOS/EOS), ids -> text, end-of-generation test
//   StreamingDetokenizer  ids -> text one token at a time (detokenizer.h)
//   Vocab                 what the GGUF metadata says (vocab.h)
//   hf_vocab.h            Hugging Face tokenizer.json -> vocab-only GGUF
//
// Internals: unicode.h (code point classes, UTF-8), pre_tokenizer.h (the word
// splitting regexes), bpe_tokenizer.h, spm_tokenizer.h, special_tokens.h.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "text/detokenizer.h"
#include "text/vocab.h"

namespace moeserve {

class GgufFile;

namespace text {
class BpeTokenizer;
class SpmTokenizer;
}  // namespace text

class Tokenizer {
  public:
    explicit Tokenizer(Vocab vocab);
    static Tokenizer from_gguf(const GgufFile& file);
    static Tokenizer from_file(const std::string& gguf_path);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    const Vocab& vocab() const { return *vocab_; }
    size_t n_tokens() const { return vocab_->size(); }

    // Text -> ids. add_special: BOS/EOS as the vocabulary asks
    // (tokenizer.ggml.add_bos_token / add_eos_token). parse_special: text such as
    // "<|im_start|>" becomes its control token; otherwise it is tokenized as
    // text (user-defined tokens are matched either way, as in llama.cpp).
    // Any bytes are accepted; invalid UTF-8 is read as U+FFFD by BPE vocabularies
    // and falls back to byte tokens in SentencePiece ones.
    std::vector<TokenId> tokenize(std::string_view text, bool add_special, bool parse_special) const;

    // The text of one token. Control and unknown tokens give "" unless
    // render_special. lstrip drops one leading space (SentencePiece's word
    // marker on the first token). Throws std::out_of_range for an unknown id.
    std::string token_to_piece(TokenId id, bool render_special, bool lstrip = false) const;

    // Ids -> text, the same bytes llama.cpp's llama_detokenize gives (with
    // remove_special = false). Throws std::out_of_range for an unknown id.
    std::string detokenize(std::span<const TokenId> ids, bool render_special) const;

    bool is_eog(TokenId id) const { return vocab_->is_eog(id); }

  private:
    std::unique_ptr<Vocab> vocab_;  // on the heap: the tokenizers below point into it
    std::unique_ptr<text::BpeTokenizer> bpe_;
    std::unique_ptr<text::SpmTokenizer> spm_;
    std::vector<std::string> pieces_;  // each token's piece, specials rendered
};

}  // namespace moeserve
