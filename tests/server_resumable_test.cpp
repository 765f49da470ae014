// The real server's resumable streams and completion control, driven over raw
// sockets (a client that leaves after its first chunk) and curl:
//  - X-Conversation-Id: the answer goes on after its client left; GET
//    /v1/stream replays it from any byte and follows it, POST
//    /v1/streams/lookup reports it, DELETE /v1/stream cancels it and frees
//    the slot, and a newer request on the same id replaces an older one;
//  - /v1/chat/completions/control "reasoning_end" closes a thinking block of
//    a request with reasoning_control, and refuses the others.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "raw_http_client.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using json = nlohmann::ordered_json;
using namespace std::chrono_literals;
using test::Conn;
using test::curl;
using test::request_text;
using test::Server;
using test::SharedServerTest;

int port_of(const Server& s) {
    const std::string u = s.url();
    return std::stoi(u.substr(u.rfind(':') + 1));
}

json chat(int max_tokens, bool stream) {
    return json{{"messages", json::array({{{"role", "user"}, {"content", "Tell me about licenses."}}})},
                {"max_tokens", max_tokens},
                {"temperature", 0},
                {"ignore_eos", true},
                {"cache_prompt", false},
                {"stream", stream}};
}

// The content of a chat stream's deltas, and its usage chunk's completion tokens.
struct StreamText {
    std::string content, reasoning;
    int64_t completion_tokens = -1;
    bool done = false;  // ended with [DONE]
};
StreamText read_chat_stream(const std::string& sse) {
    StreamText t;
    for (const std::string& p : test::sse_payloads(sse)) {
        if (p == "[DONE]") {
            t.done = true;
            continue;
        }
        const json c = json::parse(p, nullptr, false);
        if (c.is_discarded()) continue;
        if (c.contains("usage") && c["usage"].is_object()) t.completion_tokens = c["usage"]["completion_tokens"];
        if (!c.contains("choices") || c["choices"].empty()) continue;
        const json& d = c["choices"][0]["delta"];
        if (d.contains("content") && d["content"].is_string()) t.content += d["content"].get<std::string>();
        if (d.contains("reasoning_content") && d["reasoning_content"].is_string())
            t.reasoning += d["reasoning_content"].get<std::string>();
    }
    return t;
}

// Starts a streaming chat on a raw socket and reads until its first chunk.
Conn start_stream(int port, const json& body, const std::vector<std::string>& headers, std::string& raw) {
    Conn c(port);
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(c.send_all(request_text("POST", "/v1/chat/completions", body.dump(), headers)));
    EXPECT_TRUE(c.read_until(raw, "data: {", 60s)) << raw;
    return c;
}

json lookup(const Server& s, const json& ids) {
    return curl(s.url("/v1/streams/lookup"), "POST", json{{"conversation_ids", ids}}.dump()).json_body();
}

bool wait_until_done(const Server& s, const std::string& id, std::chrono::seconds limit) {
    for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
        const json l = lookup(s, {id});
        if (l.is_array() && l.size() == 1 && l[0]["is_done"] == true) return true;
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

// The tokens the (one) slot holds: prompt and generated ones, so a cancelled
// request leaves fewer than it asked for.
int64_t cached_tokens(const Server& s) {
    const json slots = curl(s.url("/slots")).json_body();
    return slots.is_array() && !slots.empty() ? slots[0]["n_cached_tokens"].get<int64_t>() : -1;
}

bool wait_slots_idle(const Server& s, std::chrono::seconds limit) {
    for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
        const json slots = curl(s.url("/slots")).json_body();
        bool idle = slots.is_array();
        for (const auto& slot : slots) idle = idle && slot["is_processing"] == false;
        if (idle) return true;
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

class ResumableStreams : public SharedServerTest<ResumableStreams> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-c", "4096", "-np", "1", "-t", "2"};
    }
};

TEST_F(ResumableStreams, the_answer_goes_on_after_its_client_left_and_replays_from_any_byte) {
    const int max_tokens = 1500;
    json body = chat(max_tokens, true);
    body["stream_options"] = {{"include_usage", true}};
    {
        std::string first;
        Conn c = start_stream(port_of(*server_), body, {"X-Conversation-Id: conv-left"}, first);
        // The client leaves after the first chunk.
    }
    ASSERT_TRUE(wait_until_done(*server_, "conv-left", 120s)) << lookup(*server_, {"conv-left"}).dump();
    const json info = lookup(*server_, {"conv-left"})[0];
    EXPECT_EQ(info["conversation_id"], "conv-left");
    EXPECT_GT(info["completed_at"].get<int64_t>(), 0);
    EXPECT_GE(info["completed_at"].get<int64_t>(), info["started_at"].get<int64_t>());

    auto replay = curl(server_->url("/v1/stream?conv_id=conv-left"));
    ASSERT_EQ(replay.status, 200) << replay.body;
    EXPECT_NE(replay.headers.find("text/event-stream"), std::string::npos) << replay.headers;
    EXPECT_EQ(replay.body.size(), info["total_bytes"].get<size_t>());
    const StreamText t = read_chat_stream(replay.body);
    EXPECT_TRUE(t.done);
    EXPECT_EQ(t.completion_tokens, max_tokens) << "the whole answer was generated without its client";
    // The same text as the request answered in one piece.
    auto whole = curl(server_->url("/v1/chat/completions"), "POST", chat(max_tokens, false).dump());
    ASSERT_EQ(whole.status, 200) << whole.body;
    EXPECT_EQ(t.content, whole.json_body()["choices"][0]["message"]["content"].get<std::string>());

    // From byte N: the rest, in both spellings of the route.
    for (const char* path : {"/v1/stream?conv_id=conv-left&from=1000", "/v1/stream/conv-left?from=1000"}) {
        auto tail = curl(server_->url(path));
        ASSERT_EQ(tail.status, 200) << path;
        EXPECT_EQ(tail.body, replay.body.substr(1000)) << path;
    }
    auto end = curl(server_->url("/v1/stream?conv_id=conv-left&from=" + std::to_string(replay.body.size())));
    EXPECT_EQ(end.status, 200);
    EXPECT_TRUE(end.body.empty());
}

TEST_F(ResumableStreams, a_reader_follows_a_stream_that_is_still_generating) {
    std::string first;
    Conn c = start_stream(port_of(*server_), chat(1500, true), {"X-Conversation-Id: conv-follow"}, first);
    // A second reader joins while the answer is being written and gets all of it.
    auto replay = curl(server_->url("/v1/stream?conv_id=conv-follow"));
    ASSERT_EQ(replay.status, 200);
    std::string rest;
    while (c.read_for(rest, 100ms)) {
    }
    const std::string original = test::parse_reply(first + rest).body;
    EXPECT_EQ(replay.body, original);
    EXPECT_TRUE(read_chat_stream(replay.body).done);
}

TEST_F(ResumableStreams, delete_cancels_the_generation_and_frees_the_slot) {
    std::string first;
    Conn c = start_stream(port_of(*server_), chat(4000, true), {"X-Conversation-Id: conv-stop"}, first);
    auto del = curl(server_->url("/v1/stream?conv_id=conv-stop"), "DELETE");
    EXPECT_EQ(del.status, 204);
    EXPECT_TRUE(wait_slots_idle(*server_, 10s)) << "the slot kept generating";
    EXPECT_LT(cached_tokens(*server_), 2000) << "the answer ran on";
    EXPECT_EQ(curl(server_->url("/v1/stream?conv_id=conv-stop")).status, 404);
    EXPECT_TRUE(lookup(*server_, {"conv-stop"}).empty());
    // The original client's stream ends without [DONE].
    std::string rest;
    while (c.read_for(rest, 100ms)) {
    }
    EXPECT_EQ((first + rest).find("[DONE]"), std::string::npos);
    // Deleting again, or an id never seen, is still 204 (as llama-server).
    EXPECT_EQ(curl(server_->url("/v1/stream/conv-stop"), "DELETE").status, 204);
}

TEST_F(ResumableStreams, a_newer_request_on_the_same_conversation_replaces_the_older) {
    std::string first_raw, second_raw;
    Conn first = start_stream(port_of(*server_), chat(4000, true), {"X-Conversation-Id: conv-twice"}, first_raw);
    // -np 1: the second waits for the slot, which the first frees once replaced.
    Conn second(port_of(*server_));
    ASSERT_TRUE(second.send_all(
        request_text("POST", "/v1/chat/completions", chat(20, true).dump(), {"X-Conversation-Id: conv-twice"})));
    while (first.read_for(first_raw, 100ms)) {
    }
    EXPECT_EQ(first_raw.find("[DONE]"), std::string::npos) << "the replaced answer was finished";
    ASSERT_TRUE(second.read_until(second_raw, "[DONE]", 60s)) << second_raw;
    ASSERT_TRUE(wait_until_done(*server_, "conv-twice", 30s));
    auto replay = curl(server_->url("/v1/stream?conv_id=conv-twice"));
    EXPECT_EQ(replay.body, test::parse_reply(second_raw).body);
}

TEST_F(ResumableStreams, without_the_header_a_client_that_leaves_cancels) {
    {
        std::string first;
        Conn c = start_stream(port_of(*server_), chat(4000, true), {}, first);
    }
    EXPECT_TRUE(wait_slots_idle(*server_, 10s));
    EXPECT_LT(cached_tokens(*server_), 2000) << "the answer ran on without its client";
}

TEST_F(ResumableStreams, bad_requests_name_the_problem) {
    auto no_id = curl(server_->url("/v1/stream"));
    EXPECT_EQ(no_id.status, 400);
    EXPECT_EQ(no_id.json_body()["error"]["message"], "Missing conversation id in path");
    auto unknown = curl(server_->url("/v1/stream?conv_id=never"));
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(unknown.json_body()["error"]["message"], "Stream not found or expired");
    EXPECT_EQ(unknown.json_body()["error"]["type"], "not_found_error");
    // A session to ask about: a short answer kept after it ended.
    auto r = curl(server_->url("/v1/chat/completions"), "POST", chat(4, true).dump(), {"X-Conversation-Id: conv-bad"});
    ASSERT_EQ(r.status, 200);
    auto from = curl(server_->url("/v1/stream?conv_id=conv-bad&from=-1"));
    EXPECT_EQ(from.status, 400);
    EXPECT_EQ(from.json_body()["error"]["message"], "Invalid 'from' offset");
    EXPECT_EQ(curl(server_->url("/v1/streams/lookup"), "POST", "{not json").status, 400);
    // A request refused before it streamed leaves no session behind.
    json too_long = chat(4, true);
    too_long["messages"][0]["content"] = std::string(20000, 'x');
    auto refused =
        curl(server_->url("/v1/chat/completions"), "POST", too_long.dump(), {"X-Conversation-Id: conv-refused"});
    EXPECT_EQ(refused.status, 400) << refused.body;
    EXPECT_TRUE(lookup(*server_, {"conv-refused"}).empty());
    // Non-streaming requests ignore the header.
    curl(server_->url("/v1/chat/completions"), "POST", chat(4, false).dump(), {"X-Conversation-Id: conv-plain"});
    EXPECT_TRUE(lookup(*server_, {"conv-plain"}).empty());
}

// ---------------------------------------------------------------------------
// /v1/chat/completions/control on the Nemotron fixture, whose template opens
// <think> in the prompt; `replay` (--allow-replay) makes the answer a long
// thought that would not end by itself.

class CompletionControl : public SharedServerTest<CompletionControl> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m",
                test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(),
                "-c",
                "8192",
                "-np",
                "2",
                "-t",
                "2",
                "--allow-replay"};
    }
};

std::string long_thought() {
    std::string text;
    for (int i = 0; i < 2500; ++i) text += " license";
    return text;
}

json thinking_request(bool control) {
    json b = {{"messages", json::array({{{"role", "user"}, {"content", "Think about licenses."}}})},
              {"max_tokens", 6000},
              {"stream", true},
              {"replay", long_thought()},
              {"reasoning_budget_message", "Enough thinking."}};
    if (control) b["reasoning_control"] = true;
    return b;
}

std::string completion_id(const std::string& raw) {
    const size_t at = raw.find("\"id\":\"chatcmpl-");
    return at == std::string::npos ? "" : raw.substr(at + 6, raw.find('"', at + 6) - (at + 6));
}

json control(const Server& s, const json& body, int expect_status = 200) {
    auto r = curl(s.url("/v1/chat/completions/control"), "POST", body.dump());
    EXPECT_EQ(r.status, expect_status) << r.body;
    return r.json_body();
}

TEST_F(CompletionControl, reasoning_end_closes_the_thought_and_the_answer_goes_on) {
    std::string raw;
    Conn c = start_stream(port_of(*server_), thinking_request(true), {}, raw);
    const std::string id = completion_id(raw);
    ASSERT_FALSE(id.empty()) << raw;
    const json ok = control(*server_, {{"id", id}, {"action", "reasoning_end"}});
    EXPECT_EQ(ok, json({{"success", true}}));
    ASSERT_TRUE(c.read_until(raw, "[DONE]", 120s)) << raw.substr(0, 2000);
    const StreamText t = read_chat_stream(test::parse_reply(raw).body);
    // The thought stops early with the budget message; the rest of the replay is the answer.
    EXPECT_NE(t.reasoning.find("Enough thinking."), std::string::npos) << t.reasoning.substr(0, 500);
    EXPECT_LT(t.reasoning.size(), long_thought().size());
    EXPECT_NE(t.content.find("license"), std::string::npos) << t.content.substr(0, 500);
    // Finished: the id no longer reaches anything.
    EXPECT_EQ(control(*server_, {{"id", id}, {"action", "reasoning_end"}})["message"],
              "no active completion for this id");
}

TEST_F(CompletionControl, refuses_completions_without_reasoning_control_and_bad_bodies) {
    std::string raw;
    Conn c = start_stream(port_of(*server_), thinking_request(false), {}, raw);
    const std::string id = completion_id(raw);
    ASSERT_FALSE(id.empty()) << raw;
    const json refused = control(*server_, {{"id", id}, {"action", "reasoning_end"}});
    EXPECT_EQ(refused["success"], false);
    EXPECT_EQ(refused["message"], "reasoning control not enabled for this completion");
    ASSERT_TRUE(c.read_until(raw, "[DONE]", 120s));
    const StreamText t = read_chat_stream(test::parse_reply(raw).body);
    EXPECT_EQ(t.reasoning.find("Enough thinking."), std::string::npos) << "closed without control";

    EXPECT_EQ(control(*server_, {{"id", "chatcmpl-none"}, {"action", "reasoning_end"}}),
              json({{"success", false}, {"message", "no active completion for this id"}}));
    EXPECT_EQ(control(*server_, {{"action", "reasoning_end"}}, 400)["error"]["message"], "missing completion id");
    EXPECT_EQ(control(*server_, {{"id", id}, {"action", "pause"}}, 400)["error"]["message"], "unknown control action");
}

}  // namespace
}  // namespace moeserve
