// OpenAI's Responses API (POST /v1/responses and the input_tokens routes):
// the request conversion to a chat body, and the real server answering
// with Response objects and the Responses stream events — output text,
// reasoning and function_call items (the tool-call answers forced with the
// test-only replay field, as in server_tool_calls_test.cpp), statuses,
// usage, errors — checked with curl and the official OpenAI SDK.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fixtures.h"
#include "server/responses_api.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;

TEST(ResponsesRequest, becomes_the_equivalent_chat_body) {
    const json body = json::parse(R"({
        "model": "gpt-x", "instructions": "Be terse.", "max_output_tokens": 64, "temperature": 0.2, "stream": true,
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "input": [
          {"role": "developer", "content": "Use metric units."},
          {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
          {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Need the tool."}]},
          {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
          {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
          {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
          {"role": "user", "content": "And tomorrow?"}]})");
    const json want = json::parse(R"({
        "messages": [
          {"role": "system", "content": "Be terse."},
          {"role": "system", "content": "Use metric units."},
          {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
          {"role": "assistant", "content": [{"type": "text", "text": "Checking."}], "reasoning_content": "Need the tool.",
           "tool_calls": [{"id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
          {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
          {"role": "user", "content": "And tomorrow?"}],
        "max_tokens": 64, "temperature": 0.2, "stream": true,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})");
    const json got = responses_to_chat_request(body);
    EXPECT_EQ(got, want) << got.dump(1);
    EXPECT_EQ(responses_to_chat_request(json{{"input", "hi"}})["messages"],
              json::parse(R"([{"role": "user", "content": "hi"}])"));
}

TEST(ResponsesRequest, what_cannot_be_served_is_a_400_naming_it) {
    auto refusal = [](const std::string& text) {
        try {
            responses_to_chat_request(json::parse(text));
        } catch (const ApiError& e) {
            EXPECT_EQ(e.status, 400);
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(refusal(R"({"model": "x"})").find("input"), std::string::npos);
    EXPECT_NE(refusal(R"({"input": "x", "previous_response_id": "resp_1"})").find("previous_response_id"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})")
                  .find("input[0].content[0]: 'input_image'"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"input": "x", "tools": [{"type": "web_search"}]})").find("'web_search'"), std::string::npos);
    EXPECT_NE(refusal(R"({"input": [{"type": "computer_call"}]})").find("'computer_call'"), std::string::npos);
    EXPECT_NE(refusal(R"({"input": [{"role": "tool", "content": "x"}]})").find("input[0].role"), std::string::npos);
    EXPECT_NE(refusal(R"({"input": 5})").find("input"), std::string::npos);
}

class ResponsesServer : public test::SharedServerTest<ResponsesServer> {
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
                "--allow-replay"};
    }
    static test::HttpResult post(const std::string& path, const json& body) {
        return curl(server_->url(path), "POST", body.dump());
    }
};

TEST_F(ResponsesServer, text_answer_streamed_and_not_with_status_usage_and_token_count) {
    const json body = {{"model", "x"},
                       {"instructions", "Be brief."},
                       {"input", "Tell me about the license."},
                       {"max_output_tokens", 12},
                       {"temperature", 0}};
    auto r = post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json resp = r.json_body();
    EXPECT_EQ(resp["object"], "response");
    EXPECT_EQ(resp["status"], "incomplete");
    EXPECT_EQ(resp["incomplete_details"]["reason"], "max_output_tokens");
    ASSERT_EQ(resp["output"].size(), 1u) << resp.dump();
    EXPECT_EQ(resp["output"][0]["type"], "message");
    const std::string text = resp["output"][0]["content"][0]["text"];
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(resp["usage"]["output_tokens"], 12);
    EXPECT_EQ(resp["usage"]["total_tokens"],
              resp["usage"]["input_tokens"].get<int>() + resp["usage"]["output_tokens"].get<int>());
    auto count = post("/v1/responses/input_tokens", body);
    ASSERT_EQ(count.status, 200) << count.body;
    EXPECT_EQ(count.json_body()["input_tokens"], resp["usage"]["input_tokens"]);
    EXPECT_EQ(count.json_body()["object"], "response.input_tokens");

    json sbody = body;
    sbody["stream"] = true;
    auto rs = post("/v1/responses", sbody);
    ASSERT_EQ(rs.status, 200) << rs.body;
    const auto events = test::sse_events(rs.body);
    ASSERT_GE(events.size(), 6u) << rs.body;
    EXPECT_EQ(events.front().first, "response.created");
    EXPECT_EQ(events.back().first, "response.incomplete");
    std::string deltas;
    int64_t seq = 0;
    for (const auto& [name, data] : events) {
        EXPECT_EQ(data["type"], name);
        EXPECT_EQ(data["sequence_number"], seq++);
        if (name == "response.output_text.delta") deltas += data["delta"].get<std::string>();
    }
    EXPECT_EQ(deltas, text);
    EXPECT_EQ(events.back().second["response"]["output"][0]["content"][0]["text"], text);
    EXPECT_EQ(rs.body.find("[DONE]"), std::string::npos);
}

TEST_F(ResponsesServer, reasoning_message_and_function_calls_and_the_official_sdk) {
    const std::string call =
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
    const std::string answer = "<think>\nThe user wants weather.\n</think>\n\nLet me check.\n" + call + "\n" + call;
    const json body = {{"model", "x"},
                       {"input", json::array({{{"role", "user"}, {"content", "Weather in Paris for 3 days?"}}})},
                       {"tools", json::parse(R"([{"type":"function","name":"get_weather","parameters":{"type":"object",
            "properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}])")},
                       {"replay", answer}};
    auto r = post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json resp = r.json_body();
    EXPECT_EQ(resp["status"], "completed");
    ASSERT_EQ(resp["output"].size(), 4u) << resp.dump();
    EXPECT_EQ(resp["output"][0]["content"][0]["text"], "The user wants weather.");
    EXPECT_EQ(resp["output"][1]["content"][0]["text"], "Let me check.");
    for (int i : {2, 3}) {
        EXPECT_EQ(resp["output"][i]["type"], "function_call");
        EXPECT_EQ(json::parse(resp["output"][i]["arguments"].get<std::string>()),
                  json::parse(R"({"city":"Paris","days":3})"));
    }
    EXPECT_EQ(r.body.find("<tool_call>"), std::string::npos);

    if (!test::have_node_modules()) GTEST_SKIP() << "tests/e2e/server/node_modules missing (make test installs it)";
    std::string output;
    EXPECT_EQ(test::run_node("sdk_responses.mjs", {server_->url("/v1"), answer}, output), 0) << output;
}

// text.format json_schema: the grammar-constrained answer the chat endpoint gives for the same
// schema (greedy, so the same text), and JSON of the schema's shape.
TEST_F(ResponsesServer, structured_output_follows_the_schema_as_chat_response_format_does) {
    // Enums, so that the tiny model's greedy answer ends (its free strings run on).
    const json schema = json::parse(R"({"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
        "days": {"enum": [1, 2, 3]}}, "required": ["city", "days"], "additionalProperties": false})");
    const json body = {{"input", "Weather?"},
                       {"max_output_tokens", 200},
                       {"temperature", 0},
                       {"text", {{"format", {{"type", "json_schema"}, {"name", "w"}, {"schema", schema}}}}}};
    auto r = post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json resp = r.json_body();
    ASSERT_EQ(resp["status"], "completed") << resp.dump();
    const std::string text = resp["output"][0]["content"][0]["text"];
    const json value = json::parse(text, nullptr, false);
    ASSERT_TRUE(value.is_object()) << text;
    EXPECT_TRUE(value["city"] == "Paris" || value["city"] == "Rome") << text;
    EXPECT_TRUE(value["days"] == 1 || value["days"] == 2 || value["days"] == 3) << text;
    EXPECT_EQ(value.size(), 2u) << text;
    const json chat = {
        {"messages", json::array({{{"role", "user"}, {"content", "Weather?"}}})},
        {"max_tokens", 200},
        {"temperature", 0},
        {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "w"}, {"schema", schema}}}}}};
    auto c = post("/v1/chat/completions", chat);
    ASSERT_EQ(c.status, 200) << c.body;
    EXPECT_EQ(c.json_body()["choices"][0]["message"]["content"], text);
    json bad = body;
    bad["text"]["format"]["type"] = "xml";
    EXPECT_EQ(post("/v1/responses", bad).status, 400);
}

TEST_F(ResponsesServer, chat_input_tokens_counts_the_chat_prompt) {
    const json chat = {{"messages", json::array({{{"role", "user"}, {"content", "Hello"}}})}};
    auto count = post("/v1/chat/completions/input_tokens", chat);
    ASSERT_EQ(count.status, 200) << count.body;
    json one = chat;
    one["max_tokens"] = 1;
    auto r = post("/v1/chat/completions", one);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(count.json_body()["input_tokens"], r.json_body()["usage"]["prompt_tokens"]);
    EXPECT_EQ(post("/v1/responses", json{{"input", 5}}).status, 400);
}

}  // namespace
}  // namespace moeserve
