// moeserve load: a concurrent load generator for any OpenAI-compatible
// server. For each concurrency C of -c, C clients send N streaming chat
// requests in total (each a distinct prompt of about --prompt-tokens words,
// asking for --max-tokens tokens); each such round reports requests/s,
// aggregate and per-request tokens/s, time to first token and inter-token
// latency (p50/p90/p99) and errors by kind. Measuring: load_client.cpp;
// numbers: load_stats.h; output: load_report.cpp, load_plot.cpp.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/load_client.h"
#include "cli/load_plot.h"
#include "cli/load_progress.h"
#include "cli/load_report.h"
#include "cli/load_stats.h"

namespace moeserve::cli {
namespace {

using Clock = std::chrono::steady_clock;

const char* kUsage =
    "usage: moeserve load --url URL [-c CLIENTS[,CLIENTS...]] [-n REQUESTS] [options]\n"
    "\n"
    "Sends streaming /v1/chat/completions requests from concurrent clients and\n"
    "reports, for each concurrency: requests/s, aggregate generated tokens/s,\n"
    "per-request tokens/s (after the first token), time to first token (TTFT) and\n"
    "inter-token latency (ITL, the gaps between streamed tokens of all requests)\n"
    "as p50/p90/p99, and failed requests by kind. Exit status 1 when any failed.\n"
    "\n"
    "  --url URL             server base URL (default http://127.0.0.1:8080)\n"
    "  -c, --clients LIST    concurrent clients, or a list (-c 1,2,4,8) for one round\n"
    "                        per concurrency, reported one row each (default 4)\n"
    "  -n, --requests N      requests per round (default 100)\n"
    "  --max-tokens N        tokens to generate per request (default 128; sent with\n"
    "                        ignore_eos, so servers that honour it generate all N)\n"
    "  --prompt-tokens N     prompt length in words, about one token each (default 64)\n"
    "  --shared-prefix N     a system prompt of N words, the same in every request\n"
    "                        (default 0: none), to measure prefix caching\n"
    "  --model NAME          model field of the requests (default: none)\n"
    "  --api-key KEY         sent as 'Authorization: Bearer KEY'\n"
    "  --temperature T       sampling temperature (default 0)\n"
    "  --timeout S           per-request timeout in seconds (default 600)\n"
    "  --json                print one JSON object (settings and a \"rounds\" array)\n"
    "  --plot FILE.svg       draw tokens/s and latency (TTFT p50/p99, ITL p50)\n"
    "                        against concurrency, for a list of -c values\n"
    "\n"
    "A progress bar is drawn on stderr when it is a terminal.\n";

struct Options {
    LoadSettings settings;
    bool json = false;
    std::string plot_path;
};

std::vector<int> parse_concurrencies(const std::string& s) {
    std::vector<int> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t comma = std::min(s.find(',', start), s.size());
        const std::string item = s.substr(start, comma - start);
        size_t used = 0;
        long v = 0;
        try {
            v = std::stol(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != item.size() || v < 1 || v > 10000)
            throw UsageError(fmt::format("-c expects client counts from 1 to 10000 separated by commas, got '{}'", s));
        out.push_back(static_cast<int>(v));
        start = comma + 1;
    }
    return out;
}

// nullopt: --help was printed.
std::optional<Options> parse_options(const std::vector<std::string>& argv) {
    Args args(argv);
    Options o;
    LoadSettings& s = o.settings;
    s.request.url = "http://127.0.0.1:8080";
    s.concurrencies = {4};
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return std::nullopt;
        } else if (args.flag({"--url"})) {
            s.request.url = args.value();
            while (!s.request.url.empty() && s.request.url.back() == '/') s.request.url.pop_back();
        } else if (args.flag({"-c", "--clients", "--concurrency"})) {
            s.concurrencies = parse_concurrencies(args.value());
        } else if (args.flag({"-n", "--requests"})) {
            s.requests_per_round = static_cast<int>(args.int_value());
        } else if (args.flag({"--max-tokens"})) {
            s.request.max_tokens = static_cast<int>(args.int_value());
        } else if (args.flag({"--prompt-tokens"})) {
            s.request.prompt_words = static_cast<int>(args.int_value());
        } else if (args.flag({"--shared-prefix"})) {
            s.request.shared_prefix_words = static_cast<int>(args.int_value());
        } else if (args.flag({"--model"})) {
            s.request.model = args.value();
        } else if (args.flag({"--api-key"})) {
            s.request.api_key = args.value();
        } else if (args.flag({"--temperature"})) {
            s.request.temperature = args.float_value();
        } else if (args.flag({"--timeout"})) {
            s.request.timeout_s = static_cast<int>(args.int_value());
        } else if (args.flag({"--json"})) {
            o.json = true;
        } else if (args.flag({"--plot"})) {
            o.plot_path = args.value();
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve load --help)");
        }
    }
    if (s.requests_per_round < 1) throw UsageError("-n must be at least 1");
    if (s.request.max_tokens < 1) throw UsageError("--max-tokens must be at least 1");
    if (s.request.prompt_words < 0) throw UsageError("--prompt-tokens must be 0 or more");
    if (s.request.shared_prefix_words < 0) throw UsageError("--shared-prefix must be 0 or more");
    if (s.request.timeout_s < 1) throw UsageError("--timeout must be at least 1 second");
    if (s.request.url.rfind("http://", 0) != 0)
        throw UsageError("--url must start with http:// (TLS is not supported)");
    return o;
}

// One round: `concurrency` clients take requests 0..N-1 in turn.
RoundStats run_round(const LoadSettings& s, int concurrency, const std::string& progress_label) {
    // moeserve's decode-step counters before and after: the server's decode throughput over the round.
    const char* kTokens = "moeserve:decode_steps_tokens_total";
    const char* kSeconds = "moeserve:decode_steps_seconds_total";
    const std::string before = fetch_metrics(s.request);
    std::vector<RequestSample> samples(static_cast<size_t>(s.requests_per_round));
    std::atomic<int> next{0};
    LoadProgress progress(progress_label, s.requests_per_round);
    const auto t0 = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < concurrency; ++c)
        clients.emplace_back([&] {
            for (int i; (i = next++) < s.requests_per_round;) {
                auto& sample = samples[static_cast<size_t>(i)];
                sample = send_streaming_request(s.request, i, [&] { progress.content_received(); });
                progress.request_done(sample.ok);
            }
        });
    for (auto& t : clients) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    RoundStats r = summarize_round(concurrency, samples, wall);
    if (!before.empty()) {
        const std::string after = fetch_metrics(s.request);
        r.server_decode_tokens = prometheus_value(after, kTokens) - prometheus_value(before, kTokens);
        r.server_decode_seconds = prometheus_value(after, kSeconds) - prometheus_value(before, kSeconds);
    }
    return r;
}

int run_load(const std::vector<std::string>& argv) {
    const std::optional<Options> options = parse_options(argv);
    if (!options) return 0;
    const Options& o = *options;
    const LoadSettings& s = o.settings;
    // Open the plot file first, so that a bad path fails before the load runs.
    std::ofstream plot;
    if (!o.plot_path.empty()) {
        plot.open(o.plot_path, std::ios::binary | std::ios::trunc);
        if (!plot) throw std::runtime_error(fmt::format("--plot: cannot write '{}'", o.plot_path));
    }
    for (int c : s.concurrencies)
        if (c > s.requests_per_round)
            std::fprintf(stderr, "note: -c %d with -n %d: only %d requests can run at once\n", c, s.requests_per_round,
                         s.requests_per_round);

    std::vector<RoundStats> rounds;
    for (size_t r = 0; r < s.concurrencies.size(); ++r) {
        const int c = s.concurrencies[r];
        const std::string label = s.concurrencies.size() > 1
                                      ? fmt::format("-c {} (round {}/{})", c, r + 1, s.concurrencies.size())
                                      : fmt::format("-c {}", c);
        rounds.push_back(run_round(s, c, label));
    }

    std::string report;
    if (o.json)
        report = format_load_json(s, rounds);
    else if (rounds.size() == 1)
        report = format_load_summary(s, rounds.front());
    else
        report = format_load_table(s, rounds);
    std::fputs(report.c_str(), stdout);

    if (plot.is_open()) {
        const std::string caption = fmt::format("moeserve load {}: {} requests per round, {} tokens each",
                                                s.request.url, s.requests_per_round, s.request.max_tokens);
        plot << plot_load_rounds(caption, rounds);
        plot.close();
        if (!plot) throw std::runtime_error(fmt::format("--plot: writing '{}' failed", o.plot_path));
    }
    for (const auto& r : rounds)
        if (r.failed() > 0) return 1;
    return 0;
}

}  // namespace

MOESERVE_COMMAND("load", "concurrent load generator against an OpenAI-compatible server", run_load);

}  // namespace moeserve::cli
