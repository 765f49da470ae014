#include "chat/tool_call_grammar.h"

#include <fmt/format.h>

#include <cctype>
#include <set>

#include "chat/tool_arguments.h"
#include "grammar/gbnf.h"
#include "grammar/json_schema_grammar.h"

namespace moeserve {
namespace {

using ojson = nlohmann::ordered_json;

// The rules of `gbnf` (one "name ::= body" per line, as json_schema_to_gbnf
// writes them) with every rule name prefixed, so that several schemas'
// grammars live in one; "root" becomes `prefix` + "root".
std::string prefixed_rules(const std::string& gbnf, const std::string& prefix) {
    std::set<std::string> names;
    for (size_t at = 0; at < gbnf.size();) {
        const size_t eol = gbnf.find('\n', at);
        const std::string line = gbnf.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
        if (const size_t def = line.find(" ::="); def != std::string::npos) names.insert(line.substr(0, def));
        at = eol == std::string::npos ? gbnf.size() : eol + 1;
    }
    std::string out;
    for (size_t i = 0; i < gbnf.size();) {
        const char c = gbnf[i];
        if (c == '"' || c == '[') {  // literals and character classes pass unchanged
            const char close = c == '"' ? '"' : ']';
            size_t j = i + 1;
            while (j < gbnf.size() && gbnf[j] != close) j += gbnf[j] == '\\' ? 2 : 1;
            out.append(gbnf, i, j + 1 - i);
            i = j + 1;
        } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
            size_t j = i;
            while (j < gbnf.size() &&
                   (std::isalnum(static_cast<unsigned char>(gbnf[j])) || gbnf[j] == '-' || gbnf[j] == '_'))
                ++j;
            const std::string word = gbnf.substr(i, j - i);
            out += names.count(word) ? prefix + word : word;
            i = j;
        } else if (c == '{') {  // a repetition count
            const size_t j = gbnf.find('}', i);
            out.append(gbnf, i, j + 1 - i);
            i = j + 1;
        } else {
            out += c;
            ++i;
        }
    }
    return out;
}

// Rules for the JSON texts `schema` allows, under prefix; the schema is relaxed
// to `fallback` when the converter cannot express it (a pattern, a minimum...).
// Returns the name of the rule to reference.
std::string json_rules(const ojson& schema, const ojson& fallback, const std::string& prefix, std::string& out) {
    std::string gbnf;
    try {
        gbnf = json_schema_to_gbnf(schema);
    } catch (const GrammarError&) {
        gbnf = json_schema_to_gbnf(fallback);
    }
    out += prefixed_rules(gbnf, prefix);
    return prefix + "root";
}

// Text that never contains `stop` (whose only '<' is its first character):
// a small automaton, one rule per matched prefix of `stop`, so that any text
// can be a value except one that would close it early.
std::string text_without(const std::string& stop, const std::string& name, std::string& out) {
    const size_t n = stop.size();
    for (size_t k = 0; k < n; ++k) {
        const std::string self = fmt::format("{}-{}", name, k), restart = name + "-0", after_lt = name + "-1";
        std::string excluded = "<";
        if (k > 0 && stop[k] != '<')
            excluded += stop[k] == ']' || stop[k] == '\\' || stop[k] == '^' ? std::string("\\") + stop[k]
                                                                            : std::string(1, stop[k]);
        std::string alts = fmt::format("[^{}] {} | \"<\" {}", excluded, restart, after_lt);
        if (k > 0 && k + 1 < n) alts += fmt::format(" | {} {}-{}", gbnf_literal(std::string(1, stop[k])), name, k + 1);
        out += fmt::format("{} ::= {} | \"\"\n", self, alts);
    }
    return name + "-0";
}

const ojson& function_of(const ojson& tool) {
    static const ojson empty = ojson::object();
    auto f = tool.find("function");
    return f != tool.end() && f->is_object() ? *f : empty;
}

ojson parameters_of(const ojson& fn) {
    auto p = fn.find("parameters");
    return p != fn.end() && p->is_object() ? *p : ojson{{"type", "object"}};
}

// The parameters in the order a call writes them: the required ones in
// schema order, then the optional ones (each may be left out).
std::vector<std::pair<std::string, bool>> parameter_order(const ojson& params) {
    std::set<std::string> required;
    if (auto r = params.find("required"); r != params.end() && r->is_array())
        for (const auto& x : *r)
            if (x.is_string()) required.insert(x.get<std::string>());
    std::vector<std::pair<std::string, bool>> out;
    const ojson props = params.value("properties", ojson::object());
    for (const auto& [key, _] : props.items())
        if (required.count(key)) out.emplace_back(key, true);
    for (const auto& [key, _] : props.items())
        if (!required.count(key)) out.emplace_back(key, false);
    return out;
}

// One call of tool i in the family's syntax, as rule "call-i".
std::string call_rule(ToolCallFormat format, const ojson& tools, size_t i, std::string& out) {
    const ojson& fn = function_of(tools[i]);
    const std::string name = fn.value("name", "");
    const ojson params = parameters_of(fn);
    const std::string rule = fmt::format("call-{}", i);
    if (format == ToolCallFormat::HermesJson) {
        // {"name": "NAME", "arguments": {...}} (Qwen3's Hermes-style JSON).
        const ojson call = {{"type", "object"},
                            {"properties", {{"name", {{"const", name}}}, {"arguments", params}}},
                            {"required", {"name", "arguments"}}};
        const ojson relaxed = {{"type", "object"},
                               {"properties", {{"name", {{"const", name}}}, {"arguments", {{"type", "object"}}}}},
                               {"required", {"name", "arguments"}}};
        const std::string json = json_rules(call, relaxed, fmt::format("t{}-", i), out);
        out += fmt::format("{} ::= {}\n", rule, json);
        return rule;
    }
    // The XML-like families: each parameter tagged, string values verbatim
    // (one shared text rule per family), the others as JSON (as
    // tool_arguments.h reads them back). The converter's rules live under
    // "t{i}-p{k}-"; the rules named here never start with "t<digit>", so
    // they cannot collide with those. GLM's elements may be separated by a
    // newline, as GLM-4.5/4.6 write them.
    const bool xml = format == ToolCallFormat::XmlFunction;
    const std::string nl = xml ? "" : " " + gbnf_literal("\n") + "?";
    std::string body = xml ? gbnf_literal("<function=" + name + ">\n") : gbnf_literal(name) + nl;
    const ojson props = params.value("properties", ojson::object());
    size_t k = 0;
    for (const auto& [key, required] : parameter_order(params)) {
        const std::string prefix = fmt::format("t{}-p{}-", i, k);
        const std::string param_rule = fmt::format("param-{}-{}", i, k++);
        const std::string value = tool_parameter_is_string(tools, name, key)
                                      ? (xml ? "xml-text-0" : "glm-text-0")
                                      : json_rules(props[key], ojson::object(), prefix, out);
        const std::string param =
            xml ? gbnf_literal("<parameter=" + key + ">\n") + " " + value + " " + gbnf_literal("\n</parameter>\n")
                : gbnf_literal("<arg_key>" + key + "</arg_key>") + nl + " " + gbnf_literal("<arg_value>") + " " +
                      value + " " + gbnf_literal("</arg_value>") + nl;
        out += fmt::format("{} ::= {}\n", param_rule, param);
        body += " " + param_rule + (required ? "" : "?");
    }
    if (xml) body += " " + gbnf_literal("</function>\n");
    out += fmt::format("{} ::= {}\n", rule, body);
    return rule;
}

}  // namespace

ToolCallGrammar tool_call_grammar(const ojson& tools, const ToolCallGrammarOptions& o) {
    ToolCallGrammar g;
    if (o.format == ToolCallFormat::None || !tools.is_array() || tools.empty()) return g;
    std::string rules, any_call;
    for (size_t i = 0; i < tools.size(); ++i)
        any_call += (any_call.empty() ? "" : " | ") + call_rule(o.format, tools, i, rules);
    if (o.format == ToolCallFormat::XmlFunction) text_without("</parameter>", "xml-text", rules);
    if (o.format == ToolCallFormat::GlmArgKeyValue) text_without("</arg_value>", "glm-text", rules);

    // A whole call with its wrapper, then how calls follow each other.
    std::string call;
    std::string between;
    switch (o.format) {
        case ToolCallFormat::HermesJson:
            call = gbnf_literal("<tool_call>\n") + " ( " + any_call + " ) " + gbnf_literal("\n</tool_call>");
            between = gbnf_literal("\n");
            break;
        case ToolCallFormat::XmlFunction:
            call = gbnf_literal("<tool_call>\n") + " ( " + any_call + " ) " + gbnf_literal("</tool_call>");
            between = gbnf_literal("\n");
            break;
        case ToolCallFormat::GlmArgKeyValue:
            call = gbnf_literal("<tool_call>") + " ( " + any_call + " ) " + gbnf_literal("</tool_call>");
            between = gbnf_literal("\n") + "?";
            break;
        case ToolCallFormat::None:
            break;
    }
    // The calls may end with a little whitespace before the end token (Nemotron's
    // template writes "</tool_call>\n"): without it, a model that writes the
    // newline could only go on with another call.
    std::string calls =
        (o.parallel ? fmt::format("tool-call ( {} tool-call )*", between) : std::string("tool-call")) + " ws";
    std::string lead;
    if (o.required && o.lead != ReasoningLead::None) {
        const std::string thought = text_without("</think>", "thought", rules);
        lead = o.lead == ReasoningLead::Open
                   ? fmt::format("{} {} ws ", thought, gbnf_literal("</think>"))
                   : fmt::format("( {} {} {} ws )? ", gbnf_literal("<think>"), thought, gbnf_literal("</think>"));
    }
    rules += "ws ::= [ \\t\\n]{0,4}\n";
    g.gbnf = fmt::format("root ::= {}{}\ntool-call ::= {}\n{}", lead, calls, call, rules);
    g.triggers = {"<tool_call>"};
    return g;
}

}  // namespace moeserve
