// End to end: chat answers read back into reasoning_content, content and
// tool_calls by the real server, for each seed family's syntax. The tiny
// fixture models cannot be trained to call tools, so the answer is forced
// with the test-only `replay` field (serve --allow-replay): the server emits
// those tokens as if sampled, then end of generation, and everything after
// sampling (detokenization, output parsing, streaming) runs as in production.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "fixtures.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;
using test::json;
using test::Server;
using test::sse_payloads;

const json kTools = json::parse(R"([{"type":"function","function":{
    "name":"get_weather","description":"Weather forecast for a city",
    "parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},
                  "required":["city"]}}}])");
const json kArgs = json::parse(R"({"city":"Paris","days":3})");

// One family: the model and template that teach the syntax, the answer the
// replay forces (reasoning, then text, then one or two calls), and what the
// reader must make of it.
struct Family {
    std::string name;
    std::string model;          // fixture path
    std::string template_file;  // fixture path, or "" for the model's own
    std::string answer_prefix;  // reasoning and text as the model writes them
    std::string call;           // one get_weather(city=Paris, days=3) call in the family's syntax
    std::string reasoning;      // expected reasoning_content
    std::string content;        // expected content (before the calls)
};

std::vector<Family> families() {
    const std::string xml_call =
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n"
        "</parameter>\n</function>\n</tool_call>";
    return {
        {"qwen3", "models/qwen3moe-tiny-s1-f16.gguf", "",
         "<think>\nThe user wants weather.\n</think>\n\nLet me check.\n",
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>",
         "The user wants weather.", "Let me check."},
        {"qwen3-coder", "models/qwen3moe-tiny-s1-f16.gguf", "templates/Qwen3-Coder.jinja", "Let me check.\n", xml_call,
         "", "Let me check."},
        {"nemotron", "models/nemotron-h-moe-tiny-s1-f16.gguf", "", "The user wants weather.\n</think>\nLet me check.\n",
         xml_call, "The user wants weather.", "Let me check."},
        {"glm", "models/glm47flash-tiny-s1-f16.gguf", "", "The user wants weather.</think>Let me check.",
         "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key>"
         "<arg_value>3</arg_value></tool_call>",
         "The user wants weather.", "Let me check."},
    };
}

std::unique_ptr<Server> start(const Family& f, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "-m", test::fixture(f.model).string(), "-np", "2", "-c", "2048", "-t", "2", "--allow-replay"};
    if (!f.template_file.empty()) {
        args.push_back("--chat-template-file");
        args.push_back(test::fixture(f.template_file).string());
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Server>(args);
}

json chat_body(const std::string& replay, bool stream, json extra = json::object()) {
    json body = {{"messages", json::array({{{"role", "user"}, {"content", "Weather in Paris for 3 days?"}}})},
                 {"tools", kTools},
                 {"max_tokens", 400},
                 {"replay", replay},
                 {"stream", stream}};
    for (auto& [k, v] : extra.items()) body[k] = v;
    return body;
}

// The message a stream adds up to: content and reasoning concatenated, tool
// calls assembled from their first chunk (id, name) and argument fragments.
struct Streamed {
    json message = {{"content", ""}, {"reasoning_content", ""}, {"tool_calls", json::array()}};
    std::string finish_reason;
    std::vector<std::string> errors;  // protocol violations seen
};

Streamed add_up(const std::string& body) {
    Streamed s;
    auto events = sse_payloads(body);
    if (events.empty() || events.back() != "[DONE]") s.errors.push_back("stream does not end with [DONE]");
    for (const auto& ev : events) {
        if (ev == "[DONE]") continue;
        const json chunk = json::parse(ev);
        for (const auto& choice : chunk["choices"]) {
            if (!choice["finish_reason"].is_null()) s.finish_reason = choice["finish_reason"];
            const json& d = choice["delta"];
            if (d.contains("content") && d["content"].is_string())
                s.message["content"] = s.message["content"].get<std::string>() + d["content"].get<std::string>();
            if (d.contains("reasoning_content"))
                s.message["reasoning_content"] =
                    s.message["reasoning_content"].get<std::string>() + d["reasoning_content"].get<std::string>();
            if (!d.contains("tool_calls")) continue;
            for (const auto& tc : d["tool_calls"]) {
                const size_t i = tc["index"];
                json& calls = s.message["tool_calls"];
                if (i == calls.size()) {
                    if (!tc.contains("id") || !tc.contains("function") || !tc["function"].contains("name"))
                        s.errors.push_back("the first chunk of a call lacks its id or name: " + tc.dump());
                    calls.push_back({{"id", tc.value("id", "")},
                                     {"type", tc.value("type", "")},
                                     {"function", {{"name", tc["function"].value("name", "")}, {"arguments", ""}}}});
                } else if (i > calls.size()) {
                    s.errors.push_back("tool call index skips ahead: " + tc.dump());
                    continue;
                } else if (tc.contains("id") || tc["function"].contains("name")) {
                    s.errors.push_back("a later chunk of a call repeats its id or name: " + tc.dump());
                }
                std::string& args = calls[i]["function"]["arguments"].get_ref<std::string&>();
                args += tc["function"].value("arguments", "");
            }
        }
    }
    return s;
}

// Checks one call: OpenAI shape, a 32-character id, the arguments a JSON text
// equal to {"city":"Paris","days":3} (days typed as the schema's integer).
void expect_weather_call(const json& call, const std::string& where) {
    SCOPED_TRACE(where + ": " + call.dump());
    EXPECT_EQ(call["type"], "function");
    ASSERT_TRUE(call["id"].is_string());
    EXPECT_GE(call["id"].get<std::string>().size(), 9u);
    EXPECT_EQ(call["function"]["name"], "get_weather");
    ASSERT_TRUE(call["function"]["arguments"].is_string());
    EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), kArgs);
}

class ServerToolCalls : public ::testing::TestWithParam<Family> {
  protected:
    void SetUp() override { MOESERVE_REQUIRE_FIXTURES(); }
};

TEST_P(ServerToolCalls, reasoning_content_and_parallel_calls_streamed_and_not) {
    const Family& f = GetParam();
    auto server = start(f);
    ASSERT_TRUE(server->ready()) << server->log();
    const std::string answer = f.answer_prefix + f.call + "\n" + f.call;

    auto r = curl(server->url("/v1/chat/completions"), "POST", chat_body(answer, false).dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json body = r.json_body();
    const json& choice = body["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls");
    const json& msg = choice["message"];
    EXPECT_EQ(msg["role"], "assistant");
    EXPECT_EQ(msg["content"], f.content) << msg.dump();
    if (f.reasoning.empty())
        EXPECT_FALSE(msg.contains("reasoning_content")) << msg.dump();
    else
        EXPECT_EQ(msg.value("reasoning_content", ""), f.reasoning) << msg.dump();
    ASSERT_EQ(msg["tool_calls"].size(), 2u) << msg.dump();
    expect_weather_call(msg["tool_calls"][0], "non-streamed call 0");
    expect_weather_call(msg["tool_calls"][1], "non-streamed call 1");
    EXPECT_NE(msg["tool_calls"][0]["id"], msg["tool_calls"][1]["id"]);

    // Streamed: no markup leaks, and the deltas add up to the same message.
    auto rs = curl(server->url("/v1/chat/completions"), "POST", chat_body(answer, true).dump());
    ASSERT_EQ(rs.status, 200) << rs.body;
    const Streamed s = add_up(rs.body);
    EXPECT_TRUE(s.errors.empty()) << ::testing::PrintToString(s.errors);
    EXPECT_EQ(s.finish_reason, "tool_calls");
    EXPECT_EQ(s.message["content"], msg["content"]);
    EXPECT_EQ(s.message["reasoning_content"], msg.value("reasoning_content", ""));
    ASSERT_EQ(s.message["tool_calls"].size(), 2u) << rs.body;
    for (int i = 0; i < 2; ++i) expect_weather_call(s.message["tool_calls"][i], "streamed call");
    EXPECT_EQ(rs.body.find("<tool_call>"), std::string::npos) << "tool-call markup leaked into the stream";
    EXPECT_EQ(rs.body.find("</think>"), std::string::npos) << "reasoning markup leaked into the stream";
}

TEST_P(ServerToolCalls, tool_choice_none_parallel_false_and_cut_off_calls) {
    const Family& f = GetParam();
    auto server = start(f);
    ASSERT_TRUE(server->ready()) << server->log();
    const std::string answer = f.answer_prefix + f.call + "\n" + f.call;

    // parallel_tool_calls false keeps the first call only.
    auto one = curl(server->url("/v1/chat/completions"), "POST",
                    chat_body(answer, false, {{"parallel_tool_calls", false}}).dump())
                   .json_body();
    ASSERT_EQ(one["choices"][0]["message"]["tool_calls"].size(), 1u) << one.dump();
    expect_weather_call(one["choices"][0]["message"]["tool_calls"][0], "parallel_tool_calls false");
    auto one_s = add_up(curl(server->url("/v1/chat/completions"), "POST",
                             chat_body(answer, true, {{"parallel_tool_calls", false}}).dump())
                            .body);
    EXPECT_EQ(one_s.message["tool_calls"].size(), 1u);

    // tool_choice none: nothing is read as a call; the markup stays text.
    auto none = curl(server->url("/v1/chat/completions"), "POST",
                     chat_body(f.answer_prefix + f.call, false, {{"tool_choice", "none"}}).dump())
                    .json_body();
    const json& nm = none["choices"][0]["message"];
    EXPECT_FALSE(nm.contains("tool_calls")) << nm.dump();
    EXPECT_EQ(none["choices"][0]["finish_reason"], "stop");
    EXPECT_NE(nm["content"].get<std::string>().find("get_weather"), std::string::npos) << nm.dump();

    // Cut off inside the call by max_tokens: finish_reason length, never a
    // crash; what was written stays readable (the call's name, or text).
    auto cut = curl(server->url("/v1/chat/completions"), "POST",
                    chat_body(f.answer_prefix + f.call, false, {{"max_tokens", 40}}).dump());
    ASSERT_EQ(cut.status, 200) << cut.body;
    EXPECT_EQ(cut.json_body()["choices"][0]["finish_reason"], "length");
}

// The tool-call grammar (chat/tool_call_grammar.h) on models that know no
// tools at all (random weights): under tool_choice "required" the answer is a
// call of a declared tool whose arguments fit its schema; under "auto" the
// answer is free until the model writes "<tool_call>" (pushed here with
// logit_bias), and the call it then writes is valid too. The alarm tool's
// arguments are bounded (an integer, a boolean), so a call always ends.
TEST_P(ServerToolCalls, the_grammar_makes_calls_of_declared_tools_with_valid_arguments) {
    const Family& f = GetParam();
    auto server = start(f);
    ASSERT_TRUE(server->ready()) << server->log();
    const json tools = json::parse(R"([{"type":"function","function":{"name":"set_alarm",
        "parameters":{"type":"object","properties":{"hour":{"type":"integer"},"loud":{"type":"boolean"}},
                      "required":["hour","loud"]}}}])");
    json body = {{"messages", json::array({{{"role", "user"}, {"content", "Wake me at 7."}}})},
                 {"tools", tools},
                 {"tool_choice", "required"},
                 {"parallel_tool_calls", false},
                 {"chat_template_kwargs", {{"enable_thinking", false}}},
                 {"temperature", 0},
                 {"max_tokens", 300}};
    auto expect_alarm = [&](const json& answer, const std::string& where) {
        SCOPED_TRACE(where + ": " + answer.dump());
        const json& choice = answer["choices"][0];
        EXPECT_EQ(choice["finish_reason"], "tool_calls");
        ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
        const json& fn = choice["message"]["tool_calls"][0]["function"];
        EXPECT_EQ(fn["name"], "set_alarm");
        const json args = json::parse(fn["arguments"].get<std::string>());
        EXPECT_TRUE(args["hour"].is_number_integer());
        EXPECT_TRUE(args["loud"].is_boolean());
    };
    auto r = curl(server->url("/v1/chat/completions"), "POST", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    expect_alarm(r.json_body(), "required");

    // A named function is the call, even where it is not the first tool; a name not among the tools is a 400.
    json named = body;
    named["tools"] = json::array({json::parse(R"({"type":"function","function":{"name":"ring","parameters":{
        "type":"object","properties":{"times":{"type":"integer"}},"required":["times"]}}})"),
                                  tools[0]});
    named["tool_choice"] = {{"type", "function"}, {"function", {{"name", "set_alarm"}}}};
    r = curl(server->url("/v1/chat/completions"), "POST", named.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    expect_alarm(r.json_body(), "named function");
    named["tool_choice"]["function"]["name"] = "snooze";
    r = curl(server->url("/v1/chat/completions"), "POST", named.dump());
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("snooze"), std::string::npos) << r.body;

    // Parallel calls allowed and newlines made likely: a newline after the call (Nemotron's template
    // writes one) may end the answer; it does not force another call.
    const json nl = curl(server->url("/tokenize"), "POST", R"({"content":"\n"})").json_body()["tokens"];
    ASSERT_EQ(nl.size(), 1u) << nl.dump();
    json newline = body;
    newline.erase("parallel_tool_calls");
    newline["tools"] = json::parse(R"([{"type":"function","function":{"name":"ping","parameters":{"type":"object",
        "properties":{}}}}])");
    newline["logit_bias"] = json::array({json::array({nl[0], 30})});
    r = curl(server->url("/v1/chat/completions"), "POST", newline.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json_body()["choices"][0]["finish_reason"], "tool_calls") << r.body;

    // auto: the marker's token made likely; the grammar takes over once it is written.
    const json ids = curl(server->url("/tokenize"), "POST", R"({"content":"<tool_call>","parse_special":true})")
                         .json_body()["tokens"];
    ASSERT_EQ(ids.size(), 1u) << ids.dump();
    body["tool_choice"] = "auto";
    body["logit_bias"] = json::array({json::array({ids[0], 100})});
    r = curl(server->url("/v1/chat/completions"), "POST", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    expect_alarm(r.json_body(), "auto, triggered");
}

INSTANTIATE_TEST_SUITE_P(Families, ServerToolCalls, ::testing::ValuesIn(families()), [](const auto& info) {
    std::string n = info.param.name;
    for (char& c : n)
        if (c == '-') c = '_';
    return n;
});

TEST(ServerReasoning, reasoning_format_none_keeps_the_thinking_in_the_content) {
    MOESERVE_REQUIRE_FIXTURES();
    const Family f = families()[2];  // Nemotron: the output starts inside <think>
    auto server = start(f, {"--reasoning-format", "none"});
    ASSERT_TRUE(server->ready()) << server->log();
    json body = chat_body("Thinking hard.\n</think>\nHi there.", false);
    body.erase("tools");
    auto r = curl(server->url("/v1/chat/completions"), "POST", body.dump()).json_body();
    const json& m = r["choices"][0]["message"];
    EXPECT_FALSE(m.contains("reasoning_content")) << m.dump();
    EXPECT_NE(m["content"].get<std::string>().find("<think>"), std::string::npos) << m.dump();
    EXPECT_NE(m["content"].get<std::string>().find("</think>"), std::string::npos) << m.dump();

    // Per request, reasoning_format overrides the flag.
    body["reasoning_format"] = "auto";
    auto a = curl(server->url("/v1/chat/completions"), "POST", body.dump()).json_body();
    EXPECT_EQ(a["choices"][0]["message"]["reasoning_content"], "Thinking hard.") << a.dump();
    EXPECT_EQ(a["choices"][0]["message"]["content"], "Hi there.") << a.dump();

    body["reasoning_format"] = "sideways";
    auto bad = curl(server->url("/v1/chat/completions"), "POST", body.dump());
    EXPECT_EQ(bad.status, 400);
    EXPECT_NE(bad.body.find("reasoning_format"), std::string::npos) << bad.body;
}

TEST(ServerReplay, refused_unless_the_server_allows_it_and_bad_tool_choice_is_a_400) {
    MOESERVE_REQUIRE_FIXTURES();
    Server server({"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "1", "-c", "512"});
    ASSERT_TRUE(server.ready()) << server.log();
    auto r = curl(server.url("/v1/chat/completions"), "POST", chat_body("hi", false).dump());
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("--allow-replay"), std::string::npos) << r.body;

    json body = chat_body("hi", false);
    body.erase("replay");
    body["tool_choice"] = "sometimes";
    auto tc = curl(server.url("/v1/chat/completions"), "POST", body.dump());
    EXPECT_EQ(tc.status, 400);
    EXPECT_NE(tc.body.find("tool_choice"), std::string::npos) << tc.body;
}

TEST(ServerToolCallsSdk, openai_node_sdk_reads_tool_calls_streamed_and_not) {
    MOESERVE_REQUIRE_FIXTURES();
    if (!test::have_node_modules())
        GTEST_SKIP() << "tests/e2e/server/node_modules missing: run npm ci there (make test does)";
    const Family f = families()[1];  // Qwen3-Coder's XML calls
    auto server = start(f);
    ASSERT_TRUE(server->ready()) << server->log();
    std::string output;
    EXPECT_EQ(test::run_node("sdk_tools.mjs", {server->url("/v1"), f.answer_prefix + f.call + "\n" + f.call}, output),
              0)
        << output;
}

}  // namespace
}  // namespace moeserve
