// DRY repetition penalty and its sequence breakers. See sampler_dry.h.
#include "engine/sampler_dry.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "text/tokenizer.h"

namespace moeserve {

namespace {

// llama.cpp's limits: a breaker is cut to this many bytes, a tail to this many tokens
// (the tail bounds the cost of the breaker scan per history position).
constexpr size_t kMaxBreakerBytes = 40;
constexpr size_t kMaxTailTokens = 20;

// ln(FLT_MAX), rounded as llama.cpp writes it: base^exponent stays finite below it.
constexpr float kFloatMaxLog = 88.7228391f;

void add_unique(DrySequenceBreakers& out, int32_t head, std::vector<int32_t> tail) {
    auto [first, last] = out.tails_by_head.equal_range(head);
    for (auto it = first; it != last; ++it) {
        if (it->second == tail) return;
    }
    out.tails_by_head.emplace(head, std::move(tail));
}

// Adds the (head = token, tail) pairs by which `text` (one token's text) starts `breaker`.
void match_token(DrySequenceBreakers& out, int32_t token, const std::string& text, const std::string& breaker,
                 const std::function<std::vector<int32_t>(std::string_view)>& tokenize) {
    if (text.find(breaker) != std::string::npos) {
        add_unique(out, token, {});
        return;
    }
    // Every position where the rest of the text is a proper prefix of the breaker: the
    // breaker would be completed by the tokens of its remainder.
    for (size_t pos = text.find(breaker[0]); pos != std::string::npos; pos = text.find(breaker[0], pos + 1)) {
        const size_t overlap = text.size() - pos;  // < breaker.size(): the whole breaker is not in text
        if (text.compare(pos, overlap, breaker, 0, overlap) != 0) continue;
        std::vector<int32_t> tail = tokenize(std::string_view(breaker).substr(overlap));
        if (tail.size() > kMaxTailTokens) tail.resize(kMaxTailTokens);
        add_unique(out, token, std::move(tail));
    }
}

}  // namespace

bool DrySequenceBreakers::is_single_token_breaker(int32_t token) const {
    auto [first, last] = tails_by_head.equal_range(token);
    for (auto it = first; it != last; ++it) {
        if (it->second.empty()) return true;
    }
    return false;
}

DrySequenceBreakers match_dry_sequence_breakers(std::span<const std::string> breakers, int32_t n_vocab,
                                                const std::function<std::string(int32_t)>& piece,
                                                const std::function<std::vector<int32_t>(std::string_view)>& tokenize) {
    std::vector<std::string> cut;
    for (const std::string& b : breakers) {
        if (!b.empty()) cut.push_back(b.substr(0, kMaxBreakerBytes));
    }
    DrySequenceBreakers out;
    if (cut.empty()) return out;
    for (int32_t token = 0; token < n_vocab; ++token) {
        const std::string text = piece(token);
        for (const std::string& b : cut) match_token(out, token, text, b, tokenize);
    }
    return out;
}

DrySequenceBreakers match_dry_sequence_breakers(std::span<const std::string> breakers, const Tokenizer& tokenizer) {
    return match_dry_sequence_breakers(
        breakers, static_cast<int32_t>(tokenizer.n_tokens()),
        [&](int32_t id) {
            const int32_t one[1] = {id};
            return tokenizer.detokenize(one, /*render_special=*/true);
        },
        [&](std::string_view text) {
            return tokenizer.tokenize(text, /*add_special=*/false, /*parse_special=*/false);
        });
}

DryPenalty::DryPenalty(float multiplier, float base, int32_t allowed_length, size_t window,
                       std::shared_ptr<const DrySequenceBreakers> breakers)
    : multiplier_(multiplier),
      base_(base),
      allowed_length_(allowed_length),
      window_(window),
      breakers_(std::move(breakers)) {
    // The exponent cap, computed in float and truncated as llama.cpp does.
    if (base_ > 1.000001f) max_exponent_ = static_cast<int>(kFloatMaxLog / std::log(base_));
}

void DryPenalty::accept(int32_t token) {
    if (window_ == 0) return;
    if (history_.size() < window_) {
        history_.push_back(token);
        return;
    }
    history_[head_] = token;  // the oldest leaves the window
    head_ = (head_ + 1) % window_;
}

void DryPenalty::reset() {
    history_.clear();
    head_ = 0;
}

int32_t DryPenalty::recent(size_t i) const {
    const size_t n = history_.size();
    return history_[(head_ + n - 1 - i) % n];
}

// How long a repeat may be: the number of tokens after the most recent complete breaker in
// backwards_[0, n), or n if there is none. At the most recent head with a matching tail, the
// longest such tail counts.
size_t DryPenalty::breaker_limit(size_t n) const {
    if (!breakers_ || breakers_->tails_by_head.empty()) return n;
    for (size_t i = 0; i < n; ++i) {
        auto [first, last] = breakers_->tails_by_head.equal_range(backwards_[i]);
        int64_t longest = -1;
        for (auto it = first; it != last; ++it) {
            const std::vector<int32_t>& tail = it->second;
            const auto len = static_cast<int64_t>(tail.size());
            // The tail follows the head in time: backwards_[i - 1], backwards_[i - 2], ...
            if (len <= longest || tail.size() > i) continue;
            bool match = true;
            for (size_t o = 0; o < tail.size() && match; ++o) match = tail[o] == backwards_[i - 1 - o];
            if (match) longest = len;
        }
        if (longest >= 0) return i - static_cast<size_t>(longest);
    }
    return n;
}

std::span<const DryTokenPenalty> DryPenalty::penalties() {
    out_.clear();
    const size_t n = history_.size();  // never more than window_
    const auto allowed = static_cast<int64_t>(allowed_length_);
    if (static_cast<int64_t>(n) <= allowed) return out_;

    backwards_.resize(n);
    for (size_t i = 0; i < n; ++i) backwards_[i] = recent(i);

    const auto limit = static_cast<int64_t>(breaker_limit(n));
    if (limit < allowed) return out_;

    // z_[k]: the length of the longest run backwards_[k, k + z) equal to backwards_[0, z), i.e.
    // how many tokens ending k tokens ago repeat the most recent ones. [box_l, box_r) is the
    // rightmost match found so far; inside it z_ is known from the mirrored position.
    z_.assign(n, 0);
    size_t box_l = 0, box_r = 0;
    for (size_t k = 1; k < n; ++k) {
        size_t z = 0;
        if (k < box_r) z = std::min(box_r - k, static_cast<size_t>(z_[k - box_l]));
        while (k + z < n && backwards_[z] == backwards_[k + z]) ++z;
        z_[k] = static_cast<int32_t>(z);
        if (k + z > box_r) box_l = k, box_r = k + z;
    }

    // A match of length L ending k tokens ago (bounded by the breaker limit) makes the token
    // that came next, backwards_[k - 1], the one that would extend it.
    longest_.clear();
    for (size_t k = 1; k < n; ++k) {
        const int64_t len = std::min(static_cast<int64_t>(z_[k]), limit);
        if (len < allowed) continue;
        auto [it, inserted] = longest_.try_emplace(backwards_[k - 1], len);
        if (!inserted) it->second = std::max(it->second, len);
    }

    for (const auto& [token, len] : longest_) {
        if (breakers_ && breakers_->is_single_token_breaker(token)) continue;  // a breaker never extends a repeat
        int64_t exponent = len - allowed;
        if (max_exponent_ > 0) exponent = std::min<int64_t>(exponent, max_exponent_);
        // llama.cpp computes pow(float, int), which is pow in double, then narrows the product.
        const double penalty =
            static_cast<double>(multiplier_) * std::pow(static_cast<double>(base_), static_cast<double>(exponent));
        out_.push_back(DryTokenPenalty{token, static_cast<float>(penalty)});
    }
    return out_;
}

}  // namespace moeserve
