// Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens):
// the request conversion to a chat body, and the real server answering in
// Message objects and named SSE events — text, thinking and tool_use blocks
// (the tool-call answers forced with the test-only replay field, as in
// server_tool_calls_test.cpp), stop reasons, usage, errors, X-Api-Key.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fixtures.h"
#include "server/anthropic_api.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;
using test::Server;

const json kTool = json::parse(R"({"name":"get_weather","description":"Weather forecast for a city",
    "input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},
                    "required":["city"]}})");
const json kArgs = json::parse(R"({"city":"Paris","days":3})");

TEST(AnthropicRequest, becomes_the_equivalent_chat_body) {
    const json body = json::parse(R"({
        "model": "claude-x", "max_tokens": 64, "temperature": 0.5, "stop_sequences": ["END"], "stream": true,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": " Really."}],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "enabled", "budget_tokens": 1000},
        "messages": [
          {"role": "user", "content": "Weather in Paris?"},
          {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "x"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
          {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]},
            {"type": "text", "text": "And tomorrow?"}]}]})");
    const json want = json::parse(R"({
        "messages": [
          {"role": "system", "content": "You are terse. Really."},
          {"role": "user", "content": "Weather in Paris?"},
          {"role": "assistant", "content": [{"type": "text", "text": "Checking."}],
           "tool_calls": [{"id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
           "reasoning_content": "Need the tool."},
          {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
          {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}],
        "max_tokens": 64, "temperature": 0.5, "stream": true, "stop": ["END"],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "chat_template_kwargs": {"enable_thinking": true}, "thinking_budget_tokens": 1000})");
    EXPECT_EQ(anthropic_to_chat_request(body), want) << anthropic_to_chat_request(body).dump(1);

    // A named tool, "none", and a missing max_tokens (4096, as llama-server).
    json named = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                  {"tool_choice", {{"type", "tool"}, {"name", "get_weather"}}}};
    const json c = anthropic_to_chat_request(named);
    EXPECT_EQ(c["tool_choice"], json::parse(R"({"type":"function","function":{"name":"get_weather"}})"));
    EXPECT_EQ(c["max_tokens"], 4096);
    named["tool_choice"] = {{"type", "none"}};
    EXPECT_EQ(anthropic_to_chat_request(named)["tool_choice"], "none");
    EXPECT_FALSE(anthropic_to_chat_request(named).contains("parallel_tool_calls"));
    named["tool_choice"] = {{"type", "auto"}, {"disable_parallel_tool_use", true}};
    EXPECT_EQ(anthropic_to_chat_request(named)["parallel_tool_calls"], false);

    // Anthropic's server and built-in tools are left out; custom tools (typed or not) stay.
    named["tools"] = json::parse(R"([{"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "custom", "name": "a", "input_schema": {"type": "object"}},
        {"name": "b", "input_schema": {"type": "object"}}])");
    const json tools = anthropic_to_chat_request(named)["tools"];
    ASSERT_EQ(tools.size(), 2u) << tools.dump();
    EXPECT_EQ(tools[0]["function"]["name"], "a");
    EXPECT_EQ(tools[1]["function"]["name"], "b");
}

TEST(AnthropicRequest, malformed_or_unsupported_input_is_a_400_naming_it) {
    auto refusal = [](const std::string& text) {
        try {
            anthropic_to_chat_request(json::parse(text));
        } catch (const ApiError& e) {
            EXPECT_EQ(e.status, 400);
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(refusal(R"({"max_tokens": 5})").find("messages"), std::string::npos);
    EXPECT_NE(refusal(R"({"messages": [{"role": "system", "content": "x"}]})").find("messages[0].role"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})")
                  .find("messages[0].content[0]: 'image'"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"messages": [{"role": "user", "content": [{"type": "video"}]}]})").find("'video'"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"messages": [], "tool_choice": {"type": "sometimes"}})").find("tool_choice"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"messages": [], "system": 5})").find("system"), std::string::npos);
    EXPECT_NE(refusal(R"({"messages": [{"role": "user", "content": 7}]})").find("messages[0].content"),
              std::string::npos);
}

// A stream's events added up: the content blocks as a Message would list
// them, the stop reason, the usage; protocol violations in `errors`.
struct StreamedMessage {
    json content = json::array();
    json stop_reason, stop_sequence;
    json usage = json::object();
    std::vector<std::string> errors;
};

StreamedMessage add_up(const std::string& body) {
    StreamedMessage m;
    const auto events = test::sse_events(body);
    if (events.empty() || events.front().first != "message_start") m.errors.push_back("no message_start first");
    if (events.empty() || events.back().first != "message_stop") m.errors.push_back("no message_stop last");
    int open = -1;
    std::vector<std::string> partial_json;
    for (const auto& [name, data] : events) {
        if (data.value("type", "") != name) m.errors.push_back("event " + name + " carries " + data.dump());
        if (name == "message_start") {
            m.usage = data["message"]["usage"];
        } else if (name == "content_block_start") {
            if (open != -1) m.errors.push_back("a block starts while another is open");
            open = data["index"];
            if (open != static_cast<int>(m.content.size())) m.errors.push_back("block index out of order");
            m.content.push_back(data["content_block"]);
            partial_json.emplace_back();
        } else if (name == "content_block_delta") {
            if (data["index"] != open) m.errors.push_back("delta for a block that is not open");
            if (open < 0) continue;
            json& b = m.content[open];
            const json& d = data["delta"];
            const std::string t = d["type"];
            if (t == "text_delta") b["text"] = b["text"].get<std::string>() + d["text"].get<std::string>();
            if (t == "thinking_delta")
                b["thinking"] = b["thinking"].get<std::string>() + d["thinking"].get<std::string>();
            if (t == "input_json_delta") partial_json[open] += d["partial_json"].get<std::string>();
            if (t == "signature_delta") b["signature"] = d["signature"];
        } else if (name == "content_block_stop") {
            if (data["index"] != open) m.errors.push_back("stop for a block that is not open");
            if (open >= 0 && m.content[open]["type"] == "tool_use")
                m.content[open]["input"] = json::parse(partial_json[open]);
            if (open >= 0 && m.content[open]["type"] == "thinking" && !m.content[open].contains("signature"))
                m.errors.push_back("thinking block closed without a signature_delta");
            open = -1;
        } else if (name == "message_delta") {
            m.stop_reason = data["delta"]["stop_reason"];
            m.stop_sequence = data["delta"]["stop_sequence"];
            m.usage["output_tokens"] = data["usage"]["output_tokens"];
        }
    }
    if (open != -1) m.errors.push_back("a block was never closed");
    return m;
}

class AnthropicServer : public test::SharedServerTest<AnthropicServer> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m",
                test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(),
                "-np",
                "2",
                "-c",
                "2048",
                "-t",
                "2",
                "--allow-replay",
                "--api-key",
                "sk-test"};
    }
    static test::HttpResult post(const std::string& path, const json& body,
                                 std::vector<std::string> headers = {"x-api-key: sk-test"}) {
        return curl(server_->url(path), "POST", body.dump(), headers);
    }
};

json user_body(const std::string& text, int max_tokens, bool stream) {
    return {{"model", "claude-test"}, {"max_tokens", max_tokens},
            {"system", "Be brief."},  {"messages", json::array({{{"role", "user"}, {"content", text}}})},
            {"temperature", 0},       {"stream", stream}};
}

TEST_F(AnthropicServer, text_answer_streamed_and_not_with_usage_and_token_count) {
    auto r = post("/v1/messages", user_body("Tell me about the license.", 12, false));
    ASSERT_EQ(r.status, 200) << r.body;
    const json msg = r.json_body();
    EXPECT_EQ(msg["type"], "message");
    EXPECT_EQ(msg["role"], "assistant");
    ASSERT_EQ(msg["content"].size(), 1u) << msg.dump();
    EXPECT_EQ(msg["content"][0]["type"], "text");
    EXPECT_FALSE(msg["content"][0]["text"].get<std::string>().empty());
    EXPECT_EQ(msg["stop_reason"], "max_tokens");
    EXPECT_TRUE(msg["stop_sequence"].is_null());
    EXPECT_EQ(msg["usage"]["output_tokens"], 12);

    auto count = post("/v1/messages/count_tokens", user_body("Tell me about the license.", 12, false));
    ASSERT_EQ(count.status, 200) << count.body;
    EXPECT_EQ(count.json_body()["input_tokens"], msg["usage"]["input_tokens"]);
    EXPECT_GT(msg["usage"]["input_tokens"].get<int>(), 5);

    // Greedy: the stream adds up to the same message.
    auto rs = post("/v1/messages", user_body("Tell me about the license.", 12, true));
    ASSERT_EQ(rs.status, 200) << rs.body;
    EXPECT_NE(rs.headers.find("text/event-stream"), std::string::npos) << rs.headers;
    EXPECT_EQ(rs.body.find("[DONE]"), std::string::npos) << "Anthropic streams have no [DONE] line";
    const StreamedMessage s = add_up(rs.body);
    EXPECT_TRUE(s.errors.empty()) << ::testing::PrintToString(s.errors) << rs.body;
    EXPECT_EQ(s.content, msg["content"]) << rs.body;
    EXPECT_EQ(s.stop_reason, "max_tokens");
    EXPECT_EQ(s.usage["input_tokens"], msg["usage"]["input_tokens"]);
    EXPECT_EQ(s.usage["output_tokens"], 12);
}

TEST_F(AnthropicServer, thinking_text_and_tool_use_blocks_streamed_and_not) {
    const std::string call =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
    json body = user_body("Weather in Paris for 3 days?", 400, false);
    body["tools"] = json::array({kTool});
    body["replay"] = "<think>\nThe user wants weather.\n</think>\n\nLet me check.\n" + call + "\n" + call;
    auto r = post("/v1/messages", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json msg = r.json_body();
    ASSERT_EQ(msg["content"].size(), 4u) << msg.dump();
    EXPECT_EQ(msg["content"][0],
              json::parse(R"({"type":"thinking","thinking":"The user wants weather.","signature":""})"));
    EXPECT_EQ(msg["content"][1], json::parse(R"({"type":"text","text":"Let me check."})"));
    for (int i : {2, 3}) {
        EXPECT_EQ(msg["content"][i]["type"], "tool_use");
        EXPECT_EQ(msg["content"][i]["name"], "get_weather");
        EXPECT_EQ(msg["content"][i]["input"], kArgs);
        EXPECT_FALSE(msg["content"][i]["id"].get<std::string>().empty());
    }
    EXPECT_NE(msg["content"][2]["id"], msg["content"][3]["id"]);
    EXPECT_EQ(msg["stop_reason"], "tool_use");

    body["stream"] = true;
    auto rs = post("/v1/messages", body);
    ASSERT_EQ(rs.status, 200) << rs.body;
    StreamedMessage s = add_up(rs.body);
    EXPECT_TRUE(s.errors.empty()) << ::testing::PrintToString(s.errors) << rs.body;
    EXPECT_EQ(s.stop_reason, "tool_use");
    ASSERT_EQ(s.content.size(), 4u) << rs.body;
    EXPECT_EQ(s.content[0], msg["content"][0]);
    EXPECT_EQ(s.content[1], msg["content"][1]);
    for (int i : {2, 3}) {
        EXPECT_EQ(s.content[i]["name"], "get_weather");
        EXPECT_EQ(s.content[i]["input"], kArgs) << rs.body;
    }
    EXPECT_EQ(rs.body.find("<tool_call>"), std::string::npos) << "tool-call markup leaked into the stream";
}

TEST_F(AnthropicServer, a_stop_sequence_ends_the_answer_and_is_named) {
    json body = user_body("Say something.", 50, false);
    body["replay"] = "Hello world STOP and more";
    body["stop_sequences"] = json::array({"STOP"});
    auto r = post("/v1/messages", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json msg = r.json_body();
    EXPECT_EQ(msg["stop_reason"], "stop_sequence") << msg.dump();
    EXPECT_EQ(msg["stop_sequence"], "STOP");
    EXPECT_EQ(msg["content"][0]["text"], "Hello world");  // the chat reader trims the answer
    body["stream"] = true;
    const StreamedMessage s = add_up(post("/v1/messages", body).body);
    EXPECT_EQ(s.stop_reason, "stop_sequence");
    EXPECT_EQ(s.stop_sequence, "STOP");
}

TEST_F(AnthropicServer, bad_requests_and_keys_get_the_right_status) {
    EXPECT_EQ(post("/v1/messages", user_body("hi", 4, false), {"x-api-key: wrong"}).status, 401);
    EXPECT_EQ(post("/v1/messages", user_body("hi", 4, false), {"Authorization: Bearer sk-test"}).status, 200);
    json image = user_body("hi", 4, false);
    image["messages"][0]["content"] = json::array({{{"type", "image"}, {"source", json::object()}}});
    auto r = post("/v1/messages", image);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("image"), std::string::npos) << r.body;
    auto bad = curl(server_->url("/v1/messages"), "POST", "{not json", {"x-api-key: sk-test"});
    EXPECT_EQ(bad.status, 400);
    // The server still answers.
    EXPECT_EQ(post("/v1/messages", user_body("hi", 4, false)).status, 200);
}

TEST_F(AnthropicServer, the_official_anthropic_sdk_reads_messages_streams_and_tool_use) {
    if (!test::have_node_modules("@anthropic-ai/sdk"))
        GTEST_SKIP() << "tests/e2e/server/node_modules missing: run npm ci there (make test does)";
    const std::string call =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
    std::string output;
    EXPECT_EQ(test::run_node("sdk_anthropic.mjs",
                             {server_->url(""),
                              "<think>\nThe user wants weather.\n</think>\n\nLet me check.\n" + call + "\n" + call},
                             output),
              0)
        << output;
}

}  // namespace
}  // namespace moeserve
