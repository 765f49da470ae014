// GBNF, llama.cpp's grammar format for constrained generation
// (`grammar` in a completion request):
//
//   root   ::= object                       # rules: name ::= alternatives
//   object ::= "{" ws ( pair ( "," ws pair )* )? "}"
//   pair   ::= string ":" ws value
//   ws     ::= [ \t\n]*                     # char classes, ranges, [^...] negation
//   digit  ::= [0-9]   num ::= digit{1,15}  # repetitions * + ? {m} {m,} {m,n}
//   any    ::= .                            # any one character
//
// Literals and classes take \n \r \t \\ \" \] \- \xHH \uHHHH \UHHHHHHHH
// escapes; '#' starts a comment; names are [A-Za-z0-9-_]+. Characters are
// Unicode code points. Parsing compiles repetitions into helper rules, so a
// Grammar is a plain list of rules whose alternatives are sequences of
// character sets and rule references. Undefined rules, a missing root and
// left recursion are errors that name the rule and the line.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moeserve {

class GrammarError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// One character position: a set of code-point ranges (inclusive), or its
// complement.
struct CharSet {
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    bool negated = false;

    bool contains(uint32_t c) const;
    // Some code point in [lo, hi] is in the set.
    bool intersects(uint32_t lo, uint32_t hi) const;
};

struct GrammarSymbol {
    bool is_rule = false;
    uint32_t rule = 0;  // is_rule: the referenced rule
    CharSet chars;      // otherwise: the character matched
};

using GrammarSequence = std::vector<GrammarSymbol>;

struct GrammarRule {
    std::string name;
    std::vector<GrammarSequence> alternatives;  // an empty sequence matches nothing (epsilon)
};

struct Grammar {
    std::vector<GrammarRule> rules;
    uint32_t root = 0;

    size_t rule_index(std::string_view name) const;  // rules.size() when absent
};

// Parses GBNF text; the start rule is `root`. Throws GrammarError.
Grammar parse_gbnf(std::string_view text);

// Limits that keep a hostile grammar from exhausting memory.
inline constexpr size_t kMaxGrammarBytes = 1 << 20;
inline constexpr size_t kMaxGrammarRules = 20000;
inline constexpr int kMaxRepetition = 10000;  // the largest m or n in {m,n}

}  // namespace moeserve
