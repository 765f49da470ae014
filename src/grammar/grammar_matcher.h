// Incremental matching of generated text against a Grammar, one token at a
// time. The state is the set of parse stacks that are still alive: each stack
// is a path of positions in rule alternatives whose top is a character set
// the next code point must match (an empty stack: the root rule is complete).
// Tokens are UTF-8 pieces; a piece that ends inside a multi-byte character
// keeps its bytes for the next one, as llama.cpp's grammar sampler does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/gbnf.h"

namespace moeserve {

class GrammarMatcher {
  public:
    explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);

    // The text so far is a complete sentence of the grammar (it may end here).
    bool accepting() const;
    // Some non-empty text can still follow.
    bool can_continue() const;
    // `piece` can follow the text so far (a trailing incomplete UTF-8
    // character is checked as far as its first bytes tell).
    bool allows(std::string_view piece) const;
    // Advances past `piece`; returns false (and leaves the state unchanged)
    // when the grammar does not allow it.
    bool accept(std::string_view piece);

  private:
    struct Pos {
        uint32_t rule, alt, idx;
        auto operator<=>(const Pos&) const = default;
    };
    using Stack = std::vector<Pos>;

    // Stacks advanced until their tops are character sets (or they are empty).
    void expand(Stack stack, std::vector<Stack>& out) const;
    std::vector<Stack> step(const std::vector<Stack>& stacks, uint32_t c) const;
    const GrammarSymbol& top(const Stack& s) const;
    // Runs `bytes` (carried partial bytes + a piece): nullopt-like false when
    // rejected; otherwise the stacks and the bytes of an unfinished character.
    bool run(std::string_view bytes, std::vector<Stack>& stacks, std::string& partial) const;

    std::shared_ptr<const Grammar> grammar_;
    std::vector<Stack> stacks_;
    std::string partial_;  // bytes of an unfinished UTF-8 character
};

}  // namespace moeserve
