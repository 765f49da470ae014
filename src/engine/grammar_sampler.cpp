#include "engine/grammar_sampler.h"

#include <algorithm>
#include <limits>

#include "text/tokenizer.h"

namespace moeserve {

TokenPieces::TokenPieces(const Tokenizer& tokenizer, bool render_special) {
    pieces_.reserve(tokenizer.n_tokens());
    for (size_t id = 0; id < tokenizer.n_tokens(); ++id)
        pieces_.push_back(tokenizer.token_to_piece(static_cast<int32_t>(id), render_special));
}

namespace {

bool allowed(int32_t tok, const GrammarMatcher& m, const TokenPieces& pieces, const Tokenizer& tokenizer) {
    if (tok < 0 || static_cast<size_t>(tok) >= pieces.size()) return false;  // padding rows of the output
    if (tokenizer.is_eog(tok)) return m.accepting();
    return m.allows(pieces[tok]);
}

int32_t end_token(const Tokenizer& tokenizer) {
    const SpecialTokenIds& s = tokenizer.vocab().special();
    if (s.eot != kNoToken) return s.eot;
    if (s.eos != kNoToken) return s.eos;
    for (size_t id = 0; id < tokenizer.n_tokens(); ++id)
        if (tokenizer.is_eog(static_cast<int32_t>(id))) return static_cast<int32_t>(id);
    return 0;
}

}  // namespace

size_t trigger_floor(const GrammarConstraint& g, const std::string& text, size_t close_from) {
    static constexpr std::string_view kOpen = "<think>", kClose = "</think>";
    auto after_close = [&](size_t from) {
        const size_t c = text.find(kClose, std::max(from, close_from));
        return c == std::string::npos ? std::string::npos : c + kClose.size();
    };
    if (g.starts_in_reasoning) return after_close(0);
    if (!g.may_think) return 0;
    const size_t start = text.find_first_not_of(" \t\r\n");
    if (start == std::string::npos) return std::string::npos;  // only whitespace so far
    const std::string_view head = std::string_view(text).substr(start, kOpen.size());
    if (head == kOpen) return after_close(start + kOpen.size());
    return kOpen.substr(0, head.size()) == head ? std::string::npos : 0;
}

int32_t sample_with_grammar(Sampler& sampler, std::span<const float> logits, const GrammarMatcher& matcher,
                            const TokenPieces& pieces, const Tokenizer& tokenizer, std::vector<float>& scratch) {
    if (!matcher.can_continue()) return end_token(tokenizer);
    const int32_t first = sampler.sample(logits);
    if (allowed(first, matcher, pieces, tokenizer)) return first;
    scratch.assign(logits.begin(), logits.end());
    bool any = false;
    for (size_t id = 0; id < scratch.size(); ++id) {
        if (allowed(static_cast<int32_t>(id), matcher, pieces, tokenizer))
            any = true;
        else
            scratch[id] = -std::numeric_limits<float>::infinity();
    }
    if (!any) return end_token(tokenizer);
    return sampler.sample(scratch);
}

}  // namespace moeserve
