// `moeserve load`: the percentile and round arithmetic against hand-computed
// values, and the real tool against the real `moeserve serve` on the tiny
// Qwen3-MoE fixture model: the --json schema, the table, the --plot SVG,
// errors counted by kind, and bad arguments. Runs are kept tiny (a few
// requests of a few tokens); speed itself is measured in bench/, not here.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "cli/load_stats.h"
#include "fixtures.h"
#include "run_command.h"
#include "server_harness.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using cli::percentile;
using cli::RequestSample;

// ---- the numbers --------------------------------------------------------

TEST(LoadStats, percentile_interpolates_between_closest_ranks) {
    // Sorted: 1..10. Rank p/100 * 9: p50 -> 4.5 (between 5 and 6), p90 ->
    // 8.1 (9 + 0.1), p99 -> 8.91 (9 + 0.91).
    const std::vector<double> v = {7, 3, 10, 1, 9, 2, 8, 4, 6, 5};
    EXPECT_DOUBLE_EQ(percentile(v, 50), 5.5);
    EXPECT_DOUBLE_EQ(percentile(v, 90), 9.1);
    EXPECT_DOUBLE_EQ(percentile(v, 99), 9.91);
    EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
    EXPECT_DOUBLE_EQ(percentile(v, 100), 10);
    EXPECT_DOUBLE_EQ(percentile({0, 100}, 90), 90);
    EXPECT_DOUBLE_EQ(percentile({42}, 99), 42);
    EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

RequestSample ok_sample(double ttft_s, double total_s, int64_t tokens, int64_t prompt_tokens,
                        std::vector<double> gaps_s) {
    RequestSample s;
    s.ok = true;
    s.ttft_s = ttft_s;
    s.total_s = total_s;
    s.tokens = tokens;
    s.prompt_tokens = prompt_tokens;
    s.gaps_s = std::move(gaps_s);
    return s;
}

RequestSample failed_sample(const std::string& kind, const std::string& message) {
    RequestSample s;
    s.error_kind = kind;
    s.error_message = message;
    return s;
}

TEST(LoadStats, round_summary_pools_gaps_and_counts_errors_by_kind) {
    const RequestSample a = ok_sample(0.1, 1.1, 11, 10, {0.1, 0.1});
    const RequestSample b = ok_sample(0.3, 1.3, 6, 20, {0.2, 0.4});
    const RequestSample busy = failed_sample("HTTP 503", "queue full");
    const RequestSample refused = failed_sample("connection failed", "nobody there");
    const auto r = cli::summarize_round(3, {a, busy, refused, b, busy}, 2.0);
    EXPECT_EQ(r.concurrency, 3);
    EXPECT_EQ(r.requests, 5);
    EXPECT_EQ(r.ok, 2);
    EXPECT_EQ(r.failed(), 3);
    ASSERT_EQ(r.errors.size(), 2u);
    EXPECT_EQ(r.errors[0].kind, "HTTP 503");  // most frequent first
    EXPECT_EQ(r.errors[0].count, 2);
    EXPECT_EQ(r.errors[0].example, "queue full");
    EXPECT_EQ(r.errors[1].kind, "connection failed");
    EXPECT_EQ(r.errors[1].count, 1);
    EXPECT_DOUBLE_EQ(r.requests_per_s, 1.0);  // 2 ok in 2 s
    EXPECT_EQ(r.generated_tokens, 17);
    EXPECT_DOUBLE_EQ(r.tokens_per_s, 8.5);
    EXPECT_DOUBLE_EQ(r.prompt_tokens_per_request, 15);
    // Decode rates after the first token: 10 tokens in 1.0 s, 5 in 1.0 s.
    EXPECT_DOUBLE_EQ(r.per_request_tokens_per_s.mean, 7.5);
    EXPECT_NEAR(r.ttft_ms.p50, 200, 1e-9);
    EXPECT_NEAR(r.ttft_ms.max, 300, 1e-9);
    // Gaps pooled: 100, 100, 200, 400 ms.
    EXPECT_EQ(r.itl_ms.count, 4u);
    EXPECT_NEAR(r.itl_ms.mean, 200, 1e-9);
    EXPECT_NEAR(r.itl_ms.p50, 150, 1e-9);
    EXPECT_NEAR(r.itl_ms.p90, 340, 1e-9);  // rank 2.7: 200 + 0.7 * 200
    EXPECT_NEAR(r.itl_ms.max, 400, 1e-9);
}

// ---- the tool against a real server ---------------------------------------

class LoadCli : public test::SharedServerTest<LoadCli> {
  public:
    // Two slots of 256 tokens: room for the short prompts below, not for a 600-word one.
    static std::vector<std::string> server_args() {
        return {"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "2", "-c", "512", "-t", "2"};
    }

  protected:
    // A small run: 4 requests of 6 generated tokens per round.
    static test::CommandResult load(std::vector<std::string> extra) {
        std::vector<std::string> args = {"load",         "--url", server_->url(),    "-n", "4",
                                         "--max-tokens", "6",     "--prompt-tokens", "8"};
        args.insert(args.end(), extra.begin(), extra.end());
        return test::run_moeserve(args);
    }
};

// The keys of a JSON object, sorted.
std::vector<std::string> keys(const json& object) {
    std::vector<std::string> out;
    for (const auto& [key, value] : object.items()) out.push_back(key);
    std::sort(out.begin(), out.end());
    return out;
}

void expect_distribution(const json& d, const std::string& name, size_t max_count) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(d.is_object());
    EXPECT_EQ(keys(d), (std::vector<std::string>{"count", "max", "mean", "p50", "p90", "p99"}));
    for (const char* f : {"mean", "p50", "p90", "p99", "max"}) {
        ASSERT_TRUE(d.contains(f) && d[f].is_number()) << f << ": " << d;
        EXPECT_GE(d[f].get<double>(), 0.0) << f;
    }
    ASSERT_TRUE(d["count"].is_number_unsigned());
    EXPECT_GT(d["count"].get<size_t>(), 0u);
    EXPECT_LE(d["count"].get<size_t>(), max_count);
    EXPECT_LE(d["p50"].get<double>(), d["p90"].get<double>());
    EXPECT_LE(d["p90"].get<double>(), d["p99"].get<double>());
    EXPECT_LE(d["p99"].get<double>(), d["max"].get<double>());
    EXPECT_LE(d["mean"].get<double>(), d["max"].get<double>());
}

TEST_F(LoadCli, json_reports_every_field_with_sane_values) {
    auto r = load({"-c", "1,2", "--json"});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_EQ(r.err, "");  // stderr is not a terminal: no progress bar
    const json j = json::parse(r.out);
    // Exactly the fields README.md documents.
    EXPECT_EQ(keys(j), (std::vector<std::string>{"max_tokens", "model", "prompt_words", "requests_per_round", "rounds",
                                                 "shared_prefix_words", "temperature", "url"}));
    EXPECT_EQ(j["url"], server_->url());
    EXPECT_TRUE(j["model"].is_null());
    EXPECT_EQ(j["requests_per_round"], 4);
    EXPECT_EQ(j["max_tokens"], 6);
    EXPECT_EQ(j["prompt_words"], 8);
    EXPECT_TRUE(j["temperature"].is_number());
    ASSERT_TRUE(j["rounds"].is_array());
    ASSERT_EQ(j["rounds"].size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        const json& round = j["rounds"][i];
        SCOPED_TRACE(round.dump());
        EXPECT_EQ(keys(round),
                  (std::vector<std::string>{"concurrency", "duration_s", "errors", "failed", "generated_tokens",
                                            "itl_ms", "ok", "per_request_tokens_per_s", "prompt_tokens_per_request",
                                            "requests", "requests_per_s", "tokens_per_s", "ttft_ms"}));
        for (const char* integer : {"concurrency", "requests", "ok", "failed", "generated_tokens"})
            EXPECT_TRUE(round[integer].is_number_integer()) << integer;
        EXPECT_EQ(round["concurrency"], i + 1);
        EXPECT_EQ(round["requests"], 4);
        EXPECT_EQ(round["ok"], 4);
        EXPECT_EQ(round["failed"], 0);
        EXPECT_EQ(round["errors"], json::array());
        ASSERT_TRUE(round["duration_s"].is_number());
        const double duration = round["duration_s"].get<double>();
        EXPECT_GT(duration, 0.0);
        EXPECT_LT(duration, 120.0);
        EXPECT_NEAR(round["requests_per_s"].get<double>(), 4 / duration, 1e-6);
        // moeserve honours ignore_eos: every request generates max_tokens.
        EXPECT_EQ(round["generated_tokens"], 4 * 6);
        EXPECT_NEAR(round["tokens_per_s"].get<double>(), 24 / duration, 1e-6);
        EXPECT_GT(round["tokens_per_s"].get<double>(), 0.0);
        // The chat template adds tokens to the 8 words; the slot holds 256.
        EXPECT_GT(round["prompt_tokens_per_request"].get<double>(), 8.0);
        EXPECT_LT(round["prompt_tokens_per_request"].get<double>(), 256.0);
        expect_distribution(round["per_request_tokens_per_s"], "per_request_tokens_per_s", 4);
        EXPECT_GT(round["per_request_tokens_per_s"]["p50"].get<double>(), 0.0);
        expect_distribution(round["ttft_ms"], "ttft_ms", 4);
        EXPECT_EQ(round["ttft_ms"]["count"], 4);
        EXPECT_LT(round["ttft_ms"]["max"].get<double>(), duration * 1000.0);
        // At most 5 gaps per request of 6 tokens (fewer if a chunk held back a partial character).
        expect_distribution(round["itl_ms"], "itl_ms", 4 * 5);
        EXPECT_LT(round["itl_ms"]["max"].get<double>(), duration * 1000.0);
    }
}

// --shared-prefix puts the same system prompt before every request: the prompts
// grow by about that many tokens, the same for each request.
TEST_F(LoadCli, shared_prefix_adds_one_system_prompt_to_every_request) {
    auto plain = load({"-c", "2", "--json"});
    auto shared = load({"-c", "2", "--json", "--shared-prefix", "40"});
    ASSERT_EQ(plain.status, 0) << plain.err;
    ASSERT_EQ(shared.status, 0) << shared.err;
    const json a = json::parse(plain.out), b = json::parse(shared.out);
    EXPECT_EQ(a["shared_prefix_words"], 0);
    EXPECT_EQ(b["shared_prefix_words"], 40);
    const double grown = b["rounds"][0]["prompt_tokens_per_request"].get<double>() -
                         a["rounds"][0]["prompt_tokens_per_request"].get<double>();
    EXPECT_GT(grown, 40.0);
    EXPECT_LT(grown, 200.0);  // the fixture's 685-token vocabulary splits words into up to ~4 tokens
    auto bad = load({"--shared-prefix", "-1"});
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.err.find("--shared-prefix must be 0 or more"), std::string::npos) << bad.err;
}

// Checks that every element opened in `svg` is closed in order; returns the
// element names in document order, or an error message.
std::vector<std::string> svg_elements(const std::string& svg, std::string& error) {
    std::vector<std::string> names, open;
    for (size_t i = svg.find('<'); i != std::string::npos; i = svg.find('<', i + 1)) {
        const size_t end = svg.find('>', i);
        if (end == std::string::npos) {
            error = "unterminated tag at " + std::to_string(i);
            return names;
        }
        const std::string tag = svg.substr(i + 1, end - i - 1);
        const bool closing = tag[0] == '/', self_closing = tag.back() == '/';
        const std::string name = tag.substr(closing ? 1 : 0, tag.find_first_of(" />", 1) - (closing ? 1 : 0));
        if (closing) {
            if (open.empty() || open.back() != name) {
                error = "</" + name + "> does not close <" + (open.empty() ? "" : open.back()) + ">";
                return names;
            }
            open.pop_back();
        } else {
            names.push_back(name);
            if (!self_closing) open.push_back(name);
        }
    }
    if (!open.empty()) error = "<" + open.back() + "> is never closed";
    return names;
}

TEST_F(LoadCli, table_has_a_row_per_concurrency_and_plot_is_a_well_formed_svg) {
    const fs::path svg_path = test::scratch_dir() / "load.svg";
    auto r = load({"-c", "1,2", "--plot", svg_path.string()});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("| clients | ok | failed | req/s | tokens/s | per-request tok/s | TTFT p50 ms | TTFT p90 ms | "
                         "TTFT p99 ms | ITL p50 ms | ITL p90 ms | ITL p99 ms |"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("\n| 1 | 4 | 0 | "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\n| 2 | 4 | 0 | "), std::string::npos) << r.out;

    const std::string svg = test::slurp(svg_path);
    ASSERT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 200);
    EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
    std::string error;
    const auto elements = svg_elements(svg, error);
    ASSERT_EQ(error, "");
    EXPECT_EQ(std::count(elements.begin(), elements.end(), "svg"), 1);
    // Series: aggregate tokens/s; TTFT p50, TTFT p99, ITL p50.
    EXPECT_EQ(std::count(elements.begin(), elements.end(), "polyline"), 4);
    const std::regex points("<polyline[^>]* points=\"([0-9.]+),([0-9.]+) ([0-9.]+),([0-9.]+)\"");
    EXPECT_EQ(std::distance(std::sregex_iterator(svg.begin(), svg.end(), points), std::sregex_iterator()), 4)
        << "every series has one point per concurrency";
    for (const char* label : {"Throughput", "Latency", "aggregate tokens/s", "TTFT p50", "TTFT p99", "ITL p50",
                              "concurrent clients (-c)", ">1</text>", ">2</text>"})
        EXPECT_NE(svg.find(label), std::string::npos) << label;
}

TEST_F(LoadCli, single_concurrency_prints_the_summary) {
    auto r = load({"-c", "2"});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    for (const char* line :
         {"clients:               2\n", "requests:              4 ok, 0 failed\n", "generated tokens:      24 in ",
          "requests/s:", "aggregate tokens/s:", "per-request tokens/s:  mean ", "time to first token:   p50 ",
          "inter-token latency:   p50 "})
        EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
}

TEST_F(LoadCli, refused_requests_are_counted_by_kind) {
    // 600 words do not fit a 256-token slot: the server answers 400.
    auto r = test::run_moeserve({"load", "--url", server_->url(), "-c", "2", "-n", "3", "--max-tokens", "2",
                                 "--prompt-tokens", "600", "--json"});
    EXPECT_EQ(r.status, 1) << r.err;
    const json round = json::parse(r.out)["rounds"][0];
    EXPECT_EQ(round["ok"], 0);
    EXPECT_EQ(round["failed"], 3);
    ASSERT_EQ(round["errors"].size(), 1u) << round;
    EXPECT_EQ(keys(round["errors"][0]), (std::vector<std::string>{"count", "example", "kind"}));
    EXPECT_EQ(round["errors"][0]["kind"], "HTTP 400");
    EXPECT_EQ(round["errors"][0]["count"], 3);
    EXPECT_FALSE(round["errors"][0]["example"].get<std::string>().empty());
    EXPECT_TRUE(round["ttft_ms"]["p50"].is_null());  // nothing measured, not zero
    EXPECT_EQ(round["ttft_ms"]["count"], 0);
}

TEST(LoadCliNoServer, unreachable_server_is_a_connection_error) {
    // A port that was free a moment ago.
    const int sock = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len);
    close(sock);
    const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    auto r = test::run_moeserve({"load", "--url", url, "-c", "1", "-n", "2"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("requests:              0 ok, 2 failed\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("errors:                2 × connection failed"), std::string::npos) << r.out;
}

TEST(LoadCliNoServer, names_bad_arguments) {
    auto r = test::run_moeserve({"load", "-c", "1,x"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("-c expects client counts from 1 to 10000 separated by commas, got '1,x'"), std::string::npos)
        << r.err;
    r = test::run_moeserve({"load", "-c", "0"});
    EXPECT_EQ(r.status, 2);
    r = test::run_moeserve({"load", "--url", "https://example.com"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--url must start with http://"), std::string::npos) << r.err;
    // A plot that cannot be written fails before any request is sent.
    r = test::run_moeserve({"load", "--url", "http://127.0.0.1:1", "--plot", "/nonexistent/dir/x.svg"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--plot: cannot write '/nonexistent/dir/x.svg'"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
}

TEST(LoadCliNoServer, help_documents_the_flags) {
    auto r = test::run_moeserve({"load", "--help"});
    EXPECT_EQ(r.status, 0);
    for (const char* flag : {"--url", "-c, --clients LIST", "--json", "--plot", "inter-token latency"})
        EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace moeserve
