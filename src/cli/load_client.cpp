#include "cli/load_client.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string_view>

namespace moeserve::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Short names for httplib's transport errors, so that a report can count
// failures by kind.
std::string transport_error_kind(httplib::Error e) {
    switch (e) {
        case httplib::Error::Connection:
            return "connection failed";
        case httplib::Error::ConnectionTimeout:
            return "connection timed out";
        case httplib::Error::Read:
            return "read failed or timed out";
        case httplib::Error::Write:
            return "write failed";
        default:
            return "HTTP client error " + httplib::to_string(e);
    }
}

// The data of one server-sent event ("data:" lines joined), and whether it
// was an "error:" event (llama-server's way of failing a stream).
struct SseEvent {
    std::string data;
    bool error = false;
};

SseEvent parse_sse_event(std::string_view block) {
    SseEvent e;
    while (!block.empty()) {
        const size_t nl = std::min(block.find('\n'), block.size());
        std::string_view line = block.substr(0, nl);
        block.remove_prefix(std::min(nl + 1, block.size()));
        const bool is_data = line.starts_with("data:"), is_error = line.starts_with("error:");
        if (!is_data && !is_error) continue;  // comments (": ping"), event names, ids
        line.remove_prefix(is_data ? 5 : 6);
        if (line.starts_with(' ')) line.remove_prefix(1);
        if (is_error) e.error = true;
        if (!e.data.empty()) e.data += '\n';
        e.data += line;
    }
    return e;
}

// The message of an OpenAI error body ({"error": {"message": ...}}) or of
// a bare error object, else the start of the raw text.
std::string error_message(const json& j, const std::string& raw) {
    if (j.is_object() && j.contains("error")) {
        const json& e = j["error"];
        if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"];
        if (e.is_string()) return e;
    }
    if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"];  // bare error event
    return raw.substr(0, 200);
}

bool has_text(const json& delta, const char* field) {
    auto it = delta.find(field);
    return it != delta.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

}  // namespace

std::string make_load_prompt(int index, int words) {
    static const char* kWords[] = {"river",  "stone",  "light",  "garden", "paper",  "window", "cloud",  "music",
                                   "winter", "bridge", "forest", "candle", "silver", "market", "harbor", "letter"};
    std::string p = fmt::format("Request {}: continue this list.", index);
    for (int i = 0; i < words; ++i) p += std::string(" ") + kWords[(i * 7 + index) % 16];
    return p;
}

std::string make_shared_prefix(int words) {
    static const char* kWords[] = {"always", "answer", "the", "customer", "with", "care", "and",     "cite",
                                   "our",    "policy", "on",  "returns",  "when", "it",   "applies", "today"};
    std::string p = "You are the assistant of a small shop.";
    for (int i = 0; i < words; ++i) p += std::string(" ") + kWords[(i * 5) % 16];
    return p;
}

std::string fetch_metrics(const LoadRequestConfig& config) {
    httplib::Client cli(config.url);
    cli.set_connection_timeout(10);
    cli.set_read_timeout(config.timeout_s);
    if (!config.api_key.empty()) cli.set_bearer_token_auth(config.api_key);
    const auto res = cli.Get("/metrics");
    return res && res->status == 200 ? res->body : std::string();
}

RequestSample send_streaming_request(const LoadRequestConfig& config, int index,
                                     const std::function<void()>& on_content) {
    RequestSample s;
    httplib::Client cli(config.url);
    cli.set_connection_timeout(10);
    cli.set_read_timeout(config.timeout_s);
    cli.set_write_timeout(config.timeout_s);
    if (!config.api_key.empty()) cli.set_bearer_token_auth(config.api_key);

    json messages = json::array();
    if (config.shared_prefix_words > 0)
        messages.push_back({{"role", "system"}, {"content", make_shared_prefix(config.shared_prefix_words)}});
    messages.push_back({{"role", "user"}, {"content", make_load_prompt(index, config.prompt_words)}});
    json body = {{"messages", std::move(messages)},
                 {"max_tokens", config.max_tokens},
                 {"temperature", config.temperature},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"ignore_eos", true}};  // llama-server and moeserve: always generate max_tokens
    if (!config.model.empty()) body["model"] = config.model;

    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    req.body = body.dump();

    std::string buffer;  // unparsed stream bytes (or a whole error body)
    int64_t chunks = 0;
    bool done = false;
    Clock::time_point last_content;
    const auto t0 = Clock::now();
    // Server-sent events: "data: {json}\n\n" each, "data: [DONE]" last.
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        const auto now = Clock::now();
        for (size_t i = 0; i < len; ++i)
            if (data[i] != '\r') buffer.push_back(data[i]);  // some servers end lines with \r\n
        for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
            const SseEvent event = parse_sse_event(std::string_view(buffer).substr(0, end));
            buffer.erase(0, end + 2);
            if (event.data == "[DONE]") {
                done = true;
                continue;
            }
            json j = json::parse(event.data, nullptr, false);
            if (event.error || (j.is_object() && j.contains("error"))) {
                s.error_kind = "error event in stream";
                s.error_message = error_message(j, event.data);
                return false;
            }
            if (!j.is_object()) continue;  // comments, pings
            if (j.contains("usage") && j["usage"].is_object()) {
                s.tokens = j["usage"].value("completion_tokens", int64_t(0));
                s.prompt_tokens = j["usage"].value("prompt_tokens", int64_t(0));
            }
            if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) continue;
            const json delta = j["choices"][0].value("delta", json::object());
            if (!has_text(delta, "content") && !has_text(delta, "reasoning_content")) continue;
            if (chunks == 0)
                s.ttft_s = std::chrono::duration<double>(now - t0).count();
            else
                s.gaps_s.push_back(std::chrono::duration<double>(now - last_content).count());
            last_content = now;
            ++chunks;
            if (on_content) on_content();
        }
        return true;
    };

    auto result = cli.send(req);
    s.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!s.error_kind.empty()) return s;
    if (!result) {
        s.error_kind = transport_error_kind(result.error());
        s.error_message = fmt::format("{} ({})", s.error_kind, config.url);
        return s;
    }
    if (result->status != 200) {
        s.error_kind = fmt::format("HTTP {}", result->status);
        s.error_message = error_message(json::parse(buffer, nullptr, false), buffer);
        return s;
    }
    if (!done) {
        s.error_kind = "stream ended before [DONE]";
        s.error_message = fmt::format("the stream closed after {} content chunks", chunks);
        return s;
    }
    if (s.tokens == 0) s.tokens = chunks;
    if (chunks == 0) s.ttft_s = s.total_s;
    s.ok = true;
    return s;
}

}  // namespace moeserve::cli
