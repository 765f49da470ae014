// Model output -> reasoning_content, content and tool_calls for each family,
// from the examples in ../shared/spec/chat-templates.md (section 4); and the
// streaming parser: fed the same output split at every byte, its deltas must
// add up to exactly the non-streamed parse.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "chat/chat.h"
#include "fixtures.h"
#include "run_command.h"

namespace moeserve {
namespace {

using json = nlohmann::ordered_json;

json tool(const std::string& name, json properties) {
    return {{"type", "function"},
            {"function",
             {{"name", name}, {"description", ""}, {"parameters", {{"type", "object"}, {"properties", properties}}}}}};
}

json test_tools() {
    return json::array({
        tool("special_function", {{"arg1", {{"type", "integer"}}}}),
        tool("python", {{"code", {{"type", "string"}}}}),
        tool("get_weather", {{"city", {{"type", "string"}}}, {"unit", {{"enum", {"celsius", "fahrenheit"}}}}}),
        tool("todo", {{"items", {{"type", "array"}}},
                      {"note", {{"type", {"string", "null"}}}},
                      {"count", {{"type", {"integer", "null"}}}},
                      {"flag", {{"type", "boolean"}}}}),
        tool("read_file_diff_md", json::object()),
        tool("a", json::object()),
        tool("b", {{"x", {{"type", "integer"}}}}),
    });
}

ChatSyntax syntax(ToolCallFormat format, std::string forced = "", bool may_think = false,
                  ReasoningFormat rf = ReasoningFormat::Auto) {
    ChatSyntax s;
    s.tool_format = format;
    s.forced_reasoning_prefix = std::move(forced);
    s.model_may_think = may_think;
    s.reasoning_format = rf;
    s.parse_tool_calls = format != ToolCallFormat::None;
    s.tools = test_tools();
    return s;
}

ToolCallIdGenerator counting_ids() {
    auto n = std::make_shared<int>(0);
    return [n] { return "call_" + std::to_string((*n)++); };
}

struct Expected {
    std::string reasoning;
    std::string content;
    std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
};

void expect_message(const ChatMessage& m, const Expected& e) {
    EXPECT_EQ(m.reasoning_content, e.reasoning);
    EXPECT_EQ(m.content, e.content);
    ASSERT_EQ(m.tool_calls.size(), e.calls.size());
    for (size_t i = 0; i < e.calls.size(); ++i) {
        EXPECT_EQ(m.tool_calls[i].name, e.calls[i].first);
        EXPECT_EQ(m.tool_calls[i].arguments, e.calls[i].second);
        EXPECT_TRUE(json::accept(m.tool_calls[i].arguments)) << m.tool_calls[i].arguments;
    }
}

// Applies streamed deltas the way a client accumulates them.
ChatMessage accumulate(const std::vector<ChatDelta>& deltas) {
    ChatMessage m;
    for (const auto& d : deltas) {
        switch (d.kind) {
            case ChatDelta::Kind::Reasoning:
                m.reasoning_content += d.text;
                break;
            case ChatDelta::Kind::Content:
                m.content += d.text;
                break;
            case ChatDelta::Kind::ToolCallStart:
                EXPECT_EQ(d.tool_index, m.tool_calls.size());
                m.tool_calls.push_back({d.tool_id, d.tool_name, d.text});
                break;
            case ChatDelta::Kind::ToolCallArguments:
                EXPECT_LT(d.tool_index, m.tool_calls.size());
                if (d.tool_index < m.tool_calls.size()) m.tool_calls[d.tool_index].arguments += d.text;
                break;
        }
    }
    return m;
}

bool is_utf8_boundary(const std::string& s, size_t k) {
    return k == 0 || k == s.size() || (static_cast<unsigned char>(s[k]) & 0xC0) != 0x80;
}

// Streams `text` in chunks split at `cuts` and checks the result against the
// non-streamed parse.
void expect_stream_matches(const std::string& text, const ChatSyntax& syn, const std::vector<size_t>& cuts) {
    ChatMessage whole = parse_chat_output(text, syn, counting_ids());
    ChatStreamParser stream(syn, counting_ids());
    std::vector<ChatDelta> deltas;
    size_t prev = 0;
    for (size_t cut : cuts) {
        for (auto& d : stream.push(text.substr(prev, cut - prev))) deltas.push_back(std::move(d));
        prev = cut;
    }
    for (auto& d : stream.push(text.substr(prev))) deltas.push_back(std::move(d));
    for (auto& d : stream.finish()) deltas.push_back(std::move(d));
    ChatMessage got = accumulate(deltas);
    EXPECT_EQ(got.to_json().dump(), whole.to_json().dump());
    EXPECT_EQ(stream.message().to_json().dump(), whole.to_json().dump());
    for (const auto& d : deltas) EXPECT_FALSE(d.kind != ChatDelta::Kind::ToolCallStart && d.text.empty());
}

void expect_stream_matches_at_every_split(const std::string& text, const ChatSyntax& syn) {
    for (size_t k = 0; k <= text.size(); ++k) {
        if (!is_utf8_boundary(text, k)) continue;
        SCOPED_TRACE("split at byte " + std::to_string(k));
        expect_stream_matches(text, syn, {k});
    }
    std::vector<size_t> every_byte;
    for (size_t k = 1; k < text.size(); ++k) every_byte.push_back(k);
    SCOPED_TRACE("one byte at a time");
    expect_stream_matches(text, syn, every_byte);
}

struct ParseCase {
    const char* label;
    ChatSyntax syntax;
    std::string output;
    Expected expected;
};

std::vector<ParseCase> spec_cases() {
    const auto qwen3 = syntax(ToolCallFormat::HermesJson, "", true);
    const auto qwen3_off = syntax(ToolCallFormat::HermesJson);
    const auto coder = syntax(ToolCallFormat::XmlFunction);
    const auto glm_think = syntax(ToolCallFormat::GlmArgKeyValue, "<think>");
    const auto glm = syntax(ToolCallFormat::GlmArgKeyValue);
    const auto nemo_think = syntax(ToolCallFormat::XmlFunction, "<think>\n");
    const auto nemo = syntax(ToolCallFormat::XmlFunction);
    const std::string special_xml =
        "<tool_call>\n<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n</function>\n</tool_call>";
    return {
        {"qwen3 reasoning and call",
         qwen3,
         "<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
         "{\"city\": \"Paris\"}}\n</tool_call>",
         {"The user wants the weather.", "", {{"get_weather", "{\"city\": \"Paris\"}"}}}},
        {"qwen3 reasoning and content", qwen3, "<think>\nOk.\n</think>\n\nHello!", {"Ok.", "Hello!", {}}},
        {"qwen3 thinking off", qwen3_off, "Hello!", {"", "Hello!", {}}},
        {"qwen3 two calls",
         qwen3,
         "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", "
         "\"arguments\": {\"x\": 1}}\n</tool_call>",
         {"", "", {{"a", "{}"}, {"b", "{\"x\": 1}"}}}},
        {"qwen3 content then call, arguments key order",
         qwen3,
         "Let me check.\n\n<tool_call>\n{\"arguments\": {\"city\": \"Paris\"}, \"name\": "
         "\"get_weather\"}\n</tool_call>",
         {"", "Let me check.", {{"get_weather", "{\"city\": \"Paris\"}"}}}},
        {"qwen3 arguments as a JSON string",
         qwen3,
         "<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 2}\"}\n</tool_call>",
         {"", "", {{"b", "{\"x\": 2}"}}}},
        {"coder content only", coder, "Hello, world!\nWhat's up?", {"", "Hello, world!\nWhat's up?", {}}},
        {"coder typed integer", coder, special_xml, {"", "", {{"special_function", "{\"arg1\": 1}"}}}},
        {"coder multi-line code",
         coder,
         "<tool_call>\n<function=python>\n<parameter=code>\ndef hello():\n    print(\"Hello, world!\")\n\nhello()\n"
         "</parameter>\n</function>\n</tool_call>",
         {"", "", {{"python", "{\"code\": \"def hello():\\n    print(\\\"Hello, world!\\\")\\n\\nhello()\"}"}}}},
        {"coder html kept verbatim",
         coder,
         "<tool_call>\n<function=python>\n<parameter=code>\n<html>\n "
         "<head></head>\n</html>\n</parameter>\n</function>\n"
         "</tool_call>",
         {"", "", {{"python", "{\"code\": \"<html>\\n <head></head>\\n</html>\"}"}}}},
        {"coder array, nullable and Python booleans",
         coder,
         "I'll add it.\n<tool_call>\n<function=todo>\n<parameter=items>\n[{\"item\": \"Check stuff\", \"selected\": "
         "false}]\n</parameter>\n<parameter=note>\nhello world\n</parameter>\n<parameter=count>\n42\n</parameter>\n"
         "<parameter=flag>\nTrue\n</parameter>\n</function>\n</tool_call>",
         {"",
          "I'll add it.",
          {{"todo",
            "{\"items\": [{\"item\": \"Check stuff\", \"selected\": false}], \"note\": \"hello world\", "
            "\"count\": 42, \"flag\": true}"}}}},
        {"coder enum without type is a string, unknown parameter too",
         coder,
         "<tool_call>\n<function=get_weather>\n<parameter=unit>\ncelsius\n</parameter>\n<parameter=extra>\n12\n"
         "</parameter>\n</function>\n</tool_call>",
         {"", "", {{"get_weather", "{\"unit\": \"celsius\", \"extra\": \"12\"}"}}}},
        {"coder parallel calls",
         coder,
         special_xml + "\n" + special_xml,
         {"", "", {{"special_function", "{\"arg1\": 1}"}, {"special_function", "{\"arg1\": 1}"}}}},
        {"glm content", glm, "Hello, world!\nWhat's up?", {"", "Hello, world!\nWhat's up?", {}}},
        {"glm reasoning",
         glm_think,
         "I'm\nthinking</think>Hello, world!\nWhat's up?",
         {"I'm\nthinking", "Hello, world!\nWhat's up?", {}}},
        {"glm call",
         glm,
         "<tool_call>special_function<arg_key>arg1</arg_key><arg_value>1</arg_value></tool_call>",
         {"", "", {{"special_function", "{\"arg1\": 1}"}}}},
        {"glm reasoning and call",
         glm_think,
         "I'm\nthinking</think><tool_call>special_function<arg_key>arg1</arg_key><arg_value>1</arg_value></tool_call>",
         {"I'm\nthinking", "", {{"special_function", "{\"arg1\": 1}"}}}},
        {"glm parallel calls",
         glm,
         "<tool_call>special_function<arg_key>arg1</arg_key><arg_value>1</arg_value></tool_call><tool_call>"
         "get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
         {"", "", {{"special_function", "{\"arg1\": 1}"}, {"get_weather", "{\"city\": \"Paris\"}"}}}},
        {"glm call without arguments",
         glm_think,
         "Let me read the diff content.</think><tool_call>read_file_diff_md</tool_call>",
         {"Let me read the diff content.", "", {{"read_file_diff_md", "{}"}}}},
        {"glm newlines between tags",
         glm,
         "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>New York</arg_value>\n</tool_call>",
         {"", "", {{"get_weather", "{\"city\": \"New York\"}"}}}},
        {"nemotron content", nemo, "Hello, world!\nWhat's up?", {"", "Hello, world!\nWhat's up?", {}}},
        {"nemotron reasoning",
         nemo_think,
         "I'm\nthinking\n</think>\nHello, world!\nWhat's up?",
         {"I'm\nthinking", "Hello, world!\nWhat's up?", {}}},
        {"nemotron call", nemo, special_xml + "\n", {"", "", {{"special_function", "{\"arg1\": 1}"}}}},
        {"nemotron reasoning and call",
         nemo_think,
         "I'm\nthinking\n</think>\n" + special_xml + "\n",
         {"I'm\nthinking", "", {{"special_function", "{\"arg1\": 1}"}}}},
        {"nemotron fake call inside reasoning",
         nemo_think,
         "Let's call a tool: " + special_xml + "\n</think>\n" +
             "<tool_call>\n<function=python>\n<parameter=code>\nprint(1)\n</parameter>\n</function>\n</tool_call>\n",
         {"Let's call a tool: " + special_xml, "", {{"python", "{\"code\": \"print(1)\"}"}}}},
        {"nemotron JSON content",
         nemo_think,
         "I need to output the invoice details in JSON\n</think>\n{\"amount\": 123.45, \"date\": \"2025-12-03\"}",
         {"I need to output the invoice details in JSON", "{\"amount\": 123.45, \"date\": \"2025-12-03\"}", {}}},
        {"nemotron reasoning_format none",
         syntax(ToolCallFormat::XmlFunction, "<think>\n", false, ReasoningFormat::None),
         "I'm\nthinking\n</think>\nHello, world!\nWhat's up?",
         {"", "<think>\nI'm\nthinking\n</think>\nHello, world!\nWhat's up?", {}}},
        {"unicode content and arguments",
         coder,
         "Voil\xC3\xA0 "
         "\xE4\xB8\x96\xE7\x95\x8C\n<tool_call>\n<function=python>\n<parameter=code>\nprint('\xE4\xB8\x96')\n"
         "</parameter>\n</function>\n</tool_call>",
         {"", "Voil\xC3\xA0 \xE4\xB8\x96\xE7\x95\x8C", {{"python", "{\"code\": \"print('\xE4\xB8\x96')\"}"}}}},
    };
}

TEST(ChatOutputParse, SpecExamplesForEveryFamily) {
    for (const auto& c : spec_cases()) {
        SCOPED_TRACE(c.label);
        expect_message(parse_chat_output(c.output, c.syntax), c.expected);
    }
}

TEST(ChatOutputStream, DeltasAddUpToTheWholeParseAtEverySplit) {
    for (const auto& c : spec_cases()) {
        SCOPED_TRACE(c.label);
        expect_stream_matches_at_every_split(c.output, c.syntax);
    }
}

TEST(ChatOutputStream, HoldsBackMarkersAndTrailingWhitespace) {
    ChatStreamParser s(syntax(ToolCallFormat::XmlFunction), counting_ids());
    auto text_of = [](const std::vector<ChatDelta>& ds) {
        std::string t;
        for (const auto& d : ds) t += d.to_json().dump();
        return t;
    };
    EXPECT_EQ(text_of(s.push("Let me check.")), R"({"content":"Let me check."})");
    EXPECT_EQ(text_of(s.push("\n\n<tool")), "");
    EXPECT_EQ(
        text_of(s.push("_call>\n<function=python>")),
        R"({"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"python","arguments":""}}]})"
        R"({"tool_calls":[{"index":0,"function":{"arguments":"{"}}]})");
    EXPECT_EQ(text_of(s.push("\n<parameter=code>\nx = 1\n</para")),
              R"({"tool_calls":[{"index":0,"function":{"arguments":"\"code\": \"x = 1"}}]})");
    EXPECT_EQ(text_of(s.push("meter>\n</function>\n</tool_call>")),
              R"({"tool_calls":[{"index":0,"function":{"arguments":"\"}"}}]})");
    EXPECT_EQ(text_of(s.finish()), "");

    ChatStreamParser r(syntax(ToolCallFormat::None, "<think>\n"), counting_ids());
    EXPECT_EQ(text_of(r.push("I think\n</thi")), R"({"reasoning_content":"I think"})");
    EXPECT_EQ(text_of(r.push("nk>\nAnswer")), R"({"content":"Answer"})");
}

TEST(ChatOutputTruncated, StopInsideReasoningIsAllReasoning) {
    auto m = parse_chat_output("I'm thinking about </thi", syntax(ToolCallFormat::XmlFunction, "<think>\n"));
    EXPECT_EQ(m.reasoning_content, "I'm thinking about </thi");
    EXPECT_EQ(m.content, "");
    expect_stream_matches_at_every_split("I'm thinking about </thi", syntax(ToolCallFormat::XmlFunction, "<think>\n"));
}

TEST(ChatOutputTruncated, StopInsideToolCallKeepsNameAndArgumentsSoFar) {
    const std::string out = "<tool_call>\n<function=python>\n<parameter=code>\nprint(1)\n</param";
    auto m = parse_chat_output(out, syntax(ToolCallFormat::XmlFunction));
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_EQ(m.tool_calls[0].name, "python");
    EXPECT_EQ(m.tool_calls[0].arguments, "{\"code\": \"print(1)\\n</param");
    EXPECT_TRUE(m.tool_call_incomplete);
    expect_stream_matches_at_every_split(out, syntax(ToolCallFormat::XmlFunction));

    auto before_name = parse_chat_output("Sure.\n<tool_call>\n<function=pyt", syntax(ToolCallFormat::XmlFunction));
    EXPECT_TRUE(before_name.tool_calls.empty());
    EXPECT_EQ(before_name.content, "Sure.\n<tool_call>\n<function=pyt");
}

TEST(ChatOutputMalformed, TextThatIsNotACallBecomesContent) {
    const auto coder = syntax(ToolCallFormat::XmlFunction);
    const std::string bad = "Hmm.\n<tool_call>\nnot a call</tool_call>";
    EXPECT_EQ(parse_chat_output(bad, coder).content, bad);
    expect_stream_matches_at_every_split(bad, coder);

    const std::string after =
        "<tool_call>\n<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n"
        "</function>\n</tool_call>\nDone, waiting for the result.";
    auto m = parse_chat_output(after, coder);
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_EQ(m.content, "Done, waiting for the result.");
    expect_stream_matches_at_every_split(after, coder);

    const std::string bad_json = "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": 1}} trailing\n</tool_call>";
    expect_stream_matches_at_every_split(bad_json, syntax(ToolCallFormat::HermesJson));
}

// Qwen3's JSON arguments stream as they are written (a client sees them grow, as
// with the XML families), and the deltas still add up to the whole parse: for a
// call cut off mid-way, and for one whose JSON breaks (the arguments stop where
// they stop being JSON, closed where one brace closes them).
TEST(ChatOutputStream, JsonArgumentsStreamAsWritten) {
    const auto hermes = syntax(ToolCallFormat::HermesJson);
    const std::string out =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, "
        "2]}}\n</tool_call>";
    ChatStreamParser stream(hermes, counting_ids());
    int argument_deltas = 0;
    for (char ch : out)
        for (const auto& d : stream.push(std::string(1, ch)))
            argument_deltas += d.kind == ChatDelta::Kind::ToolCallArguments;
    stream.finish();
    EXPECT_GT(argument_deltas, 10);
    ASSERT_EQ(stream.message().tool_calls.size(), 1u);
    EXPECT_EQ(stream.message().tool_calls[0].arguments, "{\"city\": \"Paris\", \"days\": [1, 2]}");
    expect_stream_matches_at_every_split(out, hermes);

    const std::string cut = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, 2";
    EXPECT_EQ(parse_chat_output(cut, hermes).tool_calls.at(0).arguments, "{\"a\": [1, 2");
    expect_stream_matches_at_every_split(cut, hermes);

    const std::string broken = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1 \"b\": 2}}\n</tool_call>";
    const ChatMessage m = parse_chat_output(broken, hermes);
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_EQ(m.tool_calls[0].arguments, "{\"a\": 1 }");
    expect_stream_matches_at_every_split(broken, hermes);
}

// Every prefix of valid JSON arguments streams at once (nothing is held back as
// possibly invalid), whatever the JSON holds; invalid arguments stop where they
// stop being JSON, and the stream still adds up to the whole parse.
TEST(ChatOutputStream, JsonArgumentsAreNeverHeldBackWhileValid) {
    const auto hermes = syntax(ToolCallFormat::HermesJson);
    const std::vector<std::string> valid = {
        R"({})",
        R"({"a": []})",
        R"({"a": [ ], "b": {}, "c": [[1], {"d": null}]})",
        R"({"n": -0.5e+10, "m": 0, "k": 12E-3, "t": true, "f": false})",
        R"({"s": "tab\tquote\"slash\\ \u00e9 \/ é"})",
        R"({"deep": {"x": [1, [2, [3, {"y": "z"}]]]}})",
        R"([1, "two", {"three": 3}])",
    };
    for (const std::string& args : valid) {
        SCOPED_TRACE(args);
        ASSERT_TRUE(nlohmann::json::accept(args));
        const std::string head = "<tool_call>\n{\"name\": \"f\", \"arguments\": ";
        ChatStreamParser stream(hermes, counting_ids());
        std::string sent;
        for (char ch : head) stream.push(std::string(1, ch));
        for (size_t k = 0; k < args.size(); ++k) {
            for (const auto& d : stream.push(std::string(1, args[k])))
                if (d.kind == ChatDelta::Kind::ToolCallArguments) sent += d.text;
            // Bytes of a multi-byte character wait for the rest of it.
            if ((static_cast<unsigned char>(args[k]) & 0xC0) != 0xC0) EXPECT_EQ(sent.size(), k + 1);
        }
        for (const auto& d : stream.push("}\n</tool_call>")) sent += d.text;
        stream.finish();
        EXPECT_EQ(sent, args);
        ASSERT_EQ(stream.message().tool_calls.size(), 1u);
        EXPECT_EQ(stream.message().tool_calls[0].arguments, args);
    }
    for (const std::string& args : {R"({"a": 01})", R"({"a": tru})", R"({"a" 1})", R"({"a": "x\q"})", R"([1,,2])"}) {
        SCOPED_TRACE(args);
        expect_stream_matches_at_every_split(
            "<tool_call>\n{\"name\": \"f\", \"arguments\": " + args + "}\n</tool_call>", hermes);
    }
}

TEST(ChatOutputParse, WithoutToolsTagsStayInContent) {
    ChatSyntax s = syntax(ToolCallFormat::XmlFunction);
    s.parse_tool_calls = false;
    const std::string out = "<tool_call>\n<function=f>\n</function>\n</tool_call>";
    EXPECT_EQ(parse_chat_output(out, s).content, out);
}

TEST(ChatOutputParse, MessageJsonHasOpenAiShape) {
    auto m =
        parse_chat_output("<think>\nhmm\n</think>\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>",
                          syntax(ToolCallFormat::HermesJson, "", true), counting_ids());
    EXPECT_EQ(
        m.to_json().dump(),
        R"({"role":"assistant","content":null,"reasoning_content":"hmm","tool_calls":[{"id":"call_0","type":"function","function":{"name":"a","arguments":"{}"}}]})");
}

// Spec section 5: render(history + parse(output)) starts with
// render(history, generation prompt) + output, for canonical outputs.
TEST(ChatOutputReconstruction, ParsedMessageRendersBackToTheOutput) {
    MOESERVE_REQUIRE_FIXTURES();
    struct Case {
        const char* template_file;
        std::string output;
    };
    const Case cases[] = {
        {"Qwen3-Coder.jinja",
         "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"},
        {"GLM-4.7-Flash.jinja",
         "I'm "
         "thinking</think>Sure.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"},
        {"Qwen-Qwen3-0.6B.jinja",
         "<think>\nLet me see.\n</think>\n\nSure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
         "\"Paris\"}}\n</tool_call>"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.template_file);
        ChatTemplate t(test::slurp(test::fixture(std::string("templates/") + c.template_file).string()));
        ChatTemplateInputs in;
        in.messages = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}});
        in.tools = json::array({tool("get_weather", {{"city", {{"type", "string"}}}})});
        ChatPrompt p = t.apply(in);
        ChatMessage m = parse_chat_output(c.output, p.syntax);
        ASSERT_EQ(m.tool_calls.size(), 1u);
        in.messages.push_back(m.to_json());
        in.add_generation_prompt = false;
        std::string again = t.apply(in).prompt;
        EXPECT_TRUE(again.starts_with(p.prompt + c.output)) << again;
    }
}

}  // namespace
}  // namespace moeserve
