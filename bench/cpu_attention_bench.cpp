// The CPU backend's attention op alone, one decoded token over a cache of
// realistic width at several depths: GLM-4.7-Flash's MLA (20 heads over a
// 576-value latent+RoPE row, V its first 512 values) and Qwen3-30B-A3B's GQA
// (32 query heads over 4 KV heads of 128). Timed over repetitions, reported
// per cached row (wall time and thread time), as the share of the machine's
// f32 multiply-add peak that the op's multiply-adds (scores and V sums) need,
// and as GB/s of the cache bytes it reads: whether the op at depth waits on
// arithmetic or on memory, and what a kernel change is worth, without the
// rest of a model around it (deepseek2_bench and engine_bench time that).
//
// usage: cpu_attention_bench [--threads N] [--depths 4096,32768] [--cache f16,q8_0,q4_0]
//                            [--shapes mla,gqa] [--reps N] [--split on,off]
// --split off: GQA decode without its cells split into chunks across the
// threads (one softmax over all cells, one work item per KV head), to
// compare with the default in the same run.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "engine/bench_runner.h"
#include "engine/engine.h"
#include "memory/kv_cache.h"
#include "quant/ggml_type.h"
#include "slice_bench_options.h"

using namespace moeserve;

namespace {

struct Shape {
    const char* name;
    int n_head, n_head_kv, head_k, head_v;  // MLA: one shared row of head_k values, V its first head_v
    bool mla;
};

constexpr Shape kMla{"mla", 20, 1, 576, 512, true};
constexpr Shape kGqa{"gqa", 32, 4, 128, 128, false};

KvCacheConfig cache_config(const Shape& sh, GgmlType type, int64_t n_cells) {
    KvCacheConfig cfg;
    cfg.n_cells = n_cells;
    cfg.n_seq_max = 1;
    cfg.type_k = cfg.type_v = type;
    cfg.n_embd_k = {static_cast<int64_t>(sh.n_head_kv) * sh.head_k};
    cfg.n_embd_v = {sh.mla ? 0 : static_cast<int64_t>(sh.n_head_kv) * sh.head_v};
    cfg.head_dim_k = sh.head_k;
    cfg.head_dim_v = sh.head_v;
    cfg.allow_rotation = !sh.mla;  // a quantized GQA cache is Hadamard-rotated, as the engine's
    return cfg;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run(Backend& backend, const Shape& sh, bool split, GgmlType type, int64_t depth, int reps, int threads, double fma,
         double bw) {
    KvCache cache(cache_config(sh, type, depth + 1));
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int64_t n_k = cache.config().n_embd_k[0], n_v = cache.config().n_embd_v[0];
    constexpr int64_t kBatch = 1024;  // rows stored at a time
    std::vector<float> k(kBatch * n_k), v(kBatch * std::max<int64_t>(n_v, 1));
    for (int64_t done = 0; done < depth + 1; done += kBatch) {
        const int64_t n = std::min(kBatch, depth + 1 - done);
        for (auto& x : k) x = dist(rng);
        for (auto& x : v) x = dist(rng);
        backend.store_kv(cache, 0, k.data(), n_v ? v.data() : nullptr, cache.append(0, n));
    }
    std::vector<float> q(static_cast<size_t>(sh.n_head) * sh.head_k), out(static_cast<size_t>(sh.n_head) * sh.head_v);
    for (auto& x : q) x = 0.05f * dist(rng);
    const int32_t* cells = cache.seq_cells(0).data();
    const int32_t n_cells = static_cast<int32_t>(depth + 1);
    const AttentionRows rows{std::span<const int32_t* const>(&cells, 1), std::span<const int32_t>(&n_cells, 1)};
    const float scale = 1.0f / std::sqrt(static_cast<float>(sh.mla ? 192 + 64 : sh.head_k));
    auto once = [&] {
        if (sh.mla)
            backend.attention_mla(cache, 0, q.data(), 1, sh.n_head, sh.head_v, rows, scale, out.data());
        else
            backend.attention(cache, 0, q.data(), 1, sh.n_head, rows, scale, out.data());
    };
    once();  // warm-up: scratch buffers, first touch
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) once();
    const double per_call = seconds_since(t0) / reps;
    const double ns_row = per_call / n_cells * 1e9;
    // Multiply-adds per cached row: every query head scores its K row and sums its V row.
    const double macs = static_cast<double>(sh.n_head) * (sh.head_k + sh.head_v);
    const double bytes = static_cast<double>(cache.k_row_bytes(0) + cache.v_row_bytes(0)) * n_cells;
    fmt::print("| {}{} | {} | {} | {:.3f} | {:.1f} | {:.1f} | {:.0f}% | {:.1f} | {:.0f}% |\n", sh.name,
               sh.mla || split ? "" : " (unsplit)", ggml_type_name(type), depth, per_call * 1e3, ns_row,
               ns_row * threads, 100.0 * macs * n_cells / per_call / (fma * 1e9), bytes / per_call / 1e9,
               100.0 * bytes / per_call / (bw * 1e9));
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2, reps = 20;
    std::vector<int64_t> depths = {4096, 32768};
    std::vector<std::string> caches = {"f16", "q8_0", "q4_0"}, shapes = {"mla", "gqa"}, splits = {"on"};
    const char* usage =
        "usage: cpu_attention_bench [--threads N] [--depths 4096,32768] [--cache f16,q8_0,q4_0] "
        "[--shapes mla,gqa] [--reps N] [--split on,off]\n";
    try {
        const std::vector<std::string> argv_rest = bench::bench_args(argc, argv);
        cli::Args args(argv_rest);
        while (!args.done()) {
            if (args.flag({"-h", "--help"})) {
                fmt::print("{}", usage);
                return 0;
            }
            if (args.flag({"--threads"})) {
                threads = static_cast<int>(args.int_value(1, 1024));
            } else if (args.flag({"--reps"})) {
                reps = static_cast<int>(args.int_value(1, 1 << 20));
            } else if (args.flag({"--depths"})) {
                depths = bench::depths_value(args);
            } else if (args.flag({"--cache"})) {
                caches = bench::caches_value(args);
            } else if (args.flag({"--shapes"})) {
                shapes = args.list_value();
                for (const auto& sh : shapes)
                    if (sh != "mla" && sh != "gqa")
                        throw cli::UsageError("option --shapes: unknown shape '" + sh + "' (mla, gqa)");
            } else if (args.flag({"--split"})) {
                splits = args.list_value();
                for (const auto& s : splits)
                    if (s != "on" && s != "off") throw cli::UsageError("option --split: expected on or off, got " + s);
            } else {
                throw cli::UsageError("unknown option " + args.next());
            }
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "cpu_attention_bench: {}\n{}", e.what(), usage);
        return 2;
    }
    const double bw = measure_read_bandwidth(threads);
    const double fma = measure_fma_rate(threads);
    fmt::print("{} threads: read bandwidth {:.1f} GB/s, f32 multiply-adds {:.1f} G/s\n\n", threads, bw, fma);
    fmt::print(
        "| shape | cache | depth | ms per token | ns per row | thread-ns per row | % of FMA peak | cache GB/s | % "
        "of read BW |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    CpuBackend split(threads), unsplit(threads);
    unsplit.set_attention_split(int64_t{1} << 40);
    try {
        for (const auto& shape_name : shapes) {
            const Shape& sh = shape_name == "mla" ? kMla : kGqa;
            for (const auto& cache_name : caches)
                for (int64_t depth : depths)
                    for (const auto& s : sh.mla ? std::vector<std::string>{"on"} : splits)
                        run(s == "on" ? split : unsplit, sh, s == "on", parse_cache_type(cache_name), depth, reps,
                            threads, fma, bw);
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "cpu_attention_bench: {}\n", e.what());
        return 1;
    }
    return 0;
}
