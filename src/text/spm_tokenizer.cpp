#include "text/spm_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "text/unicode.h"

namespace moeserve::text {

SpmTokenizer::SpmTokenizer(const Vocab& vocab) : vocab_(vocab) {
    for (int b = 0; b < 256; ++b) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "<0x%02X>", b);
        TokenId id = vocab.find(hex);
        if (id == kNoToken) {
            char c = char(b);
            id = vocab.find(std::string_view(&c, 1));
        }
        // llama.cpp throws when neither exists; here the byte becomes the unknown
        // token, or nothing when there is none.
        byte_token_[b] = id != kNoToken ? id : vocab.special().unk;
    }
}

void SpmTokenizer::encode(std::string_view text, std::vector<TokenId>& out) const {
    if (text.empty()) return;
    struct Symbol {
        uint32_t start, len;
        int32_t prev, next;
    };
    std::vector<Symbol> sym;
    sym.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
        size_t len = std::min(utf8_len_from_lead(uint8_t(text[pos])), text.size() - pos);
        int32_t i = int32_t(sym.size());
        sym.push_back({uint32_t(pos), uint32_t(len), i - 1, i + 1});
        pos += len;
    }
    sym.back().next = -1;

    // Candidate merges: highest score first, then leftmost.
    struct Candidate {
        float score;
        int32_t left, right;
        uint32_t size;
        bool operator<(const Candidate& o) const { return score != o.score ? score < o.score : left > o.left; }
    };
    std::priority_queue<Candidate> queue;
    auto consider = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        std::string_view joined = text.substr(sym[left].start, sym[left].len + sym[right].len);
        TokenId id = vocab_.find(joined);
        if (id == kNoToken) return;
        queue.push({vocab_.token(id).score, left, right, uint32_t(joined.size())});
    };
    for (int32_t i = 1; i < int32_t(sym.size()); ++i) consider(i - 1, i);

    while (!queue.empty()) {
        Candidate c = queue.top();
        queue.pop();
        Symbol& l = sym[c.left];
        Symbol& r = sym[c.right];
        if (l.len == 0 || r.len == 0 || l.len + r.len != c.size) continue;  // stale
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = c.left;
        consider(l.prev, c.left);
        consider(c.left, l.next);
    }

    for (int32_t i = 0; i != -1; i = sym[i].next) {
        std::string_view piece = text.substr(sym[i].start, sym[i].len);
        TokenId id = vocab_.find(piece);
        if (id != kNoToken) {
            out.push_back(id);
            continue;
        }
        for (char ch : piece)
            if (TokenId b = byte_token_[uint8_t(ch)]; b != kNoToken) out.push_back(b);
    }
}

std::string escape_spaces(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 4);
    for (char c : text) {
        if (c == ' ')
            out += "\xE2\x96\x81";
        else
            out += c;
    }
    return out;
}

}  // namespace moeserve::text
