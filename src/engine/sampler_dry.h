// DRY ("Don't Repeat Yourself"): llama.cpp's repetition penalty that lowers the
// logit of every token that would extend a sequence already seen in the recent
// history, by multiplier * base^(length - allowed_length).
//
// Sequence breakers are strings (default "\n", ":", "\"", "*") that end a
// repeat: a repeat is never counted across one. Text can produce a breaker over
// several tokens, so each breaker is matched against the vocabulary once, as
// llama.cpp does: a token whose text contains the whole breaker is a breaker on
// its own (empty tail); a token whose text ends with a proper prefix of the
// breaker is a "head", and the tokenization of the rest of the breaker is its
// "tail" (at most 20 tokens; breakers are cut to 40 bytes). The history then
// holds a breaker where a head token is followed by exactly its tail tokens.
//
// DryPenalty keeps the history of one sequence and computes, per step, the
// penalty of each token that would extend the longest repeat it ends:
//   1. the most recent breaker in the window bounds the repeat length to the
//      number of tokens after it (below allowed_length: no penalty at all);
//   2. a Z-function over the history read backwards gives, for each earlier
//      position, how many tokens before it match the most recent tokens;
//   3. a match of length L >= allowed_length at a position makes the token that
//      followed that position a candidate with length L (the longest wins);
//   4. each candidate that is not a single-token breaker loses
//      multiplier * base^(L - allowed_length) (exponent capped so that the
//      power stays a finite float).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moeserve {

class Tokenizer;

// The request's breakers matched against one vocabulary (see the top).
struct DrySequenceBreakers {
    // head token -> the tails that complete a breaker after it (empty: the head alone does).
    std::unordered_multimap<int32_t, std::vector<int32_t>> tails_by_head;

    bool is_single_token_breaker(int32_t token) const;
};

// `piece(id)`: the text of token id (special tokens rendered); `tokenize(text)`: its
// tokens without BOS/EOS and without parsing special tokens. Empty breakers are skipped.
DrySequenceBreakers match_dry_sequence_breakers(std::span<const std::string> breakers, int32_t n_vocab,
                                                const std::function<std::string(int32_t)>& piece,
                                                const std::function<std::vector<int32_t>(std::string_view)>& tokenize);
// The same with a model's tokenizer: one pass over the vocabulary.
DrySequenceBreakers match_dry_sequence_breakers(std::span<const std::string> breakers, const Tokenizer& tokenizer);

struct DryTokenPenalty {
    int32_t token = 0;
    float penalty = 0.0f;  // subtracted from the token's logit
};

class DryPenalty {
  public:
    // window: how many recent tokens are searched (SIZE_MAX: all). breakers may be null
    // (no breakers). The caller decides whether DRY is on (multiplier != 0, base >= 1,
    // window > 0); this class assumes it is.
    DryPenalty(float multiplier, float base, int32_t allowed_length, size_t window,
               std::shared_ptr<const DrySequenceBreakers> breakers);

    void accept(int32_t token);
    void reset();

    // The penalties for the next token, from the history so far; valid until the next call.
    std::span<const DryTokenPenalty> penalties();

  private:
    int32_t recent(size_t i) const;  // the i-th most recent token of the history (0: the last)
    size_t breaker_limit(size_t n) const;

    float multiplier_;
    float base_;
    int32_t allowed_length_;
    size_t window_;
    int max_exponent_ = 0;  // 0: no cap
    std::shared_ptr<const DrySequenceBreakers> breakers_;

    // A ring of the last window_ tokens; grows until full, then head_ is the oldest.
    std::vector<int32_t> history_;
    size_t head_ = 0;

    // Scratch, reused across calls.
    std::vector<int32_t> backwards_;                // backwards_[i] = recent(i)
    std::vector<int32_t> z_;                        // Z-function of backwards_
    std::unordered_map<int32_t, int64_t> longest_;  // next token -> longest repeat it would extend
    std::vector<DryTokenPenalty> out_;
};

}  // namespace moeserve
