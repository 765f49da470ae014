#include "grammar/grammar_matcher.h"

#include <algorithm>

namespace moeserve {
namespace {

// Ambiguous grammars can multiply stacks; past this many the extra ones are
// dropped (the JSON grammars this serves keep a handful).
constexpr size_t kMaxStacks = 4096;

// The length of the UTF-8 sequence a lead byte starts; 0 for bytes that
// cannot start one (continuations, the overlong leads C0/C1, F5 and up).
int utf8_length(unsigned char c) {
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return c < 0xF5 ? 4 : 0;
}

// The smallest code point a sequence of `len` bytes may encode (shorter
// encodings are overlong, and invalid).
uint32_t utf8_min(int len) {
    return len == 1 ? 0 : len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
}

bool valid_code_point(uint32_t cp, int len) {
    return cp >= utf8_min(len) && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
}

template <typename Stacks>
void dedupe(Stacks& stacks) {
    std::sort(stacks.begin(), stacks.end());
    stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
    if (stacks.size() > kMaxStacks) stacks.resize(kMaxStacks);
}

}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)) {
    const GrammarRule& root = grammar_->rules[grammar_->root];
    for (uint32_t a = 0; a < root.alternatives.size(); ++a) expand({{grammar_->root, a, 0}}, stacks_);
    dedupe(stacks_);
}

const GrammarSymbol& GrammarMatcher::top(const Stack& s) const {
    const Pos& p = s.back();
    return grammar_->rules[p.rule].alternatives[p.alt][p.idx];
}

void GrammarMatcher::expand(Stack stack, std::vector<Stack>& out) const {
    auto at_end = [&](const Pos& p) { return p.idx >= grammar_->rules[p.rule].alternatives[p.alt].size(); };
    while (!stack.empty() && at_end(stack.back())) stack.pop_back();
    if (stack.empty() || !top(stack).is_rule) {
        out.push_back(std::move(stack));
        return;
    }
    const uint32_t rule = top(stack).rule;
    // Past the reference first (and past finished positions), so that right
    // recursion such as R ::= x R keeps stacks from growing.
    ++stack.back().idx;
    while (!stack.empty() && at_end(stack.back())) stack.pop_back();
    const auto& alts = grammar_->rules[rule].alternatives;
    for (uint32_t a = 0; a < alts.size(); ++a) {
        Stack next = stack;
        next.push_back({rule, a, 0});
        expand(std::move(next), out);
    }
}

std::vector<GrammarMatcher::Stack> GrammarMatcher::step(const std::vector<Stack>& stacks, uint32_t c) const {
    std::vector<Stack> out;
    for (const Stack& s : stacks) {
        if (s.empty() || !top(s).chars.contains(c)) continue;
        Stack next = s;
        ++next.back().idx;
        expand(std::move(next), out);
    }
    dedupe(out);
    return out;
}

bool GrammarMatcher::run(std::string_view bytes, std::vector<Stack>& stacks, std::string& partial) const {
    size_t i = 0;
    while (i < bytes.size()) {
        const unsigned char c0 = static_cast<unsigned char>(bytes[i]);
        const int len = utf8_length(c0);
        if (len == 0) return false;  // not UTF-8: no grammar character matches it
        if (i + len > bytes.size()) {
            // An unfinished character: allowed when some stack accepts a code
            // point that starts with these bytes.
            uint32_t lo = len == 2 ? (c0 & 0x1F) : len == 3 ? (c0 & 0x0F) : (c0 & 0x07);
            size_t k = 1;
            for (; i + k < bytes.size(); ++k) {
                const unsigned char cc = static_cast<unsigned char>(bytes[i + k]);
                if ((cc & 0xC0) != 0x80) return false;
                lo = (lo << 6) | (cc & 0x3F);
            }
            const int missing = len - static_cast<int>(k);
            uint32_t hi = (lo << (6 * missing)) | ((1u << (6 * missing)) - 1);
            lo = std::max(lo << (6 * missing), utf8_min(len));
            hi = std::min<uint32_t>(hi, 0x10FFFF);
            if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF)) return false;  // nothing valid can complete it
            bool any = false;
            for (const Stack& s : stacks)
                if (!s.empty() && top(s).chars.intersects(lo, hi)) any = true;
            if (!any) return false;
            partial.assign(bytes.substr(i));
            return true;
        }
        uint32_t cp = len == 1 ? c0 : len == 2 ? (c0 & 0x1F) : len == 3 ? (c0 & 0x0F) : (c0 & 0x07);
        for (int k = 1; k < len; ++k) {
            const unsigned char cc = static_cast<unsigned char>(bytes[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (!valid_code_point(cp, len)) return false;
        stacks = step(stacks, cp);
        if (stacks.empty()) return false;
        i += len;
    }
    partial.clear();
    return true;
}

bool GrammarMatcher::accepting() const {
    if (!partial_.empty()) return false;
    for (const Stack& s : stacks_)
        if (s.empty()) return true;
    return false;
}

bool GrammarMatcher::can_continue() const {
    for (const Stack& s : stacks_)
        if (!s.empty()) return true;
    return false;
}

bool GrammarMatcher::allows(std::string_view piece) const {
    if (piece.empty()) return false;
    // Quick rejection on the first byte, before copying any stacks.
    if (partial_.empty() && static_cast<unsigned char>(piece[0]) < 0x80) {
        bool any = false;
        for (const Stack& s : stacks_)
            if (!s.empty() && top(s).chars.contains(static_cast<unsigned char>(piece[0]))) {
                any = true;
                break;
            }
        if (!any) return false;
    }
    std::vector<Stack> stacks = stacks_;
    std::string partial;
    return run(partial_ + std::string(piece), stacks, partial);
}

bool GrammarMatcher::accept(std::string_view piece) {
    std::vector<Stack> stacks = stacks_;
    std::string partial;
    if (!run(partial_ + std::string(piece), stacks, partial)) return false;
    stacks_ = std::move(stacks);
    partial_ = std::move(partial);
    return true;
}

}  // namespace moeserve
