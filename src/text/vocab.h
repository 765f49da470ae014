// A tokenizer vocabulary as llama.cpp reads it from GGUF metadata
// (tokenizer.ggml.*): token texts, scores and attributes, BPE merges, the
// special token ids, the end-of-generation set and the add-BOS/EOS flags,
// including llama.cpp's rules for what is absent or spelled by text only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace moeserve {

class GgufFile;

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// Token attributes (llama.cpp's llama_token_attr bits).
namespace token_attr {
inline constexpr uint32_t UNDEFINED = 0;
inline constexpr uint32_t UNKNOWN = 1u << 0;
inline constexpr uint32_t UNUSED = 1u << 1;
inline constexpr uint32_t NORMAL = 1u << 2;
inline constexpr uint32_t CONTROL = 1u << 3;
inline constexpr uint32_t USER_DEFINED = 1u << 4;
inline constexpr uint32_t BYTE = 1u << 5;
inline constexpr uint32_t NORMALIZED = 1u << 6;
inline constexpr uint32_t LSTRIP = 1u << 7;
inline constexpr uint32_t RSTRIP = 1u << 8;
inline constexpr uint32_t SINGLE_WORD = 1u << 9;
}  // namespace token_attr

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
    UNDEFINED = 0,
    NORMAL = 1,
    UNKNOWN = 2,
    CONTROL = 3,
    USER_DEFINED = 4,
    UNUSED = 5,
    BYTE = 6,
};

enum class VocabType {
    SPM,  // tokenizer.ggml.model = llama: SentencePiece, score-based merges, byte fallback
    BPE,  // tokenizer.ggml.model = gpt2: byte-level BPE with ranked merges
};

struct SpecialTokenIds {
    TokenId bos = kNoToken;
    TokenId eos = kNoToken;
    TokenId eot = kNoToken;
    TokenId eom = kNoToken;
    TokenId unk = kNoToken;
    TokenId sep = kNoToken;
    TokenId pad = kNoToken;
    TokenId mask = kNoToken;
    TokenId fim_pre = kNoToken;
    TokenId fim_suf = kNoToken;
    TokenId fim_mid = kNoToken;
    TokenId fim_pad = kNoToken;
    TokenId fim_rep = kNoToken;
    TokenId fim_sep = kNoToken;
};

struct TokenData {
    std::string text;
    float score = 0.0f;
    uint32_t attr = token_attr::NORMAL;
};

class Vocab {
  public:
    // Reads tokenizer.ggml.* from the file. Throws std::runtime_error naming the
    // file and the key on a missing or malformed vocabulary.
    static Vocab from_gguf(const GgufFile& file);

    VocabType type() const { return type_; }
    const std::string& model() const { return model_; }  // "llama" or "gpt2"
    const std::string& pre() const { return pre_; }      // tokenizer.ggml.pre ("default" when absent)

    size_t size() const { return tokens_.size(); }
    bool valid(TokenId id) const { return id >= 0 && size_t(id) < tokens_.size(); }
    const TokenData& token(TokenId id) const { return tokens_.at(size_t(id)); }
    const std::string& text(TokenId id) const { return token(id).text; }
    uint32_t attr(TokenId id) const { return token(id).attr; }
    // Exact lookup of a token text; kNoToken when absent.
    TokenId find(std::string_view text) const;

    // BPE merges in rank order, split at the first space after the first byte.
    const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

    const SpecialTokenIds& special() const { return special_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    bool add_space_prefix() const { return add_space_prefix_; }
    bool clean_spaces() const { return clean_spaces_; }    // clean_up_tokenization_spaces on decode
    bool ignore_merges() const { return ignore_merges_; }  // a whole word found in the vocab is one token

    // End-of-generation tokens, ascending.
    const std::vector<TokenId>& eog_ids() const { return eog_ids_; }
    bool is_eog(TokenId id) const;

    // Control, user-defined and unknown tokens, longest text first: the order in
    // which the tokenizer cuts them out of the input.
    const std::vector<TokenId>& special_tokens_by_length() const { return special_by_length_; }

    const std::optional<std::string>& chat_template() const { return chat_template_; }

  private:
    struct TransparentHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    void apply_llama_special_rules(const std::string& model_name);

    VocabType type_ = VocabType::SPM;
    std::string model_;
    std::string pre_;
    std::vector<TokenData> tokens_;
    std::unordered_map<std::string, TokenId, TransparentHash, std::equal_to<>> text_to_id_;
    std::vector<std::pair<std::string, std::string>> merges_;
    SpecialTokenIds special_;
    bool add_bos_ = false;
    bool add_eos_ = false;
    bool add_sep_ = false;
    bool add_space_prefix_ = false;
    bool clean_spaces_ = false;
    bool ignore_merges_ = false;
    std::vector<TokenId> eog_ids_;
    std::vector<TokenId> special_by_length_;
    std::optional<std::string> chat_template_;
};

}  // namespace moeserve
