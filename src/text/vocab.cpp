#include "text/vocab.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "gguf/gguf_file.h"
#include "text/pre_tokenizer.h"

namespace moeserve {

namespace {

std::runtime_error vocab_error(const GgufFile& file, const std::string& what) {
    return std::runtime_error(file.path() + ": " + what);
}

const GgufArray* find_array(const GgufFile& file, std::string_view key) {
    const GgufValue* v = file.find(key);
    if (!v) return nullptr;
    if (v->type() != GgufValueType::ARRAY)
        throw vocab_error(
            file, std::string(key) + " should be an array, found " + std::string(gguf_value_type_name(v->type())));
    return &v->as_array();
}

// A token id stored under `key`, if present and an integer that names a token
// (llama.cpp ignores ids out of range and keeps its default).
std::optional<TokenId> find_token_id(const GgufFile& file, std::string_view key, size_t n_tokens) {
    const GgufValue* v = file.find(key);
    if (!v || !v->is_integer()) return std::nullopt;
    if (v->type() == GgufValueType::UINT64) {
        uint64_t id = v->as_uint();
        return id < n_tokens ? std::optional<TokenId>(TokenId(id)) : std::nullopt;
    }
    int64_t id = v->as_int();
    if (id < 0 || uint64_t(id) >= n_tokens) return std::nullopt;
    return TokenId(id);
}

std::optional<bool> find_flag(const GgufFile& file, std::string_view key) {
    const GgufValue* v = file.find(key);
    if (!v) return std::nullopt;
    if (v->type() == GgufValueType::BOOL) return v->as_bool();
    if (v->is_integer()) return v->as_int() != 0;
    throw vocab_error(file, std::string(key) + " should be a bool");
}

uint32_t attr_from_type(int64_t type) {
    switch (TokenType(type)) {
        case TokenType::NORMAL:
            return token_attr::NORMAL;
        case TokenType::UNKNOWN:
            return token_attr::UNKNOWN;
        case TokenType::CONTROL:
            return token_attr::CONTROL;
        case TokenType::USER_DEFINED:
            return token_attr::USER_DEFINED;
        case TokenType::UNUSED:
            return token_attr::UNUSED;
        case TokenType::BYTE:
            return token_attr::BYTE;
        default:
            return token_attr::UNDEFINED;
    }
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

}  // namespace

TokenId Vocab::find(std::string_view text) const {
    auto it = text_to_id_.find(text);
    return it == text_to_id_.end() ? kNoToken : it->second;
}

bool Vocab::is_eog(TokenId id) const {
    return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

Vocab Vocab::from_gguf(const GgufFile& file) {
    Vocab v;
    auto model = file.find_string("tokenizer.ggml.model");
    if (!model) throw vocab_error(file, "no tokenizer in this file (tokenizer.ggml.model is missing)");
    v.model_ = *model;
    v.pre_ = file.find_string("tokenizer.ggml.pre").value_or("");

    // Defaults by model type (llama.cpp's).
    if (v.model_ == "llama") {
        v.type_ = VocabType::SPM;
        v.special_.bos = 1;
        v.special_.eos = 2;
        v.special_.unk = 0;
        v.add_space_prefix_ = true;
        v.add_bos_ = true;
        v.clean_spaces_ = false;
    } else if (v.model_ == "gpt2") {
        v.type_ = VocabType::BPE;
        v.special_.bos = 11;
        v.special_.eos = 11;
        v.clean_spaces_ = true;
        if (v.pre_.empty()) v.pre_ = "default";
        const text::PreTokenizerSpec* spec = text::find_pre_tokenizer(v.pre_);
        if (!spec) throw vocab_error(file, "unknown pre-tokenizer type '" + v.pre_ + "' (tokenizer.ggml.pre)");
        v.clean_spaces_ = spec->clean_spaces;
        v.ignore_merges_ = spec->ignore_merges;
        v.add_bos_ = spec->add_bos;
        if (spec->no_default_bos) v.special_.bos = kNoToken;
    } else {
        throw vocab_error(file, "tokenizer.ggml.model = '" + v.model_ + "' is not supported (supported: llama, gpt2)");
    }
    if (auto f = find_flag(file, "tokenizer.ggml.add_space_prefix")) v.add_space_prefix_ = *f;

    // Tokens, scores, types.
    const GgufArray* tokens = find_array(file, "tokenizer.ggml.tokens");
    if (!tokens) throw vocab_error(file, "tokenizer.ggml.tokens is missing");
    if (tokens->elem_type != GgufValueType::STRING)
        throw vocab_error(file, "tokenizer.ggml.tokens should be an array of strings");
    const size_t n = tokens->items.size();
    if (n == 0) throw vocab_error(file, "tokenizer.ggml.tokens is empty");
    if (n > size_t(INT32_MAX)) throw vocab_error(file, "tokenizer.ggml.tokens has too many entries");
    const GgufArray* scores = find_array(file, "tokenizer.ggml.scores");
    if (scores && scores->items.size() < n)
        throw vocab_error(file, "tokenizer.ggml.scores has " + std::to_string(scores->items.size()) + " entries for " +
                                    std::to_string(n) + " tokens");
    if (scores && scores->elem_type != GgufValueType::FLOAT32 && scores->elem_type != GgufValueType::INT32)
        throw vocab_error(file, "tokenizer.ggml.scores should be an array of float32 or int32");
    const GgufArray* types = find_array(file, "tokenizer.ggml.token_type");
    if (types && types->items.size() < n)
        throw vocab_error(file, "tokenizer.ggml.token_type has " + std::to_string(types->items.size()) +
                                    " entries for " + std::to_string(n) + " tokens");
    if (types && types->elem_type != GgufValueType::INT32)
        throw vocab_error(file, "tokenizer.ggml.token_type should be an array of int32");

    v.tokens_.resize(n);
    v.text_to_id_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        TokenData& t = v.tokens_[i];
        t.text = tokens->items[i].as_string();
        if (t.text.empty()) t.text = "[EMPTY_" + std::to_string(i) + "]";
        auto [it, inserted] = v.text_to_id_.emplace(t.text, TokenId(i));
        if (!inserted)
            throw vocab_error(file, "duplicate token in vocabulary: '" + t.text + "' has ids " +
                                        std::to_string(it->second) + " and " + std::to_string(i));
        t.score = scores ? float(scores->items[i].as_double()) : 0.0f;
        t.attr = types ? attr_from_type(types->items[i].as_int()) : token_attr::NORMAL;
    }

    // Merges.
    if (v.type_ == VocabType::BPE) {
        const GgufArray* merges = find_array(file, "tokenizer.ggml.merges");
        if (!merges) throw vocab_error(file, "tokenizer.ggml.merges is missing (needed by a gpt2 tokenizer)");
        if (merges->elem_type != GgufValueType::STRING && !merges->items.empty())
            throw vocab_error(file, "tokenizer.ggml.merges should be an array of strings");
        v.merges_.reserve(merges->items.size());
        for (const GgufValue& m : merges->items) {
            const std::string& s = m.as_string();
            size_t pos = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
            if (pos == std::string::npos)
                v.merges_.emplace_back();  // malformed: keeps its rank, never matches
            else
                v.merges_.emplace_back(s.substr(0, pos), s.substr(pos + 1));
        }
    }

    // Special token ids: defaults out of range are dropped, keys override.
    SpecialTokenIds& sp = v.special_;
    for (TokenId* id : {&sp.bos, &sp.eos, &sp.unk})
        if (*id >= 0 && size_t(*id) >= n) *id = kNoToken;
    const std::pair<const char*, TokenId*> keys[] = {
        {"tokenizer.ggml.bos_token_id", &sp.bos},         {"tokenizer.ggml.eos_token_id", &sp.eos},
        {"tokenizer.ggml.eot_token_id", &sp.eot},         {"tokenizer.ggml.eom_token_id", &sp.eom},
        {"tokenizer.ggml.unknown_token_id", &sp.unk},     {"tokenizer.ggml.seperator_token_id", &sp.sep},
        {"tokenizer.ggml.padding_token_id", &sp.pad},     {"tokenizer.ggml.mask_token_id", &sp.mask},
        {"tokenizer.ggml.fim_pre_token_id", &sp.fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &sp.fim_suf},
        {"tokenizer.ggml.fim_mid_token_id", &sp.fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &sp.fim_pad},
        {"tokenizer.ggml.fim_rep_token_id", &sp.fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &sp.fim_sep},
        {"tokenizer.ggml.prefix_token_id", &sp.fim_pre},  {"tokenizer.ggml.suffix_token_id", &sp.fim_suf},
        {"tokenizer.ggml.middle_token_id", &sp.fim_mid},
    };
    for (const auto& [key, id] : keys)
        if (auto found = find_token_id(file, key, n)) *id = *found;

    if (auto f = find_flag(file, "tokenizer.ggml.add_bos_token")) v.add_bos_ = *f;
    if (auto f = find_flag(file, "tokenizer.ggml.add_eos_token")) v.add_eos_ = *f;
    if (auto f = find_flag(file, "tokenizer.ggml.add_sep_token")) v.add_sep_ = *f;
    if (v.add_bos_ && sp.bos == kNoToken)
        throw vocab_error(file, "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
    if (v.add_eos_ && sp.eos == kNoToken)
        throw vocab_error(file, "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");

    if (const GgufValue* t = file.find("tokenizer.chat_template"); t && t->type() == GgufValueType::STRING)
        v.chat_template_ = t->as_string();

    v.apply_llama_special_rules(file.find_string("general.name").value_or(""));
    return v;
}

// llama.cpp recognises several special tokens by their text, makes them control
// tokens, and derives the end-of-generation set from them (llama-vocab.cpp,
// load()). Where it iterates a hash map and takes the first hit, we take the
// lowest id, which is deterministic.
void Vocab::apply_llama_special_rules(const std::string& model_name) {
    SpecialTokenIds& sp = special_;
    const TokenId n = TokenId(tokens_.size());
    auto make_control = [&](TokenId id) { tokens_[size_t(id)].attr |= token_attr::CONTROL; };
    auto detect = [&](TokenId& slot, std::initializer_list<std::string_view> texts) {
        if (slot != kNoToken) return;
        for (TokenId id = 0; id < n; ++id) {
            const std::string& t = tokens_[size_t(id)].text;
            if (std::find(texts.begin(), texts.end(), t) != texts.end()) {
                slot = id;
                make_control(id);
                return;
            }
        }
    };
    detect(sp.eot, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                    "_<EOT>", "[EOT]", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "<end_of_utterance>"});
    detect(sp.eom, {"<|eom_id|>"});
    detect(sp.fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uFF5Cfim\u2581begin\uFF5C>", "<PRE>",
                        "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"});
    detect(sp.fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uFF5Cfim\u2581hole\uFF5C>", "<SUF>",
                        "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"});
    detect(sp.fim_mid, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uFF5Cfim\u2581end\uFF5C>", "<MID>",
                        "\u2581<MID>", "<|code_middle|>", "<|middle|>"});
    detect(sp.fim_pad, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"});
    detect(sp.fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"});
    detect(sp.fim_sep, {"<|file_sep|>"});

    // Control tokens named "unused" are unused.
    for (TokenData& t : tokens_)
        if ((t.attr & token_attr::CONTROL) && contains(t.text, "unused")) t.attr |= token_attr::UNUSED;

    // End of generation.
    std::vector<TokenId> eog;
    for (TokenId id : {sp.fim_pad, sp.fim_rep, sp.fim_sep})
        if (id != kNoToken) eog.push_back(id);
    static const std::string_view kEogTexts[] = {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<\uFF5Cend\u2581of\u2581sentence\uFF5C>",
        "[e~[",
    };
    for (TokenId id = 0; id < n; ++id) {
        const std::string& t = tokens_[size_t(id)].text;
        if (std::find(std::begin(kEogTexts), std::end(kEogTexts), t) != std::end(kEogTexts)) {
            eog.push_back(id);
            make_control(id);
        }
    }
    // gpt-oss: these are always rendered.
    for (TokenData& t : tokens_)
        if (t.text == "<|channel|>" || t.text == "<|message|>" || t.text == "<|start|>" || t.text == "<|constrain|>")
            t.attr = token_attr::USER_DEFINED;
    for (TokenId id : {sp.eos, sp.eot, sp.eom})
        if (id != kNoToken) eog.push_back(id);
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());

    auto eog_text = [&](std::string_view text) {
        for (TokenId id : eog)
            if (tokens_[size_t(id)].text == text) return id;
        return kNoToken;
    };
    auto erase_eog = [&](TokenId id) { eog.erase(std::find(eog.begin(), eog.end(), id)); };
    // o200k_harmony / solar-open: <|end|> ends a message, not the generation.
    {
        bool has_return = eog_text("<|return|>") != kNoToken;
        bool has_call = eog_text("<|call|>") != kNoToken || eog_text("<|calls|>") != kNoToken;
        bool has_flush = eog_text("<|flush|>") != kNoToken;
        TokenId end_id = eog_text("<|end|>");
        if (end_id != kNoToken && ((has_return && has_call) || (has_call && has_flush))) {
            erase_eog(end_id);
            tokens_[size_t(end_id)].attr = token_attr::USER_DEFINED;
        }
    }
    // gemma4 / paddleocr: </s> is not an end of generation there.
    if (eog_text("<|tool_response>") != kNoToken) {
        if (TokenId s_id = eog_text("</s>"); s_id != kNoToken) {
            erase_eog(s_id);
            tokens_[size_t(s_id)].attr = token_attr::NORMAL;
        }
    }
    eog_ids_ = std::move(eog);

    // Tokens cut out of the input before tokenizing, longest first (ties by id:
    // llama.cpp's unstable sort leaves them in an unspecified order).
    special_by_length_.clear();
    for (TokenId id = 0; id < n; ++id)
        if (tokens_[size_t(id)].attr & (token_attr::CONTROL | token_attr::USER_DEFINED | token_attr::UNKNOWN))
            special_by_length_.push_back(id);
    std::stable_sort(special_by_length_.begin(), special_by_length_.end(), [&](TokenId a, TokenId b) {
        return tokens_[size_t(a)].text.size() > tokens_[size_t(b)].text.size();
    });

    // Per-model strip attributes.
    std::string name = model_name;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    auto set_attr = [&](std::string_view text, uint32_t bit, bool on) {
        TokenId id = find(text);
        if (id == kNoToken) return;
        uint32_t& a = tokens_[size_t(id)].attr;
        a = on ? (a | bit) : (a & ~bit);
    };
    if (contains(pre_, "jina-v2-de") || contains(pre_, "jina-v2-es") || contains(pre_, "jina-v2-code")) {
        set_attr("<mask>", token_attr::LSTRIP, true);
    } else if (contains(name, "phi-3") || contains(name, "phi3")) {
        for (TokenId id : special_by_length_) tokens_[size_t(id)].attr |= token_attr::RSTRIP;
        set_attr("</s>", token_attr::RSTRIP, true);
        for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(t, token_attr::RSTRIP, false);
    } else if (contains(name, "modern-bert")) {
        set_attr("[MASK]", token_attr::LSTRIP, true);
    }
}

}  // namespace moeserve
