#include "text/special_tokens.h"

namespace moeserve::text {

namespace {

// C isspace: what llama.cpp strips for lstrip/rstrip.
bool is_c_space(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

}  // namespace

std::vector<Fragment> partition_special_tokens(const Vocab& vocab, std::string_view text, bool parse_special) {
    std::vector<Fragment> cur;
    if (text.empty()) return cur;
    cur.push_back({kNoToken, 0, text.size()});
    std::vector<Fragment> next;

    for (TokenId special : vocab.special_tokens_by_length()) {
        const TokenData& data = vocab.token(special);
        if (!parse_special && (data.attr & (token_attr::CONTROL | token_attr::UNKNOWN))) continue;
        const std::string_view needle = data.text;
        if (text.find(needle) == std::string_view::npos) continue;  // in no fragment either

        next.clear();
        for (const Fragment& f : cur) {
            if (f.token != kNoToken) {
                next.push_back(f);
                continue;
            }
            size_t begin = f.offset;
            const size_t end = f.offset + f.length;
            while (begin < end) {
                size_t match = text.substr(0, end).find(needle, begin);
                if (match == std::string_view::npos) break;
                size_t left_end = match;
                if (data.attr & token_attr::LSTRIP)
                    while (left_end > begin && is_c_space(text[left_end - 1])) --left_end;
                if (left_end > begin) next.push_back({kNoToken, begin, left_end - begin});
                next.push_back({special, 0, 0});
                begin = match + needle.size();
                if (data.attr & token_attr::RSTRIP)
                    while (begin < end && is_c_space(text[begin])) ++begin;
            }
            if (begin < end) next.push_back({kNoToken, begin, end - begin});
        }
        std::swap(cur, next);
    }
    return cur;
}

}  // namespace moeserve::text
