// moeserve bench: prefill and decode speed at context depths, like
// llama-bench (-p, -n, -d, -r, -t, -ctk, -ctv take comma-separated lists),
// with each decode rate also given as the bytes a token reads per second
// next to the machine's measured read bandwidth.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "backend/select_backend.h"
#include "cli/args.h"
#include "cli/command.h"
#include "cli/engine_flags.h"
#include "engine/bench_runner.h"
#include "memory/byte_size.h"

namespace moeserve::cli {
namespace {

const char* kUsage =
    "usage: moeserve bench -m MODEL [-p 512] [-n 128] [-d 0] [options]\n"
    "\n"
    "Measures prompt processing (ppN: N prompt tokens in batches of -ub) and\n"
    "token generation (tgN: N tokens one at a time) at each context depth.\n"
    "The depth is filled with synthetic K/V rows (decode speed depends only on\n"
    "how much is read), or by evaluating random tokens with --real-depth.\n"
    "Lists are comma-separated; every combination is run.\n"
    "\n"
    "  -m, --model FILE          GGUF model\n"
    "  -p, --n-prompt N,...      prompt lengths (default 512; 0 = no prefill test)\n"
    "  -n, --n-gen N,...         generated lengths (default 128; 0 = no decode test)\n"
    "  -d, --n-depth N,...       context depths (default 0)\n"
    "  -r, --repetitions N       repetitions of each test (default 5)\n"
    "  -t, --threads N,...       threads (default: all cores)\n"
    "  -ctk, --cache-type-k T,.. K cache types (default f16)\n"
    "  -ctv, --cache-type-v T,.. V cache types (default f16)\n"
    "  -ub, --ubatch-size N      prompt tokens per forward pass (default 512)\n"
    "  -npl, --parallel N,...    decode tests: N sequences decoding side by side, one\n"
    "                            token each per forward pass, as N busy server slots\n"
    "                            (default 1; t/s counts all of them: tg128 x4)\n"
    "  -ngl, --n-gpu-layers N    0 = CPU (default); all / N > layers = the GPU (CUDA builds); up to the layer\n"
    "                            count = the head and the last N-1 blocks on the GPU, the rest on the CPU\n"
    "  -cmoe, -ncmoe N, -ot REGEX=BUFTYPE,...\n"
    "                            GPU runs: routed experts kept in host memory and run on the CPU (as serve)\n"
    "  --real-depth              fill the depth by prefilling random tokens\n"
    "  -o, --output FORMAT       md (default), json or csv\n"
    "  --json, --csv             the same as -o json, -o csv\n";

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
    return out;
}

std::vector<int64_t> int_list(const std::string& flag, const std::string& s, int64_t min) {
    std::vector<int64_t> out;
    for (const auto& item : split(s)) {
        size_t used = 0;
        int64_t v = 0;
        try {
            v = std::stoll(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != item.size() || v < min)
            throw UsageError(fmt::format("option {} expects integers of at least {}, got '{}'", flag, min, s));
        out.push_back(v);
    }
    if (out.empty()) throw UsageError("option " + flag + " needs a value");
    return out;
}

struct Result {
    std::string model;
    uint64_t model_size = 0;
    int64_t n_params = 0;
    int threads = 0;
    GgmlType type_k{}, type_v{};
    int64_t n_ubatch = 0;
    BenchTest test;
    std::vector<double> samples_s, samples_ts;
    double bytes_per_token = 0;   // decode tests: weights + KV read per token
    double read_bw = 0;           // GB/s
    std::string backend = "CPU";  // CPU, CUDA, or CPU+CUDA (a layer split)
};

// The backend column: what ran the layers, as llama-bench names it.
std::string backend_column(const std::string& name) {
    if (name.find(" + ") != std::string::npos) return "CPU+CUDA";
    return name.rfind("cuda", 0) == 0 ? "CUDA" : "CPU";
}

std::string test_name(const BenchTest& t) {
    std::string name = t.n_prompt > 0 ? fmt::format("pp{}", t.n_prompt) : fmt::format("tg{}", t.n_gen);
    if (t.n_prompt == 0 && t.n_parallel > 1) name += fmt::format(" x{}", t.n_parallel);
    if (t.depth > 0) name += fmt::format(" @ d{}", t.depth);
    return name;
}

void print_markdown(const std::vector<Result>& results) {
    std::map<int, double> bw;
    double gpu_bw = 0;
    for (const auto& r : results) (r.backend == "CUDA" ? gpu_bw : bw[r.threads]) = r.read_bw;
    for (const auto& [t, b] : bw) fmt::print("read bandwidth ({} threads): {:.1f} GB/s\n", t, b);
    if (gpu_bw > 0) fmt::print("GPU copy bandwidth: {:.1f} GB/s\n", gpu_bw);
    fmt::print(
        "\n| model | size | params | backend | threads | type_k | type_v | test | t/s | MB/token | GB/s | % of "
        "read BW |\n");
    fmt::print("|---|---:|---:|---|---:|---|---|---|---:|---:|---:|---:|\n");
    for (const auto& r : results) {
        const BenchStats st = bench_stats(r.samples_ts);
        std::string mb = "-", gbs = "-", pct = "-";
        if (r.test.n_gen > 0 && r.test.n_parallel == 1) {
            const double g = r.bytes_per_token * st.mean / 1e9;
            mb = fmt::format("{:.1f}", r.bytes_per_token / 1e6);
            gbs = fmt::format("{:.1f}", g);
            pct = fmt::format("{:.0f}%", 100 * g / r.read_bw);
        }
        fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {:.2f} ± {:.2f} | {} | {} | {} |\n", r.model,
                   format_bytes(r.model_size), format_param_count(r.n_params), r.backend, r.threads,
                   ggml_type_name(r.type_k), ggml_type_name(r.type_v), test_name(r.test), st.mean, st.stddev, mb, gbs,
                   pct);
    }
}

nlohmann::ordered_json to_json(const Result& r) {
    const BenchStats ts = bench_stats(r.samples_ts);
    std::vector<double> ns;
    for (double s : r.samples_s) ns.push_back(s * 1e9);
    const BenchStats st_ns = bench_stats(ns);
    nlohmann::ordered_json j;
    j["model_filename"] = r.model;
    j["model_size"] = r.model_size;
    j["model_n_params"] = r.n_params;
    j["backend"] = r.backend;
    j["n_threads"] = r.threads;
    j["n_ubatch"] = r.n_ubatch;
    j["type_k"] = std::string(ggml_type_name(r.type_k));
    j["type_v"] = std::string(ggml_type_name(r.type_v));
    j["n_prompt"] = r.test.n_prompt;
    j["n_gen"] = r.test.n_gen;
    j["n_depth"] = r.test.depth;
    j["real_depth"] = r.test.real_depth;
    j["test"] = test_name(r.test);
    j["avg_ns"] = static_cast<int64_t>(st_ns.mean);
    j["stddev_ns"] = static_cast<int64_t>(st_ns.stddev);
    j["avg_ts"] = ts.mean;
    j["stddev_ts"] = ts.stddev;
    j["samples_ns"] = ns;
    j["samples_ts"] = r.samples_ts;
    const bool bytes_known = r.test.n_gen > 0 && r.test.n_parallel == 1;  // one sequence: weights + its KV
    j["n_parallel"] = r.test.n_parallel;
    j["bytes_per_token"] = bytes_known ? nlohmann::ordered_json(r.bytes_per_token) : nullptr;
    j["effective_gbs"] = bytes_known ? nlohmann::ordered_json(r.bytes_per_token * ts.mean / 1e9) : nullptr;
    j["read_bandwidth_gbs"] = r.read_bw;
    return j;
}

void print_csv(const std::vector<Result>& results) {
    const char* cols[] = {"model_filename",  "model_size",    "model_n_params",
                          "backend",         "n_threads",     "n_ubatch",
                          "type_k",          "type_v",        "n_prompt",
                          "n_gen",           "n_parallel",    "n_depth",
                          "real_depth",      "test",          "avg_ns",
                          "stddev_ns",       "avg_ts",        "stddev_ts",
                          "bytes_per_token", "effective_gbs", "read_bandwidth_gbs"};
    std::string line;
    for (const char* c : cols) line += (line.empty() ? "" : ",") + std::string(c);
    fmt::print("{}\n", line);
    for (const auto& r : results) {
        const auto j = to_json(r);
        line.clear();
        for (const char* c : cols) {
            const auto& v = j[c];
            std::string cell = v.is_null() ? "" : v.is_string() ? "\"" + v.get<std::string>() + "\"" : v.dump();
            line += (line.empty() ? "" : ",") + cell;
        }
        fmt::print("{}\n", line);
    }
}

int run_bench(const std::vector<std::string>& argv) {
    Args args(argv);
    std::string model, format = "md";
    std::vector<int64_t> prompts = {512}, gens = {128}, depths = {0}, parallel = {1};
    std::vector<int64_t> threads = {static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()))};
    std::vector<GgmlType> types_k = {GgmlType::F16}, types_v = {GgmlType::F16};
    int64_t reps = 5, n_ubatch = 512;
    bool real_depth = false;
    int n_gpu_layers = 0;
    ExpertPlacementFlags experts;
    auto type_list = [&](const std::string& s) {
        std::vector<GgmlType> out;
        for (const auto& item : split(s)) out.push_back(parse_cache_type(item));
        if (out.empty()) throw UsageError("a cache type list needs a value");
        return out;
    };
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (args.flag({"-m", "--model"})) {
            model = args.value();
        } else if (args.flag({"-p", "--n-prompt"})) {
            prompts = int_list("-p", args.value(), 0);
        } else if (args.flag({"-n", "--n-gen"})) {
            gens = int_list("-n", args.value(), 0);
        } else if (args.flag({"-d", "--n-depth"})) {
            depths = int_list("-d", args.value(), 0);
        } else if (args.flag({"-r", "--repetitions"})) {
            reps = args.int_value();
            if (reps < 1) throw UsageError("--repetitions must be at least 1");
        } else if (args.flag({"-t", "--threads"})) {
            threads = int_list("-t", args.value(), 1);
        } else if (args.flag({"-ctk", "--cache-type-k"})) {
            types_k = type_list(args.value());
        } else if (args.flag({"-ctv", "--cache-type-v"})) {
            types_v = type_list(args.value());
        } else if (args.flag({"-ub", "--ubatch-size"})) {
            n_ubatch = args.int_value();
            if (n_ubatch < 1) throw UsageError("--ubatch-size must be at least 1");
        } else if (args.flag({"-npl", "--parallel"})) {
            parallel = int_list("-npl", args.value(), 1);
        } else if (args.flag({"-ngl", "--gpu-layers", "--n-gpu-layers"})) {
            try {
                n_gpu_layers = parse_gpu_layers(args.value());
            } catch (const std::invalid_argument& e) {
                throw UsageError(e.what());
            }
        } else if (parse_expert_placement_flag(args, experts)) {
        } else if (args.flag({"--real-depth"})) {
            real_depth = true;
        } else if (args.flag({"-o", "--output"})) {
            format = args.value();
            if (format != "md" && format != "json" && format != "csv")
                throw UsageError("--output must be md, json or csv, got '" + format + "'");
        } else if (args.flag({"--json"})) {
            format = "json";
        } else if (args.flag({"--csv"})) {
            format = "csv";
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve bench --help)");
        }
    }
    if (model.empty()) throw UsageError("no model given (-m FILE)");

    std::vector<BenchTest> tests;
    for (int64_t d : depths) {
        for (int64_t p : prompts)
            if (p > 0) tests.push_back({p, 0, d, real_depth});
        for (int64_t n : gens)
            for (int64_t np : parallel)
                if (n > 0) tests.push_back({0, n, d, real_depth, static_cast<int>(np)});
    }
    if (tests.empty()) throw UsageError("nothing to measure: -p and -n are both 0");
    int64_t cells = 0;
    int n_seq = 1;
    for (const auto& t : tests) {
        cells = std::max(cells, (t.depth + std::max<int64_t>(t.n_prompt, 32) + t.n_gen + 1) * t.n_parallel);
        n_seq = std::max(n_seq, t.n_parallel);
    }

    std::vector<Result> results;
    std::map<int, double> bandwidth;
    double gpu_bw = -1;
    auto gpu_bandwidth = [&] { return gpu_bw >= 0 ? gpu_bw : (gpu_bw = measure_gpu_copy_bandwidth()); };
    for (int64_t nt : threads) {
        if (!bandwidth.count(static_cast<int>(nt))) bandwidth[nt] = measure_read_bandwidth(static_cast<int>(nt));
        for (GgmlType tk : types_k)
            for (GgmlType tv : types_v) {
                EngineOptions opt;
                opt.model_path = model;
                opt.n_threads = static_cast<int>(nt);
                opt.n_gpu_layers = n_gpu_layers;
                opt.experts = experts;
                opt.n_ctx = cells;
                opt.n_seq = n_seq;
                opt.type_k = tk;
                opt.type_v = tv;
                opt.n_ubatch = n_ubatch;
                Engine engine(opt);
                if (!engine.backend_note().empty()) std::fprintf(stderr, "%s\n", engine.backend_note().c_str());
                const ModelParams& mp = engine.model().params();
                const GgufFile& f = engine.model().file();
                const double weights = weight_bytes_per_token(f, mp.n_expert, mp.n_expert_used);
                for (const auto& t : tests) {
                    Result r;
                    r.model = model;
                    r.model_size = engine.plan().weights_bytes + engine.plan().host_weights_bytes;
                    r.n_params = engine.plan().shape.n_params;
                    r.threads = static_cast<int>(nt);
                    r.type_k = tk;
                    r.type_v = tv;
                    r.n_ubatch = n_ubatch;
                    r.test = t;
                    // On a GPU the bound is the card's copy bandwidth, not the host's.
                    r.read_bw = engine.backend().memory().is_host() ? bandwidth[nt] : gpu_bandwidth();
                    r.backend = backend_column(engine.backend().name());
                    // A decoded token at depth d + i reads d + i + 1 cells; the average over the test.
                    r.bytes_per_token = weights + kv_bytes_read(engine.cache(), t.depth + 1 + (t.n_gen - 1) / 2.0);
                    for (int64_t i = 0; i < reps; ++i) {
                        const BenchSample s = run_bench_test(engine, t, static_cast<uint64_t>(i) + 1);
                        r.samples_s.push_back(s.seconds);
                        r.samples_ts.push_back(s.tokens_per_s);
                    }
                    if (format == "md")
                        std::fprintf(stderr, "%s: %.2f t/s\n", test_name(t).c_str(), bench_stats(r.samples_ts).mean);
                    results.push_back(std::move(r));
                }
                if (const std::string s = engine.backend().pass_summary(); !s.empty())
                    std::fprintf(stderr, "%s\n", s.c_str());
            }
    }
    if (format == "json") {
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        for (const auto& r : results) all.push_back(to_json(r));
        fmt::print("{}\n", all.dump(2));
    } else if (format == "csv") {
        print_csv(results);
    } else {
        print_markdown(results);
    }
    return 0;
}

}  // namespace

MOESERVE_COMMAND("bench", "prefill and decode speed at context depths (like llama-bench), with GB/s", run_bench);

}  // namespace moeserve::cli
