// libFuzzer target for constrained output (src/grammar): the input is split
// at the first NUL into a grammar and a text. The grammar is parsed as GBNF
// (and, when it is JSON, also converted as a JSON Schema); a grammar that
// parses is matched against the text in pieces of every size from 1 to 7.
// Nothing may crash or hang, errors must be GrammarError, and matching in
// different piece sizes must agree.
//
// Run with `make fuzz`; seeds in tests/fuzz/corpus/grammar_fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "grammar/gbnf.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema_grammar.h"

namespace {

// 0: rejected, 1: a prefix, 2: a complete sentence.
int match(const std::shared_ptr<const moeserve::Grammar>& g, std::string_view text, size_t step) {
    moeserve::GrammarMatcher m(g);
    for (size_t i = 0; i < text.size(); i += step)
        if (!m.accept(text.substr(i, step))) return 0;
    return m.accepting() ? 2 : 1;
}

void check(const std::string& gbnf, std::string_view text) {
    std::shared_ptr<const moeserve::Grammar> g;
    try {
        g = std::make_shared<const moeserve::Grammar>(moeserve::parse_gbnf(gbnf));
    } catch (const moeserve::GrammarError&) {
        return;
    }
    if (g->rules.size() > 2000) return;  // keeps each run short; big grammars are what the limits are for
    const int whole = match(g, text, text.size() + 1);
    for (size_t step = 1; step <= 7; ++step)
        if (match(g, text, step) != whole) std::abort();  // the piece split must not matter
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const size_t nul = in.find('\0');
    const std::string grammar(in.substr(0, nul));
    const std::string_view text = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1, 512);
    check(grammar, text);
    const auto schema = nlohmann::ordered_json::parse(grammar, nullptr, false);
    if (!schema.is_discarded()) {
        try {
            check(moeserve::json_schema_to_gbnf(schema), text);
        } catch (const moeserve::GrammarError&) {
        }
    }
    return 0;
}
