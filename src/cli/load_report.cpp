#include "cli/load_report.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace moeserve::cli {
namespace {

using json = nlohmann::ordered_json;

// "-" for a value that was not measured (NaN: no samples).
std::string fixed(double v, int decimals) {
    return std::isfinite(v) ? fmt::format("{:.{}f}", v, decimals) : "-";
}

std::string errors_line(const RoundStats& r) {
    std::string out;
    for (const auto& e : r.errors)
        out += fmt::format("{}{} × {} ({})", out.empty() ? "" : ", ", e.count, e.kind, e.example);
    return out;
}

json number(double v) {
    return std::isfinite(v) ? json(v) : json(nullptr);
}

json distribution_json(const Distribution& d) {
    return {{"mean", number(d.mean)}, {"p50", number(d.p50)}, {"p90", number(d.p90)},
            {"p99", number(d.p99)},   {"max", number(d.max)}, {"count", d.count}};
}

json round_json(const RoundStats& r) {
    json errors = json::array();
    for (const auto& e : r.errors) errors.push_back({{"kind", e.kind}, {"count", e.count}, {"example", e.example}});
    return {{"concurrency", r.concurrency},
            {"requests", r.requests},
            {"ok", r.ok},
            {"failed", r.failed()},
            {"errors", std::move(errors)},
            {"duration_s", r.duration_s},
            {"requests_per_s", r.requests_per_s},
            {"prompt_tokens_per_request", r.prompt_tokens_per_request},
            {"generated_tokens", r.generated_tokens},
            {"tokens_per_s", r.tokens_per_s},
            {"per_request_tokens_per_s", distribution_json(r.per_request_tokens_per_s)},
            {"ttft_ms", distribution_json(r.ttft_ms)},
            {"itl_ms", distribution_json(r.itl_ms)},
            {"server_decode_steps", std::isfinite(r.server_decode_tokens_per_s())
                                        ? json{{"tokens", number(r.server_decode_tokens)},
                                               {"seconds", number(r.server_decode_seconds)},
                                               {"tokens_per_s", number(r.server_decode_tokens_per_s())}}
                                        : json(nullptr)}};
}

}  // namespace

std::string format_load_summary(const LoadSettings& settings, const RoundStats& r) {
    std::string out;
    out += fmt::format("url:                   {}\n", settings.request.url);
    out += fmt::format("clients:               {}\n", r.concurrency);
    out += fmt::format("requests:              {} ok, {} failed\n", r.ok, r.failed());
    if (!r.errors.empty()) out += fmt::format("errors:                {}\n", errors_line(r));
    out += fmt::format("prompt tokens:         {:.1f} per request (server count)\n", r.prompt_tokens_per_request);
    out += fmt::format("generated tokens:      {} in {:.2f} s\n", r.generated_tokens, r.duration_s);
    out += fmt::format("requests/s:            {:.2f}\n", r.requests_per_s);
    out += fmt::format("aggregate tokens/s:    {:.1f}\n", r.tokens_per_s);
    out += fmt::format("per-request tokens/s:  mean {}, p50 {} (after the first token)\n",
                       fixed(r.per_request_tokens_per_s.mean, 1), fixed(r.per_request_tokens_per_s.p50, 1));
    out += fmt::format("time to first token:   p50 {} ms, p90 {} ms, p99 {} ms\n", fixed(r.ttft_ms.p50, 1),
                       fixed(r.ttft_ms.p90, 1), fixed(r.ttft_ms.p99, 1));
    out += fmt::format("inter-token latency:   p50 {} ms, p90 {} ms, p99 {} ms\n", fixed(r.itl_ms.p50, 2),
                       fixed(r.itl_ms.p90, 2), fixed(r.itl_ms.p99, 2));
    if (std::isfinite(r.server_decode_tokens_per_s()))
        out +=
            fmt::format("server decode steps:   {:.1f} tokens/s ({:.0f} tokens in steps that only decoded; /metrics)\n",
                        r.server_decode_tokens_per_s(), r.server_decode_tokens);
    return out;
}

std::string format_load_table(const LoadSettings& settings, const std::vector<RoundStats>& rounds) {
    std::string out = fmt::format(
        "url: {}, {} requests per round of {} generated tokens, prompts of ~{} words{}\n\n", settings.request.url,
        settings.requests_per_round, settings.request.max_tokens, settings.request.prompt_words,
        settings.request.shared_prefix_words > 0
            ? fmt::format(" after a shared system prompt of {}", settings.request.shared_prefix_words)
            : "");
    out +=
        "| clients | ok | failed | req/s | tokens/s | per-request tok/s | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | "
        "ITL p50 ms | ITL p90 ms | ITL p99 ms |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& r : rounds)
        out +=
            fmt::format("| {} | {} | {} | {:.2f} | {:.1f} | {} | {} | {} | {} | {} | {} | {} |\n", r.concurrency, r.ok,
                        r.failed(), r.requests_per_s, r.tokens_per_s, fixed(r.per_request_tokens_per_s.mean, 1),
                        fixed(r.ttft_ms.p50, 1), fixed(r.ttft_ms.p90, 1), fixed(r.ttft_ms.p99, 1),
                        fixed(r.itl_ms.p50, 2), fixed(r.itl_ms.p90, 2), fixed(r.itl_ms.p99, 2));
    bool decode_line = false;
    for (const auto& r : rounds) {
        if (!std::isfinite(r.server_decode_tokens_per_s())) continue;
        if (!decode_line) out += "\nserver decode steps (tokens/s of steps that only decoded; /metrics):";
        decode_line = true;
        out += fmt::format(" -c {} {:.1f}", r.concurrency, r.server_decode_tokens_per_s());
    }
    if (decode_line) out += "\n";
    bool first = true;
    for (const auto& r : rounds) {
        if (r.errors.empty()) continue;
        if (first) out += "\n";
        first = false;
        out += fmt::format("errors at -c {}: {}\n", r.concurrency, errors_line(r));
    }
    return out;
}

std::string format_load_json(const LoadSettings& settings, const std::vector<RoundStats>& rounds) {
    json rows = json::array();
    for (const auto& r : rounds) rows.push_back(round_json(r));
    const json j = {{"url", settings.request.url},
                    {"model", settings.request.model.empty() ? json(nullptr) : json(settings.request.model)},
                    {"requests_per_round", settings.requests_per_round},
                    {"max_tokens", settings.request.max_tokens},
                    {"prompt_words", settings.request.prompt_words},
                    {"shared_prefix_words", settings.request.shared_prefix_words},
                    {"temperature", settings.request.temperature},
                    {"rounds", std::move(rows)}};
    return j.dump(2) + "\n";
}

}  // namespace moeserve::cli
