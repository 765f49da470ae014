#include "text/bpe_tokenizer.h"

#include <algorithm>
#include <queue>

#include "text/unicode.h"

namespace moeserve::text {

namespace {

const PreTokenizerSpec& spec_for(const Vocab& vocab) {
    const PreTokenizerSpec* spec = find_pre_tokenizer(vocab.pre());
    if (!spec) throw std::runtime_error("unknown pre-tokenizer type '" + vocab.pre() + "'");
    return *spec;
}

}  // namespace

BpeTokenizer::BpeTokenizer(const Vocab& vocab)
    : vocab_(vocab), pre_(spec_for(vocab).regexes), ignore_merges_(vocab.ignore_merges()) {
    auto intern = [&](std::string_view text) {
        auto it = symbols_.find(text);
        if (it != symbols_.end()) return it->second;
        int32_t id = int32_t(symbol_token_.size());
        symbols_.emplace(std::string(text), id);
        symbol_token_.push_back(vocab.find(text));
        return id;
    };
    symbols_.reserve(vocab.size() + vocab.merges().size());
    for (TokenId id = 0; id < TokenId(vocab.size()); ++id) intern(vocab.text(id));
    merges_.reserve(vocab.merges().size());
    std::string joined;
    for (size_t rank = 0; rank < vocab.merges().size(); ++rank) {
        const auto& [left, right] = vocab.merges()[rank];
        if (left.empty() || right.empty()) continue;
        int32_t l = intern(left), r = intern(right);
        joined = left;
        joined += right;
        int32_t m = intern(joined);
        merges_.try_emplace(pair_key(l, r), Merge{int32_t(rank), m});  // the first rank of a pair wins
    }
    for (int b = 0; b < 256; ++b) {
        const std::string& letter = byte_to_unicode(uint8_t(b));
        byte_symbol_[b] = symbol_id(letter);
        // llama.cpp looks up each byte of the alphabet character's UTF-8 on its own.
        for (char c : letter)
            if (TokenId id = vocab.find(std::string_view(&c, 1)); id != kNoToken) byte_fallback_[b].push_back(id);
    }
}

int32_t BpeTokenizer::symbol_id(std::string_view text) const {
    auto it = symbols_.find(text);
    return it == symbols_.end() ? -1 : it->second;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<TokenId>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
        std::string letters;
        for (char c : word) letters += byte_to_unicode(uint8_t(c));
        if (TokenId id = vocab_.find(letters); id != kNoToken) {
            out.push_back(id);
            return;
        }
    }
    // Symbols: one per byte to start with, linked in a list.
    struct Symbol {
        uint32_t start, len;
        int32_t id;  // symbol id, -1 when the text can never merge
        int32_t prev, next;
    };
    thread_local std::vector<Symbol> sym;
    sym.clear();
    for (size_t pos = 0; pos < word.size(); ++pos) {
        int32_t i = int32_t(pos);
        sym.push_back({uint32_t(pos), 1, byte_symbol_[uint8_t(word[pos])], i - 1, i + 1});
    }
    sym.back().next = -1;

    // Candidate merges, lowest rank first, then leftmost.
    struct Candidate {
        int32_t rank, left, right;
        int32_t left_id, right_id;
        bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    thread_local std::vector<Candidate> heap;
    heap.clear();
    auto consider = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        int32_t a = sym[left].id, b = sym[right].id;
        if (a < 0 || b < 0) return;
        auto it = merges_.find(pair_key(a, b));
        if (it == merges_.end()) return;
        heap.push_back({it->second.rank, left, right, a, b});
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
    };
    for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) consider(i, i + 1);

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<>());
        Candidate c = heap.back();
        heap.pop_back();
        Symbol& l = sym[c.left];
        Symbol& r = sym[c.right];
        // Stale: a side was merged away or changed since this pair was queued.
        if (l.len == 0 || r.len == 0 || l.next != c.right || l.id != c.left_id || r.id != c.right_id) continue;
        l.id = merges_.find(pair_key(c.left_id, c.right_id))->second.result;
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = c.left;
        consider(l.prev, c.left);
        consider(c.left, l.next);
    }

    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        const Symbol& s = sym[i];
        TokenId id = s.id >= 0 ? symbol_token_[s.id] : kNoToken;
        if (id != kNoToken) {
            out.push_back(id);
            continue;
        }
        // Not a token: its bytes, each if a token of its own (else dropped, as in llama.cpp).
        for (uint32_t k = 0; k < s.len; ++k) {
            const auto& fallback = byte_fallback_[uint8_t(word[s.start + k])];
            out.insert(out.end(), fallback.begin(), fallback.end());
        }
    }
}

void BpeTokenizer::encode(std::string_view text, std::vector<TokenId>& out) const {
    std::vector<uint32_t> cpts;
    decode_utf8(text, cpts);
    std::vector<uint32_t> lengths;
    pre_.split(cpts, lengths);
    // The words are cut from the text as llama.cpp rebuilds it from the code
    // points: invalid bytes have become U+FFFD.
    std::string utf8;
    utf8.reserve(text.size());
    for (uint32_t cp : cpts) append_utf8(utf8, cp);

    // Words repeat a lot in long inputs; remember the ids of short ones.
    std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;  // word -> [begin, end) in `memo`
    std::vector<TokenId> memo;
    constexpr size_t kCacheMaxWord = 256;
    constexpr size_t kCacheMaxEntries = 1 << 18;

    size_t cp = 0, byte = 0;
    for (uint32_t len : lengths) {
        size_t bytes = 0;
        for (size_t i = cp; i < cp + len; ++i)
            bytes += cpts[i] < 0x80 ? 1 : cpts[i] < 0x800 ? 2 : cpts[i] < 0x10000 ? 3 : 4;
        std::string_view word(utf8.data() + byte, bytes);
        cp += len;
        byte += bytes;

        if (word.size() > kCacheMaxWord) {
            encode_word(word, out);
            continue;
        }
        if (auto it = cache.find(word); it != cache.end()) {
            out.insert(out.end(), memo.begin() + it->second.first, memo.begin() + it->second.second);
            continue;
        }
        size_t first = out.size();
        encode_word(word, out);
        if (cache.size() < kCacheMaxEntries) {
            uint32_t m0 = uint32_t(memo.size());
            memo.insert(memo.end(), out.begin() + long(first), out.end());
            cache.emplace(word, std::make_pair(m0, uint32_t(memo.size())));
        }
    }
}

}  // namespace moeserve::text
