#include "grammar/gbnf.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>

namespace moeserve {

bool CharSet::contains(uint32_t c) const {
    bool in = false;
    for (const auto& [lo, hi] : ranges)
        if (c >= lo && c <= hi) {
            in = true;
            break;
        }
    return in != negated;
}

bool CharSet::intersects(uint32_t lo, uint32_t hi) const {
    if (!negated) {
        for (const auto& [a, b] : ranges)
            if (a <= hi && b >= lo) return true;
        return false;
    }
    // The complement meets [lo, hi] unless the ranges cover all of it.
    uint32_t next = lo;
    std::vector<std::pair<uint32_t, uint32_t>> sorted = ranges;
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [a, b] : sorted) {
        if (a > next) return true;
        if (b >= next) {
            if (b >= hi) return false;
            next = b + 1;
        }
    }
    return next <= hi;
}

size_t Grammar::rule_index(std::string_view name) const {
    for (size_t i = 0; i < rules.size(); ++i)
        if (rules[i].name == name) return i;
    return rules.size();
}

namespace {

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

class Parser {
  public:
    explicit Parser(std::string_view text) : s_(text) {}

    Grammar parse() {
        skip_space(true);
        while (i_ < s_.size()) {
            parse_rule();
            skip_space(true);
        }
        for (size_t r = 0; r < g_.rules.size(); ++r)
            if (!defined_[r])
                throw error_at(first_use_[r], fmt::format("rule '{}' is used but never defined", g_.rules[r].name));
        const size_t root = g_.rule_index("root");
        if (root == g_.rules.size()) throw GrammarError("grammar has no 'root' rule");
        g_.root = static_cast<uint32_t>(root);
        check_left_recursion();
        return std::move(g_);
    }

  private:
    GrammarError error_at(size_t pos, const std::string& what) const {
        size_t line = 1, col = 1;
        for (size_t k = 0; k < pos && k < s_.size(); ++k) {
            if (s_[k] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        return GrammarError(fmt::format("grammar line {}, column {}: {}", line, col, what));
    }
    GrammarError error(const std::string& what) const { return error_at(i_, what); }

    void skip_space(bool newline_ok) {
        while (i_ < s_.size()) {
            const char c = s_[i_];
            if (c == ' ' || c == '\t' || c == '\r' || (newline_ok && c == '\n')) {
                ++i_;
            } else if (c == '#') {
                while (i_ < s_.size() && s_[i_] != '\n') ++i_;
            } else {
                break;
            }
        }
    }

    std::string parse_name() {
        const size_t start = i_;
        while (i_ < s_.size() && is_name_char(s_[i_])) ++i_;
        if (i_ == start) throw error("expected a rule name");
        return std::string(s_.substr(start, i_ - start));
    }

    uint32_t rule_id(const std::string& name, size_t pos) {
        size_t r = g_.rule_index(name);
        if (r == g_.rules.size()) {
            if (g_.rules.size() >= kMaxGrammarRules) throw error("too many rules");
            g_.rules.push_back({name, {}});
            defined_.push_back(false);
            first_use_.push_back(pos);
        }
        return static_cast<uint32_t>(r);
    }

    uint32_t new_helper_rule(const std::string& base) {
        std::string name;
        do name = fmt::format("{}-{}", base, ++helper_count_);
        while (g_.rule_index(name) != g_.rules.size());
        const uint32_t r = rule_id(name, i_);
        defined_[r] = true;
        return r;
    }

    void parse_rule() {
        const size_t start = i_;
        const std::string name = parse_name();
        skip_space(false);
        if (s_.substr(i_, 3) != "::=") throw error(fmt::format("expected '::=' after rule name '{}'", name));
        i_ += 3;
        skip_space(true);
        const uint32_t r = rule_id(name, start);
        if (defined_[r]) throw error_at(start, fmt::format("rule '{}' is defined twice", name));
        defined_[r] = true;
        current_rule_ = name;
        auto alts = parse_alternatives(false);
        g_.rules[r].alternatives = std::move(alts);
        skip_space(false);
        if (i_ < s_.size() && s_[i_] != '\n') throw error(fmt::format("unexpected '{}'", s_[i_]));
    }

    std::vector<GrammarSequence> parse_alternatives(bool nested) {
        std::vector<GrammarSequence> alts;
        alts.push_back(parse_sequence(nested));
        while (i_ < s_.size() && s_[i_] == '|') {
            ++i_;
            skip_space(true);
            alts.push_back(parse_sequence(nested));
        }
        return alts;
    }

    uint32_t parse_utf8_char() {
        const unsigned char c = static_cast<unsigned char>(s_[i_]);
        const int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i_ + len > s_.size()) throw error("invalid UTF-8");
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < len; ++k) {
            const unsigned char cc = static_cast<unsigned char>(s_[i_ + k]);
            if ((cc & 0xC0) != 0x80) throw error("invalid UTF-8");
            cp = (cp << 6) | (cc & 0x3F);
        }
        i_ += len;
        return cp;
    }

    uint32_t parse_hex(int digits) {
        uint32_t v = 0;
        for (int k = 0; k < digits; ++k) {
            if (i_ >= s_.size()) throw error("unfinished escape");
            const char c = s_[i_++];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0) throw error("bad hex digit in escape");
            v = v * 16 + static_cast<uint32_t>(d);
        }
        return v;
    }

    // One character of a literal or class, escapes resolved.
    uint32_t parse_char() {
        if (i_ >= s_.size()) throw error("unexpected end of grammar");
        if (s_[i_] != '\\') return parse_utf8_char();
        ++i_;
        if (i_ >= s_.size()) throw error("unfinished escape");
        const char c = s_[i_++];
        switch (c) {
            case 'n':
                return '\n';
            case 'r':
                return '\r';
            case 't':
                return '\t';
            case '\\':
            case '"':
            case '[':
            case ']':
            case '-':
            case '\'':
            case '/':
                return static_cast<uint32_t>(c);
            case 'x':
                return parse_hex(2);
            case 'u':
                return parse_hex(4);
            case 'U':
                return parse_hex(8);
            default:
                throw error_at(i_ - 2, fmt::format("unknown escape '\\{}'", c));
        }
    }

    static GrammarSymbol char_symbol(CharSet set) {
        GrammarSymbol s;
        s.chars = std::move(set);
        return s;
    }
    static GrammarSymbol rule_symbol(uint32_t r) {
        GrammarSymbol s;
        s.is_rule = true;
        s.rule = r;
        return s;
    }

    GrammarSequence parse_sequence(bool nested) {
        GrammarSequence seq;
        for (;;) {
            skip_space(nested);
            if (i_ >= s_.size()) break;
            const char c = s_[i_];
            if (c == '|' || c == ')' || c == '\n') break;
            const size_t element_start = seq.size();
            if (c == '"') {
                ++i_;
                while (i_ < s_.size() && s_[i_] != '"') {
                    if (s_[i_] == '\n') throw error("newline inside a string literal");
                    const uint32_t cp = parse_char();
                    seq.push_back(char_symbol({{{cp, cp}}, false}));
                }
                if (i_ >= s_.size()) throw error("unterminated string literal");
                ++i_;
            } else if (c == '[') {
                ++i_;
                CharSet set;
                if (i_ < s_.size() && s_[i_] == '^') {
                    set.negated = true;
                    ++i_;
                }
                while (i_ < s_.size() && s_[i_] != ']') {
                    const uint32_t lo = parse_char();
                    uint32_t hi = lo;
                    if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
                        ++i_;
                        hi = parse_char();
                        if (hi < lo) throw error("character range out of order");
                    }
                    set.ranges.emplace_back(lo, hi);
                }
                if (i_ >= s_.size()) throw error("unterminated character class");
                ++i_;
                seq.push_back(char_symbol(std::move(set)));
            } else if (c == '.') {
                ++i_;
                seq.push_back(char_symbol({{}, true}));
            } else if (c == '(') {
                ++i_;
                skip_space(true);
                auto alts = parse_alternatives(true);
                skip_space(true);
                if (i_ >= s_.size() || s_[i_] != ')') throw error("expected ')'");
                ++i_;
                const uint32_t r = new_helper_rule(current_rule_);
                g_.rules[r].alternatives = std::move(alts);
                seq.push_back(rule_symbol(r));
            } else if (is_name_char(c)) {
                const size_t pos = i_;
                const std::string name = parse_name();
                seq.push_back(rule_symbol(rule_id(name, pos)));
            } else {
                throw error(fmt::format("unexpected '{}'", c));
            }
            parse_repetition(seq, element_start);
        }
        return seq;
    }

    // Applies a following *, +, ?, {m}, {m,} or {m,n} to seq[element_start..].
    void parse_repetition(GrammarSequence& seq, size_t element_start) {
        if (i_ >= s_.size()) return;
        const char c = s_[i_];
        int min = 0, max = -1;  // max -1: unbounded
        if (c == '*') {
            ++i_;
        } else if (c == '+') {
            ++i_;
            min = 1;
        } else if (c == '?') {
            ++i_;
            max = 1;
        } else if (c == '{') {
            ++i_;
            min = parse_count();
            max = min;
            if (i_ < s_.size() && s_[i_] == ',') {
                ++i_;
                max = i_ < s_.size() && s_[i_] == '}' ? -1 : parse_count();
            }
            if (i_ >= s_.size() || s_[i_] != '}') throw error("expected '}'");
            ++i_;
            if (max >= 0 && max < min) throw error("repetition {m,n} with n < m");
        } else {
            return;
        }
        // The element as one symbol.
        GrammarSymbol element;
        if (seq.size() - element_start == 1) {
            element = seq.back();
        } else {
            const uint32_t r = new_helper_rule(current_rule_);
            g_.rules[r].alternatives.push_back(GrammarSequence(seq.begin() + element_start, seq.end()));
            element = rule_symbol(r);
        }
        seq.resize(element_start);
        for (int k = 0; k < min; ++k) seq.push_back(element);
        if (max < 0) {  // R ::= element R | ε
            const uint32_t r = new_helper_rule(current_rule_);
            g_.rules[r].alternatives = {{element, rule_symbol(r)}, {}};
            seq.push_back(rule_symbol(r));
        } else if (max > min) {  // nested optionals: O1 ::= element | ε, Ok ::= element O(k-1) | ε
            uint32_t inner = 0;
            for (int k = 1; k <= max - min; ++k) {
                const uint32_t r = new_helper_rule(current_rule_);
                if (k == 1)
                    g_.rules[r].alternatives = {{element}, {}};
                else
                    g_.rules[r].alternatives = {{element, rule_symbol(inner)}, {}};
                inner = r;
            }
            seq.push_back(rule_symbol(inner));
        }
    }

    int parse_count() {
        const size_t start = i_;
        long v = 0;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
            v = v * 10 + (s_[i_++] - '0');
            if (v > kMaxRepetition) throw error(fmt::format("repetition count over {}", kMaxRepetition));
        }
        if (i_ == start) throw error("expected a number in {}");
        return static_cast<int>(v);
    }

    // A rule that can reach itself without consuming a character would make
    // matching loop forever.
    void check_left_recursion() {
        const size_t n = g_.rules.size();
        std::vector<bool> nullable(n, false);
        for (bool changed = true; changed;) {
            changed = false;
            for (size_t r = 0; r < n; ++r) {
                if (nullable[r]) continue;
                for (const auto& seq : g_.rules[r].alternatives) {
                    bool all = true;
                    for (const auto& sym : seq)
                        if (!sym.is_rule || !nullable[sym.rule]) {
                            all = false;
                            break;
                        }
                    if (all) {
                        nullable[r] = changed = true;
                        break;
                    }
                }
            }
        }
        // first[r]: rules reachable from r before any character.
        std::vector<std::vector<uint32_t>> first(n);
        for (size_t r = 0; r < n; ++r)
            for (const auto& seq : g_.rules[r].alternatives)
                for (const auto& sym : seq) {
                    if (!sym.is_rule) break;
                    first[r].push_back(sym.rule);
                    if (!nullable[sym.rule]) break;
                }
        std::vector<int> state(n, 0);  // 0 new, 1 on the path, 2 done
        std::function<void(uint32_t)> visit = [&](uint32_t r) {
            state[r] = 1;
            for (uint32_t t : first[r]) {
                if (state[t] == 1)
                    throw GrammarError(fmt::format("grammar rule '{}' is left-recursive", g_.rules[t].name));
                if (state[t] == 0) visit(t);
            }
            state[r] = 2;
        };
        for (size_t r = 0; r < n; ++r)
            if (state[r] == 0) visit(static_cast<uint32_t>(r));
    }

    std::string_view s_;
    size_t i_ = 0;
    Grammar g_;
    std::vector<bool> defined_;
    std::vector<size_t> first_use_;
    std::string current_rule_;
    int helper_count_ = 0;
};

}  // namespace

Grammar parse_gbnf(std::string_view text) {
    if (text.size() > kMaxGrammarBytes)
        throw GrammarError(fmt::format("grammar is {} bytes; the limit is {}", text.size(), kMaxGrammarBytes));
    return Parser(text).parse();
}

}  // namespace moeserve
