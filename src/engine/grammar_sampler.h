// Sampling under a grammar (the `grammar`, `json_schema` and
// `response_format` request fields), as llama.cpp's common sampler does it:
// the chain samples as usual; when the grammar rejects that token, every
// token the grammar rejects is banned and the chain samples again. End of
// generation is allowed only where the grammar's text is complete; a token
// whose rendered text is empty (a control token) never is.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "grammar/grammar_matcher.h"

namespace moeserve {

class Tokenizer;

// Every token's text as the output renders it, computed once per model.
class TokenPieces {
  public:
    TokenPieces(const Tokenizer& tokenizer, bool render_special);
    const std::string& operator[](int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
    size_t size() const { return pieces_.size(); }

  private:
    std::vector<std::string> pieces_;
};

// What a request constrains its output with.
struct GrammarConstraint {
    std::shared_ptr<const Grammar> grammar;
    std::shared_ptr<const TokenPieces> pieces;
    // A lazy grammar (tool calls under tool_choice "auto", as llama-server's):
    // the output is free until one of these texts appears in it, outside a
    // reasoning block; the grammar then reads the output from that text on and
    // constrains the rest. Empty: the grammar applies from the first token.
    std::vector<std::string> triggers;
    bool starts_in_reasoning = false;  // the prompt opened a <think> block the output continues
    bool may_think = false;            // the output may open a <think> block itself
};

// Where a lazy grammar's triggers may start in `text`: past the reasoning
// block, or npos while that is not yet known (the block is still open, or the
// text may still become "<think>"). The block's "</think>" is searched from
// close_from on (a caller that searched before passes where it stopped).
size_t trigger_floor(const GrammarConstraint& g, const std::string& text, size_t close_from = 0);

// Picks the next token under the matcher's grammar (does not advance it).
// When the grammar allows nothing more, returns an end-of-generation token.
int32_t sample_with_grammar(Sampler& sampler, std::span<const float> logits, const GrammarMatcher& matcher,
                            const TokenPieces& pieces, const Tokenizer& tokenizer, std::vector<float>& scratch);

}  // namespace moeserve
