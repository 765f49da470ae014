// nemotron_h_moe benchmark: prefill and decode speed of a synthetic slice of
// Nemotron-3-Nano-30B-A3B at full width — its layers M E M * E (Mamba2, MoE,
// Mamba2, attention, MoE): hidden 2688; Mamba2 64 heads × 64, state 128,
// 8 groups, conv 4; attention 32 / 2 KV heads × 128 without RoPE; 128
// experts top-6 of width 1856 plus a 3712-wide shared expert, all ReLU² —
// at context depth 0 and 16K. Decode speed is also reported as the effective
// bandwidth of the bytes each token reads (weights it touches, KV rows, and
// the recurrent state read and written), against the machine's read
// bandwidth measured in the same run.
//
// usage: nemotron_bench [--threads N] [--dir DIR] [--depths 0,16384] [--prefill 512] [--decode 32]
//                       [--mix Q4_K_M] [--cache f16,q8_0]
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>

#include "backend/cpu/thread_pool.h"
#include "engine/bench_runner.h"
#include "engine/engine.h"
#include "quant/quantize.h"
#include "slice_bench_options.h"
#include "synth/synth_model.h"

using namespace moeserve;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
    const std::string usage =
        "usage: nemotron_bench [--threads N] [--dir DIR] [--depths 0,16384] [--prefill 512] [--decode 32] "
        "[--mix Q4_K_M] [--cache f16,q8_0] [--split on,off]\n";
    const auto [threads, dir, depths, n_prefill, n_decode, mixes, caches, splits] = bench::slice_bench_options_or_exit(
        argc, argv, "nemotron_bench", usage, {.depths = {0, 16384}, .mixes = {"Q4_K_M"}, .caches = {"f16", "q8_0"}});

    const double bw = measure_read_bandwidth(threads);
    fmt::print("read bandwidth ({} threads): {:.1f} GB/s\n\n", threads, bw);
    fmt::print(
        "| weights | KV cache | depth | prefill {} tok/s | decode tok/s | ms/token | MB read/token | effective GB/s "
        "| % of read BW |\n",
        n_prefill);
    fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");

    for (const auto& mix_name : mixes) {
        const SynthSpec spec = nemotron_bench_spec(*file_mix_from_name(mix_name));
        const std::string path = bench::slice_model(dir, "nemotron-" + mix_name, spec);
        for (const auto& cache_name : caches) {
            for (int64_t depth : depths)
                for (const auto& split : splits) {
                    Engine engine(
                        bench::slice_engine(path, threads, cache_name, depth + std::max(n_prefill, n_decode) + 16));
                    bench::apply_attention_split(engine, split);
                    std::mt19937 rng(1);
                    std::uniform_int_distribution<int32_t> tok(0, 255);

                    double prefill_tps = 0;
                    if (depth == 0 && n_prefill > 0) {
                        std::vector<int32_t> prompt(n_prefill);
                        for (auto& t : prompt) t = tok(rng);
                        engine.eval(0, std::span<const int32_t>(prompt.data(), 8), false);  // warm up
                        engine.cache().clear();
                        const double t0 = now();
                        engine.eval(0, prompt, false);
                        prefill_tps = n_prefill / (now() - t0);
                        engine.cache().clear();
                    }
                    fill_cache_synthetic(engine.cache(), 0, depth);
                    int32_t t = tok(rng);
                    engine.eval(0, std::span<const int32_t>(&t, 1), false);  // warm up
                    const double t0 = now();
                    for (int64_t i = 0; i < n_decode; ++i) {
                        t = tok(rng);
                        engine.eval(0, std::span<const int32_t>(&t, 1), false);
                    }
                    const double decode_tps = n_decode / (now() - t0);

                    const ModelParams& p = engine.model().params();
                    const KvCache& cache = engine.cache();
                    double bytes = weight_bytes_per_token(engine.model().file(), p.n_expert, p.n_expert_used);
                    const double avg_depth = depth + 1 + n_decode / 2.0;
                    for (int l = 0; l < cache.n_layer(); ++l) {
                        bytes += avg_depth * (cache.k_row_bytes(l) + cache.v_row_bytes(l));
                        bytes += 2.0 * 4 * (cache.n_embd_r(l) + cache.n_embd_s(l));  // state read and written
                    }
                    const double gbs = bytes * decode_tps / 1e9;
                    fmt::print("| {} | {}{} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.0f}% |\n", mix_name,
                               cache_name, split == "on" ? "" : " (unsplit)", depth,
                               prefill_tps > 0 ? fmt::format("{:.1f}", prefill_tps) : std::string("-"), decode_tps,
                               1000.0 / decode_tps, bytes / 1e6, gbs, 100 * gbs / bw);
                    std::fflush(stdout);
                }
        }
    }
    return 0;
}
