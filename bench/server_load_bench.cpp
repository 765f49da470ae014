// Server load benchmark: for each model and each slot count (-np 1, 2, 4,
// 8), starts `moeserve serve`, drives it with `moeserve load` (C concurrent
// streaming clients) and prints one markdown table row: aggregate generated
// tokens/s, per-request tokens/s and time to first token p50/p99, and from
// the server's /metrics where its inference thread spent the run: tokens per
// forward step, the share of the run spent in forward passes (near 100%:
// the model itself is the limit, not HTTP, JSON or sampling), and the decode
// throughput of the steps that only decoded (tokens over their whole time,
// sampling and streaming included): generation apart from the prompts, which
// batching does not speed up.
//
// Models: the 4-layer synthetic qwen3moe benchmark model (bench_spec,
// Q4_K_M; written to a temporary file) and the tiny qwen3moe fixture.
//
//   build/server_load_bench [--clients 8] [--requests 16] [--max-tokens 64]
//                           [--prompt-tokens 16] [--np 1,2,4,8] [--threads 2]
//                           [--models bench,tiny]
//
// --threads takes a list too (--threads 1,2: every row at -t 1, then at -t 2).
#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "synth/synth_model.h"

namespace fs = std::filesystem;

namespace {

struct Options {
    int clients = 8;
    int requests = 16;
    int max_tokens = 64;
    int prompt_tokens = 16;
    std::vector<int> slots = {1, 2, 4, 8};
    std::vector<int> threads = {2};
    std::vector<std::string> models = {"bench", "tiny"};
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, ',');)
        if (!x.empty()) out.push_back(x);
    return out;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string run_capture(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    while (p && fgets(buf, sizeof(buf), p)) out += buf;
    if (p) pclose(p);
    return out;
}

// A running `moeserve serve`; killed on destruction.
class Server {
  public:
    Server(const std::string& binary, const std::vector<std::string>& args, const fs::path& log) {
        std::vector<std::string> argv = {binary, "serve", "--port", "0"};
        argv.insert(argv.end(), args.begin(), args.end());
        pid_ = fork();
        if (pid_ == 0) {
            FILE* f = std::fopen(log.c_str(), "w");
            dup2(fileno(f), 1);
            dup2(fileno(f), 2);
            std::vector<char*> c;
            for (auto& a : argv) c.push_back(a.data());
            c.push_back(nullptr);
            execv(c[0], c.data());
            _exit(127);
        }
        const std::regex ready("main: listening on http://[0-9.]+:([0-9]+)");
        for (int i = 0; i < 1200 && port_ == 0; ++i) {
            std::smatch m;
            std::string text = slurp(log);
            if (std::regex_search(text, m, ready))
                port_ = std::stoi(m[1]);
            else
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
    ~Server() {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            waitpid(pid_, nullptr, 0);
        }
    }
    int port() const { return port_; }

  private:
    pid_t pid_ = -1;
    int port_ = 0;
};

std::string field(const std::string& text, const std::string& pattern) {
    std::smatch m;
    return std::regex_search(text, m, std::regex(pattern)) ? m[1].str() : "?";
}

// One value of the server's Prometheus text, or -1.
double metric(const std::string& text, const std::string& name) {
    std::smatch m;
    return std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+-]+)")) ? std::stod(m[1].str()) : -1;
}

constexpr const char* kUsage =
    "usage: server_load_bench [--clients 8] [--requests 16] [--max-tokens 64] [--prompt-tokens 16]\n"
    "                         [--np 1,2,4,8] [--threads 2] [--models bench,tiny]\n"
    "Starts `moeserve serve` (next to this binary) for each model, slot count and thread count,\n"
    "drives it with `moeserve load` and prints one markdown row each. --threads and --np take lists;\n"
    "models: bench (the 4-layer synthetic qwen3moe) and tiny (the qwen3moe fixture; $MOESERVE_FIXTURES\n"
    "or ../shared/fixtures).\n";

// A positive whole number, or a message naming the option.
int positive(const std::string& option, const std::string& value) {
    size_t used = 0;
    int n = 0;
    try {
        n = std::stoi(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != value.size() || n <= 0)
        throw std::invalid_argument(option + " wants a positive whole number, got '" + value + "'");
    return n;
}

std::vector<int> positives(const std::string& option, const std::string& value) {
    std::vector<int> out;
    for (const auto& x : split(value)) out.push_back(positive(option, x));
    if (out.empty()) throw std::invalid_argument(option + " wants a list such as 1,4");
    return out;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (k == "-h" || k == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (i + 1 >= argc) throw std::invalid_argument(k + " needs a value");
        const std::string v = argv[++i];
        if (k == "--clients")
            o.clients = positive(k, v);
        else if (k == "--requests")
            o.requests = positive(k, v);
        else if (k == "--max-tokens")
            o.max_tokens = positive(k, v);
        else if (k == "--prompt-tokens")
            o.prompt_tokens = positive(k, v);
        else if (k == "--threads")
            o.threads = positives(k, v);
        else if (k == "--np")
            o.slots = positives(k, v);
        else if (k == "--models") {
            o.models = split(v);
            for (const auto& m : o.models)
                if (m != "bench" && m != "tiny")
                    throw std::invalid_argument("--models: unknown model '" + m + "' (bench or tiny)");
        } else {
            throw std::invalid_argument("unknown option " + k);
        }
    }
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    try {
        o = parse_options(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "server_load_bench: %s\n%s", e.what(), kUsage);
        return 2;
    }
    const std::string binary = (fs::absolute(fs::path(argv[0])).parent_path() / "moeserve").string();
    const fs::path dir = fs::temp_directory_path() / "moeserve-bench";
    fs::create_directories(dir);

    std::vector<std::pair<std::string, std::string>> models;  // label, path
    for (const auto& m : o.models) {
        if (m == "bench") {
            const auto path = (dir / "bench-qwen3moe-4L-q4_k_m.gguf").string();
            if (!fs::exists(path)) moeserve::write_synth_model(path, moeserve::bench_spec(moeserve::FileMix::Q4_K_M));
            models.emplace_back("synthetic qwen3moe 4 layers (bench_spec, Q4_K_M)", path);
        } else if (m == "tiny") {
            const char* env = std::getenv("MOESERVE_FIXTURES");
            const fs::path fixtures =
                env && *env ? fs::path(env)
                            : fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared" / "fixtures";
            const fs::path path = fixtures / "models" / "qwen3moe-tiny-s1-q4_k_m.gguf";
            if (fs::exists(path))
                models.emplace_back("qwen3moe-tiny-s1-q4_k_m (fixture)", path.string());
            else
                std::fprintf(stderr, "skipping the tiny model: %s not found\n", path.c_str());
        }
    }

    std::printf("CPU: %s; %d clients, %d requests of %d generated tokens, prompts of ~%d words\n\n",
                run_capture("lscpu | sed -n 's/^Model name: *//p' | head -1 | tr -d '\\n'").c_str(), o.clients,
                o.requests, o.max_tokens, o.prompt_tokens);
    std::printf(
        "| model | -t | -np | prompt tokens | aggregate tok/s | per-request tok/s (mean) | TTFT p50 ms | TTFT p99 ms | "
        "tokens/step | in forward | decode-step tok/s | host µs/token | ok |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    std::fflush(stdout);
    for (const auto& [label, path] : models) {
        for (int threads : o.threads) {
            for (int np : o.slots) {
                const fs::path log = dir / fmt::format("server-{}-np{}.log", fs::path(path).stem().string(), np);
                fs::remove(log);  // the port is read from this log: no stale one
                Server server(
                    binary,
                    {"-m", path, "-np", std::to_string(np), "-c", "8192", "-t", std::to_string(threads), "--metrics"},
                    log);
                if (server.port() == 0) {
                    std::printf("| %s | %d | %d | server did not start (see %s) ||||||||||\n", label.c_str(), threads,
                                np, log.c_str());
                    continue;
                }
                const std::string report = run_capture(
                    fmt::format("{} load --url http://127.0.0.1:{} -c {} -n {} --max-tokens {} --prompt-tokens {} 2>&1",
                                binary, server.port(), o.clients, o.requests, o.max_tokens, o.prompt_tokens));
                // The server was idle before the run, so its totals are the run's.
                httplib::Client cli("127.0.0.1", server.port());
                const auto res = cli.Get("/metrics");
                const std::string metrics = res && res->status == 200 ? "\n" + res->body : "";
                const double forward_s = metric(metrics, "moeserve:forward_seconds_total");
                const double evaluated = metric(metrics, "moeserve:tokens_evaluated_total");
                const double steps = metric(metrics, "llamacpp:n_decode_total");
                const std::string wall = field(report, "generated tokens: +[0-9]+ in ([0-9.]+) s");
                const std::string per_step = steps > 0 ? fmt::format("{:.1f}", evaluated / steps) : "?";
                const std::string forward_share =
                    forward_s >= 0 && wall != "?" ? fmt::format("{:.0f}%", 100.0 * forward_s / std::stod(wall)) : "?";
                const double decode_tokens = metric(metrics, "moeserve:decode_steps_tokens_total");
                const double decode_s = metric(metrics, "moeserve:decode_steps_seconds_total");
                const std::string decode_rate =
                    decode_tokens > 0 && decode_s > 0 ? fmt::format("{:.1f}", decode_tokens / decode_s) : "?";
                // Per generated token of those steps, the time outside the forward pass: scheduling,
                // sampling, detokenizing and handing the token to its stream.
                const double decode_forward_s = metric(metrics, "moeserve:decode_steps_forward_seconds_total");
                const std::string host_us =
                    decode_tokens > 0 && decode_forward_s >= 0
                        ? fmt::format("{:.1f}", 1e6 * (decode_s - decode_forward_s) / decode_tokens)
                        : "?";
                std::printf("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%d |\n", label.c_str(),
                            threads, np, field(report, "prompt tokens: +([0-9.]+)").c_str(),
                            field(report, "aggregate tokens/s: +([0-9.]+)").c_str(),
                            field(report, "per-request tokens/s: +mean ([0-9.]+)").c_str(),
                            field(report, "time to first token: +p50 ([0-9.]+) ms").c_str(),
                            field(report, "p99 ([0-9.]+) ms").c_str(), per_step.c_str(), forward_share.c_str(),
                            decode_rate.c_str(), host_us.c_str(), field(report, "requests: +([0-9]+) ok").c_str(),
                            o.requests);
                std::fflush(stdout);
            }
        }
    }
    return 0;
}
