// moeserve load: a concurrent load generator for any OpenAI-compatible
// server. C clients send N streaming chat requests in total (each a distinct
// prompt of about --prompt-tokens words, asking for --max-tokens tokens) and
// the tool reports aggregate generated tokens/s, per-request tokens/s and
// time to first token (p50/p99).
#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"

namespace moeserve::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* kUsage =
    "usage: moeserve load --url URL [-c CLIENTS] [-n REQUESTS] [options]\n"
    "\n"
    "Sends streaming /v1/chat/completions requests from concurrent clients and\n"
    "reports throughput and latency.\n"
    "\n"
    "  --url URL             server base URL (default http://127.0.0.1:8080)\n"
    "  -c, --clients N       concurrent clients (default 4)\n"
    "  -n, --requests N      requests in total (default 100)\n"
    "  --max-tokens N        tokens to generate per request (default 128)\n"
    "  --prompt-tokens N     prompt length in words, about one token each (default 64)\n"
    "  --model NAME          model field of the requests (default: none)\n"
    "  --api-key KEY         sent as 'Authorization: Bearer KEY'\n"
    "  --temperature T       sampling temperature (default 0)\n"
    "  --timeout S           per-request timeout in seconds (default 600)\n";

struct Options {
    std::string url = "http://127.0.0.1:8080";
    int clients = 4;
    int requests = 100;
    int max_tokens = 128;
    int prompt_tokens = 64;
    std::string model;
    std::string api_key;
    double temperature = 0.0;
    int timeout_s = 600;
};

struct Sample {
    bool ok = false;
    std::string error;
    double ttft_s = 0;   // request sent -> first content
    double total_s = 0;  // request sent -> stream end
    int64_t tokens = 0;  // generated (from usage, else content chunks)
    int64_t prompt_tokens = 0;
};

std::string make_prompt(int index, int words) {
    static const char* kWords[] = {"river",  "stone",  "light",  "garden", "paper",  "window", "cloud",  "music",
                                   "winter", "bridge", "forest", "candle", "silver", "market", "harbor", "letter"};
    std::string p = fmt::format("Request {}: continue this list.", index);
    for (int i = 0; i < words; ++i) p += std::string(" ") + kWords[(i * 7 + index) % 16];
    return p;
}

Sample run_request(const Options& o, int index) {
    Sample s;
    httplib::Client cli(o.url);
    cli.set_connection_timeout(10);
    cli.set_read_timeout(o.timeout_s);
    cli.set_write_timeout(o.timeout_s);
    if (!o.api_key.empty()) cli.set_bearer_token_auth(o.api_key);

    json body = {{"messages", json::array({{{"role", "user"}, {"content", make_prompt(index, o.prompt_tokens)}}})},
                 {"max_tokens", o.max_tokens},
                 {"temperature", o.temperature},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"ignore_eos", true}};
    if (!o.model.empty()) body["model"] = o.model;

    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    req.body = body.dump();
    std::string buffer;
    int64_t chunks = 0;
    bool first = true;
    const auto t0 = Clock::now();
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        buffer.append(data, len);
        size_t end;
        while ((end = buffer.find("\n\n")) != std::string::npos) {
            std::string event = buffer.substr(0, end);
            buffer.erase(0, end + 2);
            if (event.rfind("data: ", 0) != 0) continue;
            std::string payload = event.substr(6);
            if (payload == "[DONE]") continue;
            json j = json::parse(payload, nullptr, false);
            if (j.is_discarded()) continue;
            if (j.contains("error")) {
                s.error = j["error"].value("message", "error event");
                return false;
            }
            if (j.contains("usage") && j["usage"].is_object()) {
                s.tokens = j["usage"].value("completion_tokens", int64_t(0));
                s.prompt_tokens = j["usage"].value("prompt_tokens", int64_t(0));
            }
            if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
                const json& delta = j["choices"][0].value("delta", json::object());
                if (delta.contains("content") && delta["content"].is_string() &&
                    !delta["content"].get<std::string>().empty()) {
                    ++chunks;
                    if (first) {
                        s.ttft_s = std::chrono::duration<double>(Clock::now() - t0).count();
                        first = false;
                    }
                }
            }
        }
        return true;
    };
    auto result = cli.send(req);
    s.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!result) {
        if (s.error.empty()) s.error = httplib::to_string(result.error());
        return s;
    }
    if (result->status != 200) {
        s.error = fmt::format("HTTP {}", result->status);
        return s;
    }
    if (s.tokens == 0) s.tokens = chunks;
    if (first) s.ttft_s = s.total_s;
    s.ok = s.error.empty();
    return s;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(rank);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

int run_load(const std::vector<std::string>& argv) {
    Args args(argv);
    Options o;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (args.flag({"--url"})) {
            o.url = args.value();
            while (!o.url.empty() && o.url.back() == '/') o.url.pop_back();
        } else if (args.flag({"-c", "--clients"})) {
            o.clients = static_cast<int>(args.int_value());
        } else if (args.flag({"-n", "--requests"})) {
            o.requests = static_cast<int>(args.int_value());
        } else if (args.flag({"--max-tokens"})) {
            o.max_tokens = static_cast<int>(args.int_value());
        } else if (args.flag({"--prompt-tokens"})) {
            o.prompt_tokens = static_cast<int>(args.int_value());
        } else if (args.flag({"--model"})) {
            o.model = args.value();
        } else if (args.flag({"--api-key"})) {
            o.api_key = args.value();
        } else if (args.flag({"--temperature"})) {
            o.temperature = args.float_value();
        } else if (args.flag({"--timeout"})) {
            o.timeout_s = static_cast<int>(args.int_value());
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve load --help)");
        }
    }
    if (o.clients < 1) throw UsageError("-c must be at least 1");
    if (o.requests < 1) throw UsageError("-n must be at least 1");
    if (o.max_tokens < 1) throw UsageError("--max-tokens must be at least 1");
    if (o.prompt_tokens < 0) throw UsageError("--prompt-tokens must be 0 or more");
    if (o.url.rfind("http://", 0) != 0) throw UsageError("--url must start with http:// (TLS is not supported)");

    std::vector<Sample> samples(static_cast<size_t>(o.requests));
    std::atomic<int> next{0};
    const auto t0 = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < o.clients; ++c)
        clients.emplace_back([&] {
            for (int i; (i = next++) < o.requests;) samples[static_cast<size_t>(i)] = run_request(o, i);
        });
    for (auto& t : clients) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();

    std::vector<double> ttft, per_request;
    int64_t tokens = 0, prompt_tokens = 0;
    int ok = 0;
    std::string first_error;
    for (const auto& s : samples) {
        if (!s.ok) {
            if (first_error.empty()) first_error = s.error;
            continue;
        }
        ++ok;
        tokens += s.tokens;
        prompt_tokens += s.prompt_tokens;
        ttft.push_back(s.ttft_s * 1000.0);
        if (s.tokens > 1 && s.total_s > s.ttft_s) per_request.push_back((s.tokens - 1) / (s.total_s - s.ttft_s));
    }
    std::printf("url:                   %s\n", o.url.c_str());
    std::printf("clients:               %d\n", o.clients);
    std::printf("requests:              %d ok, %d failed%s%s\n", ok, o.requests - ok,
                first_error.empty() ? "" : " (first error: ", first_error.empty() ? "" : (first_error + ")").c_str());
    std::printf("prompt tokens:         %.1f per request (server count)\n", ok ? double(prompt_tokens) / ok : 0.0);
    std::printf("generated tokens:      %lld in %.2f s\n", static_cast<long long>(tokens), wall);
    std::printf("aggregate tokens/s:    %.1f\n", tokens / std::max(wall, 1e-9));
    std::printf("per-request tokens/s:  mean %.1f, p50 %.1f (after the first token)\n",
                per_request.empty() ? 0.0 : [&] {
                    double sum = 0;
                    for (double x : per_request) sum += x;
                    return sum / per_request.size();
                }(),
                percentile(per_request, 50));
    std::printf("time to first token:   p50 %.1f ms, p99 %.1f ms\n", percentile(ttft, 50), percentile(ttft, 99));
    return ok == o.requests ? 0 : 1;
}

}  // namespace

MOESERVE_COMMAND("load", "concurrent load generator against an OpenAI-compatible server", run_load);

}  // namespace moeserve::cli
