#include "text/tokenizer.h"

#include <cstdlib>
#include <stdexcept>

#include "gguf/gguf_file.h"
#include "text/bpe_tokenizer.h"
#include "text/special_tokens.h"
#include "text/spm_tokenizer.h"
#include "text/unicode.h"

namespace moeserve {

namespace {

// Piece of a token with special tokens rendered (llama.cpp's token_to_piece cache).
std::string make_piece(const Vocab& vocab, TokenId id) {
    const TokenData& t = vocab.token(id);
    if (t.attr & (token_attr::UNKNOWN | token_attr::CONTROL | token_attr::USER_DEFINED)) return t.text;
    if (t.attr & token_attr::NORMAL) {
        if (vocab.type() == VocabType::SPM) {
            std::string out;
            for (size_t i = 0; i < t.text.size(); ++i) {
                if (t.text.compare(i, 3, "\xE2\x96\x81") == 0) {
                    out += ' ';
                    i += 2;
                } else {
                    out += t.text[i];
                }
            }
            return out;
        }
        // BPE: each code point of the text is one byte of GPT-2's alphabet.
        std::vector<uint32_t> cps;
        text::decode_utf8(t.text, cps);
        std::string out;
        for (uint32_t cp : cps) {
            int b = text::unicode_to_byte(cp);
            if (b >= 0) {
                out += char(b);
            } else {  // llama.cpp's marker for a code point outside the alphabet
                std::string utf8;
                text::append_utf8(utf8, cp);
                out += "[UNK_BYTE_0x";
                static const char* hex = "0123456789abcdef";
                for (char c : utf8) {
                    out += hex[uint8_t(c) >> 4];
                    out += hex[uint8_t(c) & 15];
                }
                out += t.text + "]";
            }
        }
        return out;
    }
    if (t.attr & token_attr::BYTE) {
        // "<0xNN>"
        std::string hex = t.text.size() >= 5 ? t.text.substr(3, 2) : std::string();
        return std::string(1, char(std::strtol(hex.c_str(), nullptr, 16)));
    }
    return "";  // unused and undefined tokens have no text
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::make_unique<Vocab>(std::move(vocab))) {
    if (vocab_->type() == VocabType::BPE)
        bpe_ = std::make_unique<text::BpeTokenizer>(*vocab_);
    else
        spm_ = std::make_unique<text::SpmTokenizer>(*vocab_);
    pieces_.resize(vocab_->size());
    for (TokenId id = 0; id < TokenId(vocab_->size()); ++id) {
        try {
            pieces_[size_t(id)] = make_piece(*vocab_, id);
        } catch (const std::exception&) {
            pieces_[size_t(id)].clear();  // a malformed byte token: no text
        }
    }
}

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
    return Tokenizer(Vocab::from_gguf(file));
}

Tokenizer Tokenizer::from_file(const std::string& gguf_path) {
    return from_gguf(GgufFile::open(gguf_path));
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<TokenId> Tokenizer::tokenize(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<TokenId> out;
    const Vocab& v = *vocab_;
    std::vector<text::Fragment> fragments = text::partition_special_tokens(v, text, parse_special);
    out.reserve(text.size() / 3 + 2);

    if (add_special && v.add_bos()) out.push_back(v.special().bos);
    bool prev_special = true;  // SPM: a space is prefixed to text at the start and after a special token
    for (const text::Fragment& f : fragments) {
        if (f.token != kNoToken) {
            out.push_back(f.token);
            prev_special = true;
            continue;
        }
        std::string_view piece = text.substr(f.offset, f.length);
        if (bpe_) {
            bpe_->encode(piece, out);
        } else {
            std::string spaced;
            if (v.add_space_prefix() && prev_special) spaced = " ";
            spaced += piece;
            spm_->encode(text::escape_spaces(spaced), out);
        }
        prev_special = false;
    }
    if (add_special && v.add_eos()) out.push_back(v.special().eos);
    return out;
}

std::string Tokenizer::token_to_piece(TokenId id, bool render_special, bool lstrip) const {
    if (!vocab_->valid(id))
        throw std::out_of_range("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                                std::to_string(vocab_->size()) + " tokens)");
    if (!render_special && (vocab_->attr(id) & (token_attr::UNKNOWN | token_attr::CONTROL))) return "";
    const std::string& piece = pieces_[size_t(id)];
    if (lstrip && !piece.empty() && piece[0] == ' ') return piece.substr(1);
    return piece;
}

std::string Tokenizer::detokenize(std::span<const TokenId> ids, bool render_special) const {
    std::string out;
    bool first = true;
    for (TokenId id : ids) {
        out += token_to_piece(id, render_special, first && vocab_->add_space_prefix());
        first = false;
    }
    if (vocab_->clean_spaces()) out = text::clean_up_spaces(out);
    return out;
}

}  // namespace moeserve
