// The tool-call grammars (chat/tool_call_grammar.h): for each template
// family, a call written the way the family's template writes one is a
// sentence of the grammar, and the answer reader (chat_output.h) reads the
// same call back; calls of unknown tools, with a required argument left out,
// with a value of the wrong type, or a second call where only one is allowed
// are not.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>

#include "chat/chat_output.h"
#include "chat/tool_call_grammar.h"
#include "engine/grammar_sampler.h"
#include "grammar/gbnf.h"
#include "grammar/grammar_matcher.h"

namespace moeserve {
namespace {

using ojson = nlohmann::ordered_json;

const ojson kTools = ojson::parse(R"([
  {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
    "properties":{"city":{"type":"string"},"days":{"type":"integer"},"metric":{"type":"boolean"}},
    "required":["city"]}}},
  {"type":"function","function":{"name":"search","parameters":{"type":"object",
    "properties":{"query":{"type":"string","pattern":"^[a-z]+$"}},"required":["query"]}}}])");

std::shared_ptr<const Grammar> grammar(ToolCallFormat f, bool parallel = true, bool required = false,
                                       ReasoningLead lead = ReasoningLead::None) {
    const ToolCallGrammar g = tool_call_grammar(kTools, {f, parallel, required, lead});
    EXPECT_EQ(g.triggers, std::vector<std::string>{"<tool_call>"});
    return std::make_shared<const Grammar>(parse_gbnf(g.gbnf));
}

// Whether the whole text is a sentence of the grammar.
bool complete(const std::shared_ptr<const Grammar>& g, const std::string& text) {
    GrammarMatcher m(g);
    return m.accept(text) && m.accepting();
}

std::string hermes(const std::string& name, const std::string& args) {
    return "<tool_call>\n{\"name\": \"" + name + "\", \"arguments\": " + args + "}\n</tool_call>";
}
std::string xml(const std::string& name, const std::vector<std::pair<std::string, std::string>>& params) {
    std::string s = "<tool_call>\n<function=" + name + ">\n";
    for (const auto& [k, v] : params) s += "<parameter=" + k + ">\n" + v + "\n</parameter>\n";
    return s + "</function>\n</tool_call>";
}
std::string glm(const std::string& name, const std::vector<std::pair<std::string, std::string>>& params) {
    std::string s = "<tool_call>" + name;
    for (const auto& [k, v] : params) s += "<arg_key>" + k + "</arg_key><arg_value>" + v + "</arg_value>";
    return s + "</tool_call>";
}

ojson read_back(ToolCallFormat f, const std::string& text) {
    ChatSyntax syn;
    syn.tool_format = f;
    syn.parse_tool_calls = true;
    syn.tools = kTools;
    const ChatMessage m = parse_chat_output(text, syn);
    ojson calls = ojson::array();
    for (const auto& c : m.tool_calls) calls.push_back({{"name", c.name}, {"arguments", ojson::parse(c.arguments)}});
    return calls;
}

TEST(ToolCallGrammar, hermes_json_calls) {
    const auto g = grammar(ToolCallFormat::HermesJson);
    const std::string one = hermes("get_weather", R"({"city": "Paris", "days": 3})");
    EXPECT_TRUE(complete(g, one));
    EXPECT_EQ(read_back(ToolCallFormat::HermesJson, one),
              ojson::parse(R"([{"name":"get_weather","arguments":{"city":"Paris","days":3}}])"));
    EXPECT_TRUE(complete(g, hermes("get_weather", R"({"city": "Paris"})")));
    EXPECT_TRUE(complete(g, one + "\n" + hermes("search", R"({"query": "Any Text <b>"})")));  // pattern relaxed
    EXPECT_FALSE(complete(g, hermes("get_time", R"({})")));                                   // not a tool
    EXPECT_FALSE(complete(g, hermes("get_weather", R"({"days": 3})")));                       // city required
    EXPECT_FALSE(complete(g, hermes("get_weather", R"({"city": "Paris", "days": "3"})")));    // days an integer
    EXPECT_FALSE(complete(g, "Sure: " + one));                                                // calls only
    const auto single = grammar(ToolCallFormat::HermesJson, /*parallel=*/false);
    EXPECT_TRUE(complete(single, one));
    EXPECT_FALSE(complete(single, one + "\n" + one));
}

TEST(ToolCallGrammar, xml_function_calls) {
    const auto g = grammar(ToolCallFormat::XmlFunction);
    const std::string one = xml("get_weather", {{"city", "Paris"}, {"days", "3"}, {"metric", "true"}});
    EXPECT_TRUE(complete(g, one));
    EXPECT_EQ(read_back(ToolCallFormat::XmlFunction, one),
              ojson::parse(R"([{"name":"get_weather","arguments":{"city":"Paris","days":3,"metric":true}}])"));
    // String values are verbatim text: several lines, '<' and closing tags of other elements included.
    const std::string code = "if a < b:\n    print('</div>')\n<p>x</p>";
    const std::string with_code = xml("search", {{"query", code}});
    EXPECT_TRUE(complete(g, with_code));
    EXPECT_EQ(read_back(ToolCallFormat::XmlFunction, with_code)[0]["arguments"]["query"], code);
    EXPECT_TRUE(complete(g, one + "\n" + with_code));
    EXPECT_FALSE(complete(g, xml("get_weather", {{"days", "3"}})));                         // city required
    EXPECT_FALSE(complete(g, xml("get_weather", {{"city", "Paris"}, {"days", "three"}})));  // days an integer
    EXPECT_FALSE(complete(g, xml("get_weather", {{"city", "a</parameter>b"}})));            // the value ends early
    EXPECT_FALSE(complete(g, xml("lookup", {{"city", "Paris"}})));
}

// The answer may end with whitespace after its last call (Nemotron's template writes
// "</tool_call>\n"), and a parallel answer still allows the next call after that newline.
TEST(ToolCallGrammar, calls_may_end_with_a_newline) {
    for (ToolCallFormat f : {ToolCallFormat::HermesJson, ToolCallFormat::XmlFunction, ToolCallFormat::GlmArgKeyValue}) {
        const std::string one = f == ToolCallFormat::HermesJson    ? hermes("get_weather", R"({"city": "Paris"})")
                                : f == ToolCallFormat::XmlFunction ? xml("get_weather", {{"city", "Paris"}})
                                                                   : glm("get_weather", {{"city", "Paris"}});
        for (bool parallel : {true, false}) {
            const auto g = grammar(f, parallel);
            SCOPED_TRACE(std::string(tool_call_format_name(f)) + (parallel ? " parallel" : " single"));
            EXPECT_TRUE(complete(g, one + "\n"));
            EXPECT_FALSE(complete(g, one + "\nHello"));
            EXPECT_EQ(complete(g, one + "\n" + one + "\n"), parallel);
        }
    }
}

// Parameter schemas with local names ($defs) keep their own rules: no clash with the
// grammar's rules, and the value is still constrained.
TEST(ToolCallGrammar, parameter_schemas_with_defs_named_like_the_grammars_rules) {
    const ojson tools = ojson::parse(R"([{"type":"function","function":{"name":"f","parameters":{"type":"object",
        "properties":{"n":{"$defs":{"param":{"type":"integer"},"text-0":{"type":"boolean"}},"$ref":"#/$defs/param"},
                      "s":{"type":"string"}},"required":["n","s"]}}}])");
    for (ToolCallFormat f : {ToolCallFormat::XmlFunction, ToolCallFormat::GlmArgKeyValue}) {
        const auto g = std::make_shared<const Grammar>(parse_gbnf(tool_call_grammar(tools, {f}).gbnf));
        const bool x = f == ToolCallFormat::XmlFunction;
        EXPECT_TRUE(complete(g, x ? xml("f", {{"n", "12"}, {"s", "hi"}}) : glm("f", {{"n", "12"}, {"s", "hi"}})));
        EXPECT_FALSE(complete(g, x ? xml("f", {{"n", "x"}, {"s", "hi"}}) : glm("f", {{"n", "x"}, {"s", "hi"}})));
    }
}

TEST(ToolCallGrammar, glm_arg_key_value_calls) {
    const auto g = grammar(ToolCallFormat::GlmArgKeyValue);
    const std::string one = glm("get_weather", {{"city", "Paris"}, {"days", "3"}});
    EXPECT_TRUE(complete(g, one));
    EXPECT_EQ(read_back(ToolCallFormat::GlmArgKeyValue, one),
              ojson::parse(R"([{"name":"get_weather","arguments":{"city":"Paris","days":3}}])"));
    EXPECT_TRUE(complete(g, one + glm("search", {{"query", "a < b"}})));  // back to back, as the template writes
    EXPECT_TRUE(complete(g, one + "\n" + one));
    // GLM-4.5/4.6 put newlines between the elements.
    EXPECT_TRUE(
        complete(g, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"));
    EXPECT_FALSE(complete(g, glm("get_weather", {{"city", "Paris"}, {"days", "soon"}})));
    EXPECT_FALSE(complete(g, glm("get_weather", {})));
}

// tool_choice "required": the answer is calls from the start, after the reasoning where the model has some.
TEST(ToolCallGrammar, required_calls_may_follow_the_reasoning) {
    const std::string call = hermes("get_weather", R"({"city": "Paris"})");
    const auto open = grammar(ToolCallFormat::HermesJson, true, true, ReasoningLead::Open);
    EXPECT_TRUE(complete(open, "The user wants the weather.\n</think>\n\n" + call));
    EXPECT_FALSE(complete(open, call));  // the prompt opened the block: it must close first
    const auto optional = grammar(ToolCallFormat::HermesJson, true, true, ReasoningLead::Optional);
    EXPECT_TRUE(complete(optional, "<think>\nHmm.\n</think>\n\n" + call));
    EXPECT_TRUE(complete(optional, call));
    EXPECT_FALSE(complete(optional, "Hello " + call));
}

// Lazy grammars start at a trigger past the reasoning block (trigger_floor).
TEST(ToolCallGrammar, triggers_count_only_after_the_reasoning) {
    GrammarConstraint c;
    EXPECT_EQ(trigger_floor(c, "Hi <tool_call>"), 0u);
    c.may_think = true;
    EXPECT_EQ(trigger_floor(c, "  <thi"), std::string::npos);  // may still become "<think>"
    EXPECT_EQ(trigger_floor(c, "<think>a <tool_call>"), std::string::npos);
    EXPECT_EQ(trigger_floor(c, "<think>a</think>\n<tool_call>"), 16u);
    EXPECT_EQ(trigger_floor(c, "Hello"), 0u);
    c.may_think = false;
    c.starts_in_reasoning = true;
    EXPECT_EQ(trigger_floor(c, "a <tool_call>"), std::string::npos);
    EXPECT_EQ(trigger_floor(c, "a</think>b"), 9u);
    EXPECT_EQ(trigger_floor(c, "a</think>b</think>c", 3), 18u);  // searched on from where the last search stopped
}

TEST(ToolCallGrammar, nothing_to_constrain_without_tools_or_a_syntax) {
    EXPECT_TRUE(tool_call_grammar(ojson::array(), {ToolCallFormat::HermesJson}).gbnf.empty());
    EXPECT_TRUE(tool_call_grammar(kTools, {ToolCallFormat::None}).gbnf.empty());
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// Random tool lists (names and keys with quotes, backslashes, spaces and non-ASCII;
// parameter schemas of every kind the requests carry, including keywords the
// converter relaxes): the grammar always parses, accepts a call with every
// parameter written as the family's template writes it, and the answer reader
// reads that call back. A grammar that failed to parse would leave the answer
// unconstrained without a word, so this is checked over many shapes.
TEST(ToolCallGrammar, random_tool_lists_give_grammars_that_accept_their_calls) {
    struct Param {
        const char* schema;
        const char* value;  // as JSON
    };
    const Param params[] = {
        {R"({"type":"string"})", R"("hello <b> & \"q\" \\ ü")"},
        {R"({"type":"integer"})", "42"},
        {R"({"type":"number"})", "3.5"},
        {R"({"type":"boolean"})", "true"},
        {R"({"type":"string","enum":["a","b c"]})", R"("b c")"},
        {R"({"type":"array","items":{"type":"integer"}})", "[1, 2]"},
        {R"({"type":"object","properties":{"x":{"type":"integer"}},"required":["x"]})", R"({"x": 1})"},
        {R"({"anyOf":[{"type":"integer"},{"type":"null"}]})", "null"},
        {R"({"type":"string","pattern":"^a+$"})", R"("aaa")"},
        {R"({"type":"integer","minimum":0})", "5"},
        {R"({"$defs":{"p":{"type":"integer"}},"$ref":"#/$defs/p"})", "7"},
    };
    const char* names[] = {"get_weather", "weird \"name\"", "back\\slash", "ünï-çødé", "with space"};
    const char* keys[] = {"city", "days", "x-y", "k\"q", "ключ", "param", "text-0"};
    std::mt19937 rng(5);
    for (int trial = 0; trial < 60; ++trial) {
        ojson tools = ojson::array();
        std::vector<ojson> args;  // the call each tool gets: all its parameters
        const size_t n_tools = 1 + rng() % 3;
        for (size_t t = 0; t < n_tools; ++t) {
            ojson props = ojson::object(), required = ojson::array(), call_args = ojson::object();
            const size_t n_params = rng() % 4;
            for (size_t k = 0; k < n_params; ++k) {
                const std::string key = keys[(t + k + trial) % std::size(keys)];
                if (props.contains(key)) continue;
                const Param& p = params[rng() % std::size(params)];
                props[key] = ojson::parse(p.schema);
                call_args[key] = ojson::parse(p.value);
                if (rng() % 2) required.push_back(key);
            }
            const std::string name = std::string(names[(t + trial) % std::size(names)]) + std::to_string(t);
            tools.push_back({{"type", "function"},
                             {"function",
                              {{"name", name},
                               {"parameters", {{"type", "object"}, {"properties", props}, {"required", required}}}}}});
            args.push_back(call_args);
        }
        const size_t pick = rng() % n_tools;
        const ojson& fn = tools[pick]["function"];
        const std::string name = fn["name"];
        // The parameters in the grammar's order: the required ones, then the others, each in schema order.
        std::vector<std::string> order;
        for (const auto& [key, _] : fn["parameters"]["properties"].items())
            if (std::find(fn["parameters"]["required"].begin(), fn["parameters"]["required"].end(), key) !=
                fn["parameters"]["required"].end())
                order.push_back(key);
        for (const auto& [key, _] : fn["parameters"]["properties"].items())
            if (std::find(order.begin(), order.end(), key) == order.end()) order.push_back(key);
        for (ToolCallFormat f :
             {ToolCallFormat::HermesJson, ToolCallFormat::XmlFunction, ToolCallFormat::GlmArgKeyValue}) {
            SCOPED_TRACE(std::string(tool_call_format_name(f)) + " trial " + std::to_string(trial) + ": " + fn.dump());
            std::shared_ptr<const Grammar> g;
            ASSERT_NO_THROW(g = std::make_shared<const Grammar>(parse_gbnf(tool_call_grammar(tools, {f}).gbnf)));
            std::string text;
            std::vector<std::pair<std::string, std::string>> written;  // the XML families' verbatim values
            for (const auto& key : order) {
                const ojson& v = args[pick][key];
                written.emplace_back(key, v.is_string() ? v.get<std::string>() : v.dump());
            }
            if (f == ToolCallFormat::HermesJson) {
                std::string obj = "{";
                for (const auto& key : order)
                    obj += (obj.size() > 1 ? ", " : "") + ojson(key).dump() + ": " + args[pick][key].dump();
                text = "<tool_call>\n{\"name\": " + ojson(name).dump() + ", \"arguments\": " + obj + "}}\n</tool_call>";
            } else {
                text = f == ToolCallFormat::XmlFunction ? xml(name, written) : glm(name, written);
            }
            EXPECT_TRUE(complete(g, text)) << text;
            ChatSyntax syn;
            syn.tool_format = f;
            syn.parse_tool_calls = true;
            syn.tools = tools;
            const ChatMessage m = parse_chat_output(text, syn);
            ASSERT_EQ(m.tool_calls.size(), 1u) << text;
            EXPECT_EQ(m.tool_calls[0].name, name);
            // Compared as sets of members: the call writes the required ones first.
            EXPECT_EQ(nlohmann::json::parse(m.tool_calls[0].arguments), nlohmann::json::parse(args[pick].dump()))
                << text;
        }
    }
}

}  // namespace
}  // namespace moeserve
