// End to end: the real `moeserve serve` on the tiny Qwen3-MoE fixture model
// (F16, f16 cache), driven by curl and by the official OpenAI SDK for Node.
// Every server a test starts is killed when the test ends, pass or fail.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <map>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "fixtures.h"
#include "run_command.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;
using test::curl;
using test::have_node_modules;
using test::HttpResult;
using test::run_node;
using test::Server;
using test::sse_payloads;

std::string model_path() {
    return test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string();
}

// One server shared by the tests that do not need special flags: 4 slots of 512.
class ServerE2E : public test::SharedServerTest<ServerE2E> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m", model_path(), "-np", "4", "-c", "2048", "--metrics", "-t", "2"};
    }
};

const char* kChat = R"({"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hello!"}],
                        "max_tokens":16,"temperature":0,"ignore_eos":true})";

TEST_F(ServerE2E, health_models_props_and_unknown_routes) {
    auto h = curl(server_->url("/health"));
    EXPECT_EQ(h.status, 200);
    EXPECT_EQ(h.json_body(), json::parse(R"({"status":"ok"})"));
    auto m = curl(server_->url("/v1/models")).json_body();
    EXPECT_EQ(m["object"], "list");
    EXPECT_EQ(m["data"][0]["id"], model_path());
    EXPECT_EQ(m["data"][0]["meta"]["n_ctx"], 512);
    auto p = curl(server_->url("/props")).json_body();
    EXPECT_EQ(p["total_slots"], 4);
    EXPECT_EQ(p["default_generation_settings"]["n_ctx"], 512);
    EXPECT_EQ(p["ui"], true);  // the chat page below
    EXPECT_EQ(p["ui_settings"], json::object());
    auto nf = curl(server_->url("/no/such/route"));
    EXPECT_EQ(nf.status, 404);
    EXPECT_EQ(nf.json_body()["error"]["type"], "not_found_error");
    // llama-server's routes for features moeserve lacks answer as llama-server's do when off.
    for (const char* route : {"/rerank", "/v1/rerank", "/reranking", "/v1/audio/transcriptions"}) {
        auto r = curl(server_->url(route), "POST", "{}");
        EXPECT_EQ(r.status, 501) << route;
        EXPECT_EQ(r.json_body()["error"]["type"], "not_supported_error") << route;
    }
    for (const char* route : {"/tools", "/cors-proxy"}) {
        auto r = curl(server_->url(route));
        EXPECT_EQ(r.status, 403) << route;
        EXPECT_EQ(r.json_body(),
                  json::parse(R"({"error":{"message":"this feature is disabled","type":"feature_disabled"}})"));
    }
    // The built-in chat page, which talks to the server's own chat route.
    auto page = curl(server_->url("/"));
    EXPECT_EQ(page.status, 200);
    EXPECT_NE(page.headers.find("text/html"), std::string::npos) << page.headers;
    EXPECT_NE(page.body.find("<title>moeserve</title>"), std::string::npos);
    EXPECT_NE(page.body.find("fetch(\"v1/chat/completions\""), std::string::npos);
    // No LoRA adapters are loaded: an empty list, which only an empty update leaves as it is.
    EXPECT_EQ(curl(server_->url("/lora-adapters")).json_body(), json::array());
    EXPECT_EQ(curl(server_->url("/lora-adapters"), "POST", "[]").status, 200);
    auto lora = curl(server_->url("/lora-adapters"), "POST", R"([{"id": 0, "scale": 0.5}])");
    EXPECT_EQ(lora.status, 400);
    EXPECT_NE(lora.body.find("id 0"), std::string::npos) << lora.body;
}

// llama-server's log lines that users grep: the KV cache's summary at load (N = the
// cells of one slot; K = 2 layers x 2,048 cells (4 slots of 512) x 2 KV heads x 128 x 2
// bytes = 2.00 MiB, V the same), and each finished request's timings.
TEST_F(ServerE2E, logs_the_kv_cache_and_each_requests_timings_as_llama_server) {
    ASSERT_EQ(curl(server_->url("/completion"), "POST", R"({"prompt":"Hello","n_predict":3})").status, 200);
    const std::string log = server_->log_with("      total time =");
    EXPECT_NE(log.find("llama_kv_cache: size =     4.00 MiB (   512 cells,   2 layers,  4/4 seqs), K (f16):     2.00 "
                       "MiB, V (f16):     2.00 MiB"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("slot print_timing: id"), std::string::npos) << log;
    EXPECT_NE(log.find("prompt eval time ="), std::string::npos) << log;
    EXPECT_NE(log.find("       eval time ="), std::string::npos) << log;
    EXPECT_NE(log.find("      total time ="), std::string::npos) << log;
}

TEST_F(ServerE2E, chat_usage_counts_the_templated_prompt) {
    auto templated = curl(server_->url("/apply-template"), "POST", kChat).json_body();
    const std::string prompt = templated["prompt"];
    EXPECT_EQ(prompt,
              "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
              "<|im_start|>assistant\n");
    auto tok = curl(server_->url("/tokenize"), "POST", json{{"content", prompt}}.dump()).json_body();
    auto r = curl(server_->url("/v1/chat/completions"), "POST", kChat);
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = r.json_body();
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["usage"]["prompt_tokens"], tok["tokens"].size());
    EXPECT_EQ(j["usage"]["completion_tokens"], 16);
    EXPECT_EQ(j["usage"]["total_tokens"], tok["tokens"].size() + 16);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    EXPECT_TRUE(j["timings"].contains("predicted_per_second"));
    EXPECT_NE(r.headers.find("application/json"), std::string::npos);
}

TEST_F(ServerE2E, streaming_chat_sends_openai_chunks_and_done) {
    json body = json::parse(kChat);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    auto r = curl(server_->url("/v1/chat/completions"), "POST", body.dump());
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.headers.find("text/event-stream"), std::string::npos);
    auto events = sse_payloads(r.body);
    ASSERT_GE(events.size(), 4u);
    EXPECT_EQ(events.back(), "[DONE]");
    auto first = json::parse(events[0]);
    EXPECT_EQ(first["object"], "chat.completion.chunk");
    EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
    std::string text, finish;
    json usage;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
        auto e = json::parse(events[i]);
        EXPECT_EQ(e["id"], first["id"]);
        if (e.contains("usage")) usage = e["usage"];
        if (e["choices"].empty()) continue;
        const auto& c = e["choices"][0];
        if (c["delta"].contains("content") && c["delta"]["content"].is_string()) text += c["delta"]["content"];
        if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
    }
    EXPECT_EQ(finish, "length");
    EXPECT_EQ(usage["completion_tokens"], 16);
    auto plain = curl(server_->url("/v1/chat/completions"), "POST", kChat).json_body();
    EXPECT_EQ(text, plain["choices"][0]["message"]["content"]);  // greedy: the same text either way
}

TEST_F(ServerE2E, stop_strings_cut_the_text_and_are_not_emitted) {
    const std::string base = R"({"prompt":"The history of","max_tokens":40,"temperature":0,"ignore_eos":true)";
    auto full = curl(server_->url("/v1/completions"), "POST", base + "}").json_body();
    const std::string text = full["choices"][0]["text"];
    // A stop string of three ASCII letters from the second half of the text
    // (random weights also produce bytes that are not valid UTF-8).
    std::string stop;
    for (size_t i = text.size() / 2; i + 3 <= text.size() && stop.empty(); ++i)
        if (std::isalpha(static_cast<unsigned char>(text[i])) &&
            std::isalpha(static_cast<unsigned char>(text[i + 1])) &&
            std::isalpha(static_cast<unsigned char>(text[i + 2])))
            stop = text.substr(i, 3);
    ASSERT_FALSE(stop.empty()) << text;
    for (bool stream : {false, true}) {
        json body = json::parse(base + "}");
        body["stop"] = json::array({stop});
        body["stream"] = stream;
        auto r = curl(server_->url("/v1/completions"), "POST", body.dump());
        std::string got, finish;
        if (!stream) {
            got = r.json_body()["choices"][0]["text"];
            finish = r.json_body()["choices"][0]["finish_reason"];
        } else {
            auto events = sse_payloads(r.body);
            ASSERT_EQ(events.back(), "[DONE]");
            for (size_t i = 0; i + 1 < events.size(); ++i) {
                auto e = json::parse(events[i]);
                got += e["choices"][0]["text"].get<std::string>();
                if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
                if (i + 2 == events.size()) EXPECT_TRUE(e.contains("usage"));
            }
        }
        EXPECT_EQ(got, text.substr(0, text.find(stop))) << "stream=" << stream;
        EXPECT_EQ(finish, "stop");
    }
}

TEST_F(ServerE2E, native_completion_and_tokenizer_routes) {
    auto r = curl(server_->url("/completion"), "POST",
                  R"({"prompt":"Hello","n_predict":5,"temperature":0,"ignore_eos":true,"n_probs":2})");
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = r.json_body();
    EXPECT_EQ(j["tokens_predicted"], 5);
    EXPECT_EQ(j["stop_type"], "limit");
    EXPECT_EQ(j["stop"], true);
    EXPECT_EQ(j["completion_probabilities"].size(), 5u);
    EXPECT_EQ(j["completion_probabilities"][0]["top_logprobs"].size(), 2u);
    auto s = curl(server_->url("/completion"), "POST", R"({"prompt":"Hello","n_predict":3,"stream":true})");
    auto events = sse_payloads(s.body);
    ASSERT_FALSE(events.empty());
    EXPECT_NE(events.back(), "[DONE]");  // the native stream has no [DONE]
    EXPECT_EQ(json::parse(events.back())["stop"], true);

    // An empty prompt (no BOS in this model): an immediate empty answer, as llama-server's.
    auto empty = curl(server_->url("/completion"), "POST", R"({"prompt":""})");
    ASSERT_EQ(empty.status, 200) << empty.body;
    EXPECT_EQ(empty.json_body()["content"], "");
    EXPECT_EQ(empty.json_body()["tokens_predicted"], 0);
    EXPECT_EQ(empty.json_body()["stop_type"], "none");
    auto empty_oai = curl(server_->url("/v1/completions"), "POST", R"({"prompt":""})");
    ASSERT_EQ(empty_oai.status, 200) << empty_oai.body;
    EXPECT_EQ(empty_oai.json_body()["choices"][0]["text"], "");
    EXPECT_EQ(empty_oai.json_body()["choices"][0]["finish_reason"], "length");
    auto empty_stream =
        sse_payloads(curl(server_->url("/v1/completions"), "POST", R"({"prompt":"","stream":true})").body);
    ASSERT_FALSE(empty_stream.empty());
    EXPECT_EQ(empty_stream.back(), "[DONE]");

    auto tok = curl(server_->url("/tokenize"), "POST", R"({"content":"Hello world","with_pieces":true})").json_body();
    ASSERT_FALSE(tok["tokens"].empty());
    json ids = json::array();
    std::string pieces;
    for (const auto& t : tok["tokens"]) ids.push_back(t["id"]), pieces += t["piece"].get<std::string>();
    EXPECT_EQ(pieces, "Hello world");
    auto detok = curl(server_->url("/detokenize"), "POST", json{{"tokens", ids}}.dump()).json_body();
    EXPECT_EQ(detok["content"], "Hello world");
}

// timings_per_token and return_progress (spec server-behaviour §5.6), and the
// prompt's length in the native stream's intermediate chunks.
TEST_F(ServerE2E, streams_carry_prompt_progress_and_timings_per_token_when_asked) {
    const json native = {{"prompt", "Hello there, how are you today?"},
                         {"n_predict", 3},
                         {"temperature", 0},
                         {"ignore_eos", true},
                         {"stream", true},
                         {"cache_prompt", false},
                         {"return_progress", true},
                         {"timings_per_token", true}};
    auto r = curl(server_->url("/completion"), "POST", native.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    auto events = sse_payloads(r.body);
    ASSERT_GE(events.size(), 5u);  // progress at the start and after the prompt, 3 tokens, the final object
    const json start = json::parse(events[0]), done = json::parse(events[1]);
    const int64_t n_prompt = json::parse(events.back())["tokens_evaluated"];
    ASSERT_TRUE(start.contains("prompt_progress")) << events[0];
    EXPECT_EQ(start["prompt_progress"]["total"], n_prompt);
    EXPECT_EQ(start["prompt_progress"]["processed"], 0);
    EXPECT_EQ(done["prompt_progress"]["processed"], n_prompt);
    EXPECT_EQ(start["content"], "");
    EXPECT_EQ(start["tokens_evaluated"], n_prompt);
    int tokens = 0;
    for (size_t i = 2; i + 1 < events.size(); ++i) {
        const json e = json::parse(events[i]);
        EXPECT_FALSE(e.contains("prompt_progress"));
        EXPECT_EQ(e["tokens_evaluated"], n_prompt);
        ASSERT_TRUE(e.contains("timings")) << events[i];
        EXPECT_EQ(e["timings"]["prompt_n"], n_prompt);
        EXPECT_EQ(e["timings"]["predicted_n"], ++tokens);
    }
    EXPECT_EQ(tokens, 3);

    // Chat: progress rides on role chunks; timings on each token's chunk; neither without the fields.
    json chat = json::parse(kChat);
    chat["stream"] = true;
    chat["max_tokens"] = 3;
    chat["return_progress"] = true;
    chat["timings_per_token"] = true;
    auto c = curl(server_->url("/v1/chat/completions"), "POST", chat.dump());
    ASSERT_EQ(c.status, 200) << c.body;
    auto chunks = sse_payloads(c.body);
    const json p0 = json::parse(chunks[0]);
    EXPECT_EQ(p0["choices"][0]["delta"]["role"], "assistant");
    EXPECT_TRUE(p0.contains("prompt_progress")) << chunks[0];
    int with_timings = 0;
    for (size_t i = 0; i + 1 < chunks.size(); ++i) with_timings += json::parse(chunks[i]).contains("timings");
    EXPECT_GE(with_timings, 3);  // every token's chunk, and the final one
    chat.erase("return_progress");
    chat.erase("timings_per_token");
    auto plain = sse_payloads(curl(server_->url("/v1/chat/completions"), "POST", chat.dump()).body);
    for (size_t i = 0; i + 2 < plain.size(); ++i) {  // all but the finish chunk and [DONE]
        EXPECT_FALSE(json::parse(plain[i]).contains("prompt_progress")) << plain[i];
        EXPECT_FALSE(json::parse(plain[i]).contains("timings")) << plain[i];
    }
}

TEST_F(ServerE2E, errors_have_openai_shapes_and_status_codes) {
    std::string big = R"({"messages":[{"role":"user","content":")";
    for (int i = 0; i < 600; ++i) big += "word ";
    big += R"("}]})";
    auto over = curl(server_->url("/v1/chat/completions"), "POST", big);
    EXPECT_EQ(over.status, 400);
    auto e = over.json_body()["error"];
    EXPECT_EQ(e["type"], "exceed_context_size_error");
    EXPECT_EQ(e["n_ctx"], 512);
    EXPECT_GT(e["n_prompt_tokens"].get<int>(), 512);
    EXPECT_EQ(e["message"], "request (" + std::to_string(e["n_prompt_tokens"].get<int>()) +
                                " tokens) exceeds the available context size (512 tokens), try increasing it");
    // A streaming request gets the same plain HTTP error, not SSE.
    json stream_big = json::parse(big);
    stream_big["stream"] = true;
    auto over_stream = curl(server_->url("/v1/chat/completions"), "POST", stream_big.dump());
    EXPECT_EQ(over_stream.status, 400);
    EXPECT_EQ(over_stream.json_body()["error"]["type"], "exceed_context_size_error");

    auto bad_json = curl(server_->url("/v1/chat/completions"), "POST", "{\"messages\": [");
    EXPECT_EQ(bad_json.status, 400);
    EXPECT_EQ(bad_json.json_body()["error"]["type"], "invalid_request_error");
    EXPECT_EQ(bad_json.json_body()["error"]["code"], 400);

    auto bad_type = curl(server_->url("/v1/chat/completions"), "POST",
                         R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"})");
    EXPECT_EQ(bad_type.status, 400);
    EXPECT_NE(bad_type.json_body()["error"]["message"].get<std::string>().find("max_tokens"), std::string::npos);

    auto no_prompt = curl(server_->url("/v1/completions"), "POST", R"({"max_tokens":3})");
    EXPECT_EQ(no_prompt.status, 400);
    auto bad_messages = curl(server_->url("/v1/chat/completions"), "POST", R"({"messages":"hi"})");
    EXPECT_EQ(bad_messages.status, 400);
    auto tools =
        curl(server_->url("/v1/chat/completions"), "POST",
             R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":7}}]})");
    EXPECT_EQ(tools.status, 400);
    EXPECT_NE(tools.body.find("tools[0].function.name"), std::string::npos) << tools.body;
    // Combinations llama-server refuses: tools with a custom grammar, logprobs with tools and streaming.
    json with_tools = {
        {"messages", {{{"role", "user"}, {"content", "hi"}}}},
        {"max_tokens", 2},
        {"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}}}}};
    json grammar = with_tools;
    grammar["grammar"] = "root ::= \"a\"";
    auto refused = curl(server_->url("/v1/chat/completions"), "POST", grammar.dump());
    EXPECT_EQ(refused.status, 400);
    EXPECT_EQ(refused.json_body()["error"]["message"], "Cannot use custom grammar constraints with tools.");
    grammar["tool_choice"] = "none";  // no tool calls to parse: the grammar alone
    EXPECT_EQ(curl(server_->url("/v1/chat/completions"), "POST", grammar.dump()).status, 200);
    json lp = with_tools;
    lp["logprobs"] = true;
    lp["stream"] = true;
    refused = curl(server_->url("/v1/chat/completions"), "POST", lp.dump());
    EXPECT_EQ(refused.status, 400);
    EXPECT_EQ(refused.json_body()["error"]["message"], "logprobs is not supported with tools + stream");
    lp["stream"] = false;
    EXPECT_EQ(curl(server_->url("/v1/chat/completions"), "POST", lp.dump()).status, 200);
    // The server is still fine.
    EXPECT_EQ(curl(server_->url("/health")).status, 200);
}

TEST_F(ServerE2E, killed_client_frees_its_slot_and_metrics_and_slots_show_it) {
    const fs::path out = fs::temp_directory_path() / "moeserve-tests" / "killed-client.out";
    fs::remove(out);
    const std::string body =
        R"({"messages":[{"role":"user","content":"Tell a long story."}],"max_tokens":400,"ignore_eos":true,"stream":true})";
    pid_t pid = fork();
    if (pid == 0) {
        std::vector<std::string> argv = {"curl",          "-sN", "-o",
                                         out.string(),    "-H",  "Content-Type: application/json",
                                         "--data-binary", body,  server_->url("/v1/chat/completions")};
        std::vector<char*> c;
        for (auto& a : argv) c.push_back(a.data());
        c.push_back(nullptr);
        execvp("curl", c.data());
        _exit(127);
    }
    bool streaming = false;
    for (int i = 0; i < 200 && !streaming; ++i) {
        streaming = test::slurp(out).find("data: ") != std::string::npos;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(streaming);
    auto busy = curl(server_->url("/slots")).json_body();
    int processing = 0;
    for (const auto& s : busy) processing += s["is_processing"].get<bool>();
    EXPECT_EQ(processing, 1);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    bool freed = false;
    for (int i = 0; i < 100 && !freed; ++i) {
        auto slots = curl(server_->url("/slots")).json_body();
        freed = true;
        for (const auto& s : slots) freed &= !s["is_processing"].get<bool>();
        if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(freed) << "the slot of a killed client is still busy";
    const std::string metrics = curl(server_->url("/metrics")).body;
    EXPECT_NE(metrics.find("llamacpp:requests_processing 0"), std::string::npos) << metrics;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(metrics, m, std::regex("moeserve:requests_cancelled_total ([0-9]+)")));
    EXPECT_GE(std::stoi(m[1]), 1);
    EXPECT_NE(metrics.find("# TYPE llamacpp:prompt_tokens_total counter"), std::string::npos);
    EXPECT_NE(metrics.find("moeserve:slot_state{slot=\"3\"}"), std::string::npos);
}

TEST_F(ServerE2E, openai_sdk_chat_completions_streams_and_errors) {
    if (!have_node_modules())
        GTEST_SKIP() << "tests/e2e/server/node_modules missing: run npm ci there (make test does)";
    std::string output;
    EXPECT_EQ(run_node("sdk_basic.mjs", {server_->url("/v1")}, output), 0) << output;
}

TEST_F(ServerE2E, sixteen_concurrent_streams_complete_with_the_sequential_greedy_text) {
    if (!have_node_modules())
        GTEST_SKIP() << "tests/e2e/server/node_modules missing: run npm ci there (make test does)";
    std::string output;
    EXPECT_EQ(run_node("sdk_concurrency.mjs", {server_->url("/v1"), "16"}, output), 0) << output;
    auto metrics = curl(server_->url("/metrics")).body;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(metrics, m, std::regex("llamacpp:n_busy_slots_per_decode ([0-9.e+]+)")));
    EXPECT_GT(std::stod(m[1]), 1.0);  // the concurrent requests were batched together
    // The decode-only steps: some tokens, no more than the model evaluated, and their time. (Not
    // bounded by tokens_predicted_total: this shared server also ran requests whose clients left,
    // whose tokens count as decoded but not as predicted.)
    ASSERT_TRUE(std::regex_search(metrics, m, std::regex("moeserve:decode_steps_tokens_total ([0-9.e+]+)")));
    const double decode_tokens = std::stod(m[1]);
    ASSERT_TRUE(std::regex_search(metrics, m, std::regex("moeserve:tokens_evaluated_total ([0-9.e+]+)")));
    EXPECT_GT(decode_tokens, 0.0);
    EXPECT_LE(decode_tokens, std::stod(m[1]));
    ASSERT_TRUE(std::regex_search(metrics, m, std::regex("moeserve:decode_steps_seconds_total ([0-9.e+-]+)")));
    const double decode_s = std::stod(m[1]);
    EXPECT_GT(decode_s, 0.0);
    // Their forward passes: part of that time, not all of it (sampling and streaming are the rest).
    ASSERT_TRUE(std::regex_search(metrics, m, std::regex("moeserve:decode_steps_forward_seconds_total ([0-9.e+-]+)")));
    EXPECT_GT(std::stod(m[1]), 0.0);
    EXPECT_LT(std::stod(m[1]), decode_s);
}

// The chat page's own script, run by node over a small DOM stand-in against a real server
// (tests/e2e/server/webui_smoke.mjs): a streamed answer with its stats, the saved
// conversation, a stop, a new chat.
TEST(ServerE2EFlags, web_ui_chats_through_the_api) {
    MOESERVE_REQUIRE_FIXTURES();
    if (!have_node_modules()) GTEST_SKIP() << "no node/npm on this machine (make test installs the e2e clients)";
    Server s({"-m", model_path(), "-c", "4096", "-np", "2", "-t", "2"});
    ASSERT_TRUE(s.ready()) << s.log();
    std::string output;
    EXPECT_EQ(run_node("webui_smoke.mjs", {s.url("/")}, output), 0) << output;
}

// A thinking budget: the Nemotron template opens <think> in the prompt, so the answer starts
// inside the block; after `budget` tokens the server writes the message and the closing marker
// instead of sampling (the logprobs show each generated token), and the reader splits there.
TEST(ServerE2EFlags, thinking_budget_closes_the_reasoning_after_its_tokens) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(), "-c", "2048", "-t", "2",
              "--reasoning-budget", "6"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto tokens_of = [](const json& answer) {
        std::vector<std::string> out;
        for (const auto& t : answer["choices"][0]["logprobs"]["content"]) out.push_back(t["token"]);
        return out;
    };
    auto join = [](const std::vector<std::string>& t, size_t from, size_t to) {
        std::string out;
        for (size_t i = from; i < std::min(to, t.size()); ++i) out += t[i];
        return out;
    };
    json body = {{"messages", json::array({{{"role", "user"}, {"content", "Think about licenses."}}})},
                 {"max_tokens", 24},
                 {"temperature", 0},
                 {"logprobs", true}};
    for (const auto& [budget, message] : std::vector<std::pair<int, std::string>>{{6, ""}, {3, "Time is up."}}) {
        SCOPED_TRACE("budget " + std::to_string(budget));
        json b = body;
        if (budget != 6) b["thinking_budget_tokens"] = budget;  // the request's budget over the server's
        if (!message.empty()) b["reasoning_budget_message"] = message;
        auto r = curl(s.url("/v1/chat/completions"), "POST", b.dump());
        ASSERT_EQ(r.status, 200) << r.body;
        const json answer = r.json_body();
        const auto t = tokens_of(answer);
        ASSERT_GT(t.size(), static_cast<size_t>(budget) + 3) << r.body;
        EXPECT_EQ(join(t, 0, budget).find("</think>"), std::string::npos) << "the model closed the block itself";
        const std::string forced = message + "\n</think>\n\n";
        EXPECT_EQ(join(t, budget, t.size()).substr(0, forced.size()), forced) << r.body;
        const json& msg = answer["choices"][0]["message"];
        // The reasoning is the budget's tokens and the message, trimmed.
        const std::string thought = join(t, 0, budget) + message;
        const size_t first = thought.find_first_not_of(" \n"), last = thought.find_last_not_of(" \n");
        const std::string trimmed = first == std::string::npos ? "" : thought.substr(first, last - first + 1);
        EXPECT_EQ(msg.value("reasoning_content", ""), trimmed) << r.body;
    }
    // A budget of -1 in the request lifts the server's.
    json unlimited = body;
    unlimited["thinking_budget_tokens"] = -1;
    const auto t = tokens_of(curl(s.url("/v1/chat/completions"), "POST", unlimited.dump()).json_body());
    EXPECT_EQ(join(t, 6, 6 + 3).find("</think>"), std::string::npos);
}

TEST(ServerE2EFlags, api_key_guards_every_route_but_health_and_models) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", model_path(), "--api-key", "sekrit", "-c", "1024", "-t", "2"});
    ASSERT_TRUE(s.ready()) << s.log();
    EXPECT_EQ(curl(s.url("/health")).status, 200);
    EXPECT_EQ(curl(s.url("/v1/models")).status, 200);
    EXPECT_EQ(curl(s.url("/")).status, 200);  // the chat page is public; its API calls carry the key
    auto no_key = curl(s.url("/v1/chat/completions"), "POST", kChat);
    EXPECT_EQ(no_key.status, 401);
    EXPECT_EQ(no_key.json_body()["error"]["type"], "authentication_error");
    EXPECT_EQ(no_key.json_body()["error"]["message"], "Invalid API Key");
    EXPECT_EQ(curl(s.url("/v1/chat/completions"), "POST", kChat, {"Authorization: Bearer wrong"}).status, 401);
    EXPECT_EQ(curl(s.url("/slots"), "GET", "", {"Authorization: Bearer wrong"}).status, 401);
    EXPECT_EQ(curl(s.url("/v1/chat/completions"), "POST", kChat, {"Authorization: Bearer sekrit"}).status, 200);
    if (have_node_modules()) {
        std::string output;  // the SDK with a wrong key sees a 401 AuthenticationError
        const std::string script =
            "import OpenAI from 'openai';const c=new OpenAI({baseURL:process.argv[1],apiKey:'bad',maxRetries:0});"
            "try{await c.chat.completions.create({model:'m',messages:[{role:'user',content:'x'}]});process.exit(1)}"
            "catch(e){process.exit(e instanceof OpenAI.AuthenticationError&&e.status===401?0:2)}";
        EXPECT_EQ(run_node("--input-type=module -e " + test::shell_quote(script), {s.url("/v1")}, output), 0) << output;
    }
}

TEST(ServerE2EFlags, full_queue_answers_503_with_retry_after) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", model_path(), "-np", "1", "--max-queue", "0", "-c", "1024", "-t", "2"});
    ASSERT_TRUE(s.ready()) << s.log();
    int busy_status = 0;
    std::thread busy([&] {
        busy_status =
            curl(s.url("/v1/completions"), "POST", R"({"prompt":"Go","max_tokens":1000,"ignore_eos":true})").status;
    });
    bool slot_busy = false;
    for (int i = 0; i < 200 && !slot_busy; ++i) {
        auto slots = curl(s.url("/slots")).json_body();
        slot_busy = slots.is_array() && slots[0]["is_processing"] == true;
        if (!slot_busy) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    bool saw_503 = false;
    for (int i = 0; i < 100 && !saw_503; ++i) {
        auto r = curl(s.url("/v1/completions"), "POST", R"({"prompt":"Hi","max_tokens":1})");
        if (r.status == 503) {
            saw_503 = true;
            EXPECT_EQ(r.json_body()["error"]["type"], "unavailable_error");
            EXPECT_NE(r.headers.find("Retry-After"), std::string::npos);
        }
    }
    busy.join();
    EXPECT_TRUE(slot_busy);
    EXPECT_TRUE(saw_503);
    EXPECT_EQ(busy_status, 200);
}

TEST(ServerE2EFlags, bad_flags_are_refused_at_start_and_sigterm_stops_cleanly) {
    MOESERVE_REQUIRE_FIXTURES();
    auto unknown = test::run_moeserve({"serve", "-m", model_path(), "--frobnicate"});
    EXPECT_EQ(unknown.status, 1);  // llama-server's status for an unknown flag or a bad value
    EXPECT_NE(unknown.err.find("--frobnicate"), std::string::npos);
    auto bad = test::run_moeserve({"serve", "-m", model_path(), "-ctk", "q9_9"});
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.err.find("q9_9"), std::string::npos);
    auto help = test::run_moeserve({"serve", "--help"});
    EXPECT_EQ(help.status, 0);
    EXPECT_NE(help.out.find("--ctx-size"), std::string::npos);
    auto missing = test::run_moeserve({"serve", "-m", "/nonexistent/model.gguf", "--port", "0"});
    EXPECT_EQ(missing.status, 1);
    // A chat template name that is not built in: refused with the names that are (not run as a
    // Jinja template that prints the word).
    auto unknown_template =
        test::run_moeserve({"serve", "-m", model_path(), "--chat-template", "llama3", "--port", "0"});
    EXPECT_EQ(unknown_template.status, 1);
    EXPECT_NE(unknown_template.err.find("chatml, qwen3, qwen3-coder, glm4, nemotron"), std::string::npos)
        << unknown_template.err;

    Server s({"-m", model_path(), "-c", "512", "-t", "2"});
    ASSERT_TRUE(s.ready()) << s.log();
    EXPECT_EQ(s.stop(SIGTERM), 0) << s.log();
}

// The RAM prompt cache through the real server (on by default, as in
// llama-server): with one slot, a conversation interrupted by another comes
// back with its prefix loaded from RAM, and /metrics counts it.
TEST(ServerE2EFlags, ram_prompt_cache_serves_a_returning_conversation) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", model_path(), "-c", "2048", "-np", "1", "-t", "2", "--metrics"});
    ASSERT_TRUE(s.ready()) << s.log();
    EXPECT_NE(s.log().find("prompt cache in RAM"), std::string::npos) << s.log();
    const std::string a = "Once upon a time in a quiet village by the sea there lived an old fisherman";
    auto complete = [&](const std::string& prompt) {
        json body = {{"prompt", prompt}, {"n_predict", 4}, {"temperature", 0}, {"ignore_eos", true}};
        HttpResult r = curl(s.url("/completion"), "POST", body.dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body();
    };
    const json first = complete(a);
    const int64_t n_a = first["tokens_evaluated"].get<int64_t>();
    complete("A completely different request about compilers and linkers, with nothing in common");
    const json back = complete(a + first["content"].get<std::string>() + " and then");
    EXPECT_GE(back["timings"]["cache_n"].get<int64_t>(), n_a) << back.dump();
    const std::string metrics = curl(s.url("/metrics")).body;
    EXPECT_NE(metrics.find("moeserve:prompt_cache_loads_total 1"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("moeserve:prompt_cache_saves_total 2"), std::string::npos) << metrics;

    Server off({"-m", model_path(), "-c", "2048", "-np", "1", "-t", "2", "--cache-ram", "0"});
    ASSERT_TRUE(off.ready()) << off.log();
    EXPECT_EQ(off.log().find("prompt cache in RAM"), std::string::npos) << off.log();
}

// POST /slots/{id}?action=save|restore|erase through the real server, with
// llama-server's response shapes and errors.
TEST(ServerE2EFlags, slot_actions_save_restore_and_erase_with_slot_save_path) {
    MOESERVE_REQUIRE_FIXTURES();
    const fs::path dir = fs::temp_directory_path() / "moeserve-tests" / ("slot-files-" + std::to_string(getpid()));
    fs::create_directories(dir);
    Server s({"-m", model_path(), "-c", "2048", "-np", "2", "-t", "2", "--slot-save-path", dir.string()});
    ASSERT_TRUE(s.ready()) << s.log();
    json body = {{"prompt", "The lighthouse keeper counted the ships"},
                 {"n_predict", 4},
                 {"temperature", 0},
                 {"ignore_eos", true},
                 {"id_slot", 1}};
    const json first = curl(s.url("/completion"), "POST", body.dump()).json_body();
    HttpResult r = curl(s.url("/slots/1?action=save"), "POST", R"({"filename":"keeper.bin"})");
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.json_body();
    EXPECT_EQ(j["id_slot"], 1);
    EXPECT_EQ(j["filename"], "keeper.bin");
    const int64_t n_saved = j["n_saved"].get<int64_t>();
    EXPECT_EQ(n_saved, first["tokens_evaluated"].get<int64_t>() + 3);
    EXPECT_EQ(j["n_written"].get<uint64_t>(), fs::file_size(dir / "keeper.bin"));
    EXPECT_TRUE(j["timings"].contains("save_ms"));

    r = curl(s.url("/slots/1?action=erase"), "POST", "{}");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json_body()["n_erased"], n_saved);
    r = curl(s.url("/slots/0?action=restore"), "POST", R"({"filename":"keeper.bin"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json_body()["n_restored"], n_saved);
    // The restored slot serves the same conversation from its cache.
    body["id_slot"] = 0;
    body["prompt"] = body["prompt"].get<std::string>() + first["content"].get<std::string>();
    const json again = curl(s.url("/completion"), "POST", body.dump()).json_body();
    EXPECT_GE(again["timings"]["cache_n"].get<int64_t>(), first["tokens_evaluated"].get<int64_t>()) << again.dump();

    EXPECT_EQ(curl(s.url("/slots/0?action=fly"), "POST", "{}").status, 400);
    r = curl(s.url("/slots/0?action=save"), "POST", R"({"filename":"../escape.bin"})");
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("Invalid filename"), std::string::npos) << r.body;
    r = curl(s.url("/slots/0?action=restore"), "POST", R"({"filename":"missing.bin"})");
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("cannot open"), std::string::npos) << r.body;
    EXPECT_EQ(curl(s.url("/slots/9?action=erase"), "POST", "{}").status, 400);

    Server plain({"-m", model_path(), "-c", "1024", "-np", "1", "-t", "1"});
    ASSERT_TRUE(plain.ready()) << plain.log();
    r = curl(plain.url("/slots/0?action=erase"), "POST", "{}");
    EXPECT_EQ(r.status, 501);
    EXPECT_NE(r.body.find("--slot-save-path"), std::string::npos) << r.body;
    fs::remove_all(dir);
}

// llama-server flags beyond the basics, through the real server: -rea off
// and --no-prefill-assistant change the rendered prompt, the --cors-* flags
// the CORS headers, --no-mmap still serves; --log-file takes the log.
TEST(ServerE2EFlags, llama_server_chat_cors_and_load_flags_take_effect) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m",
              model_path(),
              "-c",
              "1024",
              "-np",
              "1",
              "-t",
              "1",
              "--chat-template-file",
              test::fixture("templates/Qwen-Qwen3-0.6B.jinja").string(),
              "-rea",
              "off",
              "--no-prefill-assistant",
              "--cors-origins",
              "localhost",
              "--cors-credentials",
              "off",
              "--cors-methods",
              "GET, POST",
              "--no-mmap",
              "--no-webui"});
    ASSERT_TRUE(s.ready()) << s.log();
    EXPECT_EQ(curl(s.url("/")).status, 404);  // --no-webui
    EXPECT_EQ(curl(s.url("/props")).json_body()["ui"], false);

    const std::string closed_think = "<|im_start|>assistant\n<think>\n\n</think>\n\n";  // enable_thinking false
    json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
    HttpResult r = curl(s.url("/apply-template"), "POST", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string prompt = r.json_body()["prompt"].get<std::string>();
    EXPECT_TRUE(prompt.size() >= closed_think.size() &&
                prompt.compare(prompt.size() - closed_think.size(), closed_think.size(), closed_think) == 0)
        << prompt;
    // A trailing assistant message is a finished turn, followed by the generation prompt, not continued.
    body["messages"].push_back({{"role", "assistant"}, {"content", "Sure"}});
    r = curl(s.url("/apply-template"), "POST", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string closed = r.json_body()["prompt"].get<std::string>();
    EXPECT_NE(closed.find("Sure<|im_end|>"), std::string::npos) << closed;
    EXPECT_EQ(closed.rfind(closed_think), closed.size() - closed_think.size()) << closed;

    HttpResult pre = curl(s.url("/v1/chat/completions"), "OPTIONS", "", {"Origin: http://localhost:5173"});
    EXPECT_EQ(pre.status, 200);
    EXPECT_NE(pre.headers.find("Access-Control-Allow-Origin: http://localhost:5173"), std::string::npos) << pre.headers;
    EXPECT_NE(pre.headers.find("Access-Control-Allow-Methods: GET, POST"), std::string::npos) << pre.headers;
    EXPECT_EQ(pre.headers.find("Access-Control-Allow-Credentials"), std::string::npos) << pre.headers;
    HttpResult other = curl(s.url("/health"), "GET", "", {"Origin: http://app.example"});
    EXPECT_EQ(other.status, 200);
    EXPECT_EQ(other.headers.find("Access-Control-Allow-Origin"), std::string::npos) << other.headers;

    const std::string log = (fs::temp_directory_path() / "moeserve-tests" / "log-file-test.log").string();
    fs::remove(log);
    auto missing = test::run_moeserve({"serve", "-m", "/nonexistent/model.gguf", "--port", "0", "--log-file", log});
    EXPECT_EQ(missing.status, 1);
    EXPECT_EQ(missing.err, "");  // all of it went to the file
    const std::string logged = test::slurp(log);
    EXPECT_NE(logged.find("listening on http://"), std::string::npos) << logged;
    EXPECT_NE(logged.find("/nonexistent/model.gguf"), std::string::npos) << logged;
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// Issue 6's check through the real server: for every chat fixture, a server
// started with --jinja --chat-template-file renders the case's messages,
// tools and template kwargs at POST /apply-template byte for byte.
TEST(ServerJinja, apply_template_renders_every_chat_fixture_byte_for_byte) {
    MOESERVE_REQUIRE_FIXTURES();
    std::map<std::string, std::vector<fs::path>> by_template;
    for (const auto& e : fs::directory_iterator(test::fixture("chat")))
        if (e.path().extension() == ".json") {
            auto c = nlohmann::json::parse(test::slurp(e.path()));
            by_template[c["template"].get<std::string>()].push_back(e.path());
        }
    ASSERT_GE(by_template.size(), 4u);
    int checked = 0;
    for (const auto& [tmpl, cases] : by_template) {
        Server server({"-m", model_path(), "-c", "1024", "-np", "1", "-t", "1", "--jinja", "--chat-template-file",
                       test::fixture("templates/" + tmpl).string()});
        ASSERT_TRUE(server.ready()) << server.log();
        for (const auto& path : cases) {
            SCOPED_TRACE(path.filename().string());
            auto c = nlohmann::ordered_json::parse(test::slurp(path));
            nlohmann::ordered_json body = {{"messages", c["messages"]},
                                           {"tools", c["tools"]},
                                           {"add_generation_prompt", c["add_generation_prompt"]},
                                           {"chat_template_kwargs", c["extra_variables"]}};
            HttpResult r = curl(server.url("/apply-template"), "POST", body.dump());
            ASSERT_EQ(r.status, 200) << r.body;
            EXPECT_EQ(nlohmann::json::parse(r.body)["prompt"].get<std::string>(),
                      c["expected_prompt"].get<std::string>());
            ++checked;
        }
    }
    EXPECT_GE(checked, 20);
}

// --spec-type ngram-simple through the real server: the same text as a server
// without it, the guesses in the timings, /slots saying so, and a request
// turning it off with speculative.n_max = 0.
TEST(ServerE2EFlags, ngram_speculation_answers_as_without_it_and_reports_its_guesses) {
    MOESERVE_REQUIRE_FIXTURES();
    Server plain({"-m", model_path(), "-c", "2048", "-np", "1", "-t", "2"});
    Server spec({"-m", model_path(), "-c", "2048", "-np", "1", "-t", "2", "--spec-type", "ngram-simple",
                 "--spec-ngram-simple-size-n", "3", "--spec-ngram-simple-size-m", "8", "--draft-max", "8",
                 "--metrics"});
    ASSERT_TRUE(plain.ready()) << plain.log();
    ASSERT_TRUE(spec.ready()) << spec.log();
    EXPECT_NE(spec.log().find("speculative decoding: ngram-simple (size_n = 3, size_m = 8), up to 8"),
              std::string::npos)
        << spec.log();
    std::string prompt;
    for (int i = 0; i < 4; ++i) prompt += "one two three four five six seven eight nine ten, ";
    json body = {{"prompt", prompt}, {"n_predict", 48}, {"temperature", 0}, {"ignore_eos", true}};
    const json want = curl(plain.url("/completion"), "POST", body.dump()).json_body();
    const json got = curl(spec.url("/completion"), "POST", body.dump()).json_body();
    EXPECT_EQ(got["content"], want["content"]);
    EXPECT_EQ(got["tokens_predicted"], 48);
    EXPECT_FALSE(want["timings"].contains("draft_n")) << want.dump();
    ASSERT_TRUE(got["timings"].contains("draft_n")) << got.dump();
    EXPECT_GT(got["timings"]["draft_n"].get<int64_t>(), 0);
    EXPECT_LE(got["timings"]["draft_n_accepted"].get<int64_t>(), got["timings"]["draft_n"].get<int64_t>());
    const std::string rate =
        fmt::format("draft acceptance rate = {:.5f} ({:5d} accepted / {:5d} generated)",
                    got["timings"]["draft_n_accepted"].get<double>() / got["timings"]["draft_n"].get<double>(),
                    got["timings"]["draft_n_accepted"].get<int64_t>(), got["timings"]["draft_n"].get<int64_t>());
    const std::string spec_log = spec.log_with(rate);
    EXPECT_NE(spec_log.find(rate), std::string::npos) << spec_log;
    EXPECT_EQ(curl(spec.url("/slots")).json_body()[0]["speculative"], true);
    EXPECT_EQ(curl(plain.url("/slots")).json_body()[0]["speculative"], false);
    const std::string metrics = curl(spec.url("/metrics")).body;
    EXPECT_NE(metrics.find("moeserve:draft_tokens_total " + std::to_string(got["timings"]["draft_n"].get<int64_t>())),
              std::string::npos)
        << metrics;

    // The OpenAI stream's text is the same too.
    json chat = {{"messages", json::array({{{"role", "user"}, {"content", prompt}}})},
                 {"max_tokens", 32},
                 {"temperature", 0},
                 {"stream", true}};
    auto stream_text = [&](Server& s) {
        std::string text;
        for (const std::string& e : sse_payloads(curl(s.url("/v1/chat/completions"), "POST", chat.dump()).body)) {
            if (e == "[DONE]") continue;
            const json c = json::parse(e);
            if (!c["choices"].empty() && c["choices"][0]["delta"].contains("content") &&
                c["choices"][0]["delta"]["content"].is_string())
                text += c["choices"][0]["delta"]["content"].get<std::string>();
        }
        return text;
    };
    const std::string plain_text = stream_text(plain);
    EXPECT_FALSE(plain_text.empty());
    EXPECT_EQ(stream_text(spec), plain_text);

    body["speculative.n_max"] = 0;
    const json off = curl(spec.url("/completion"), "POST", body.dump()).json_body();
    EXPECT_EQ(off["content"], want["content"]);
    EXPECT_FALSE(off["timings"].contains("draft_n")) << off.dump();

    // A hybrid model: its recurrent state rolled back; the answers are the same again.
    const std::string nemotron = test::fixture("models/nemotron-h-moe-tiny-s1-q8_0.gguf").string();
    Server hybrid_plain({"-m", nemotron, "-c", "2048", "-np", "1", "-t", "2"});
    Server hybrid({"-m", nemotron, "-c", "2048", "-np", "1", "-t", "2", "--spec-type", "ngram-simple",
                   "--spec-ngram-simple-size-n", "2", "--spec-ngram-simple-size-m", "8"});
    ASSERT_TRUE(hybrid_plain.ready()) << hybrid_plain.log();
    ASSERT_TRUE(hybrid.ready()) << hybrid.log();
    EXPECT_NE(hybrid.log().find("speculative decoding: one more recurrent state per slot to roll back to"),
              std::string::npos)
        << hybrid.log();
    body.erase("speculative.n_max");
    body["n_predict"] = 96;
    const json hybrid_want = curl(hybrid_plain.url("/completion"), "POST", body.dump()).json_body();
    const json hybrid_got = curl(hybrid.url("/completion"), "POST", body.dump()).json_body();
    EXPECT_EQ(hybrid_got["content"], hybrid_want["content"]);
    EXPECT_GT(hybrid_got["timings"].value("draft_n", 0), 0) << hybrid_got.dump();
}

// --spec-type ngram-mod through the real server: the pool of n-grams is
// shared by the slots, so a request on slot 1 whose answer quotes what slot 0
// read is guessed; greedy text as without speculation; a request's
// speculative.n_max is capped at --spec-ngram-mod-n-max.
TEST(ServerE2EFlags, ngram_mod_speculation_guesses_from_what_other_slots_read) {
    MOESERVE_REQUIRE_FIXTURES();
    Server plain({"-m", model_path(), "-c", "2048", "-np", "2", "-t", "2"});
    Server spec({"-m", model_path(), "-c", "2048", "-np", "2", "-t", "2", "--spec-type", "ngram-mod",
                 "--spec-ngram-mod-n-match", "4", "--spec-ngram-mod-n-min", "2", "--spec-ngram-mod-n-max", "12",
                 "--allow-replay"});
    ASSERT_TRUE(plain.ready()) << plain.log();
    ASSERT_TRUE(spec.ready()) << spec.log();
    EXPECT_NE(spec.log().find("speculative decoding: ngram-mod (n_match = 4), 2 to 12 guesses per token, a pool of "
                              "16 MiB shared by the slots"),
              std::string::npos)
        << spec.log();

    std::string source;
    for (const char* w :
         {"alpha", "bravo", "charlie", "delta",    "echo",  "foxtrot", "golf",   "hotel", "india",  "juliet",
          "kilo",  "lima",  "mike",    "november", "oscar", "papa",    "quebec", "romeo", "sierra", "tango"})
        source += std::string(w) + " river " + w + "s, ";
    json read = {{"prompt", source}, {"n_predict", 2}, {"id_slot", 0}, {"temperature", 0}};
    ASSERT_EQ(curl(spec.url("/completion"), "POST", read.dump()).status, 200);
    // Slot 1: another prompt, an answer forced to quote the middle of the source.
    const json tokens = curl(spec.url("/tokenize"), "POST", json{{"content", source}}.dump()).json_body()["tokens"];
    ASSERT_GT(tokens.size(), 80u);
    const json quote_tokens(tokens.begin() + 30, tokens.begin() + 80);
    const std::string quote =
        curl(spec.url("/detokenize"), "POST", json{{"tokens", quote_tokens}}.dump()).json_body()["content"];
    json quoting = {{"prompt", "Something else entirely, then a quote:"},
                    {"n_predict", 40},
                    {"id_slot", 1},
                    {"replay", quote},
                    {"speculative.n_max", 100}};
    const json got = curl(spec.url("/completion"), "POST", quoting.dump()).json_body();
    EXPECT_EQ(got["tokens_predicted"], 40) << got.dump();
    EXPECT_EQ(got["content"], quote.substr(0, got["content"].get<std::string>().size()));
    ASSERT_TRUE(got["timings"].contains("draft_n_accepted")) << got.dump();
    EXPECT_GT(got["timings"]["draft_n_accepted"].get<int64_t>(), 25) << got.dump();
    EXPECT_EQ(got["generation_settings"]["speculative.n_max"], 12) << got["generation_settings"].dump();

    std::string prompt;
    for (int i = 0; i < 4; ++i) prompt += "one two three four five six seven eight nine ten, ";
    const json body = {{"prompt", prompt}, {"n_predict", 48}, {"temperature", 0}, {"ignore_eos", true}};
    const json want = curl(plain.url("/completion"), "POST", body.dump()).json_body();
    const json same = curl(spec.url("/completion"), "POST", body.dump()).json_body();
    EXPECT_EQ(same["content"], want["content"]);
}

}  // namespace
}  // namespace moeserve
