// Engine benchmark: prefill and decode speed of a synthetic qwen3moe of
// realistic layer width (hidden 2048, 32/4 heads of 128, 128 experts top-8,
// expert FFN 768, 4 layers), at Q4_K_M and IQ4_XS, with f16 and q4_0 KV
// caches, at context depth 0 and 8192 (prefill: a prompt after that many
// cached positions). Decode speed is also reported as the
// effective bandwidth of the weight and KV bytes each token reads, against
// the machine's read bandwidth measured in the same run.
//
// usage: engine_bench [--threads N] [--dir DIR] [--depths 0,8192] [--prefill 512] [--decode 32]
//                     [--mix Q4_K_M,IQ4_XS] [--cache f16,q4_0] [--split on,off]
#include <fmt/format.h>

#include <filesystem>
#include <sstream>

#include "engine/bench_runner.h"
#include "slice_bench_options.h"
#include "synth/synth_model.h"

using namespace moeserve;

int main(int argc, char** argv) {
    const std::string usage =
        "usage: engine_bench [--threads N] [--dir DIR] [--depths 0,8192] [--prefill 512] [--decode 32] "
        "[--mix Q4_K_M,IQ4_XS] [--cache f16,q4_0] [--split on,off]\n";
    const auto [threads, dir, depths, n_prefill, n_decode, mixes, caches, splits] = bench::slice_bench_options_or_exit(
        argc, argv, "engine_bench", usage,
        {.depths = {0, 8192}, .mixes = {"Q4_K_M", "IQ4_XS"}, .caches = {"f16", "q4_0"}});

    const double bw = measure_read_bandwidth(threads);
    fmt::print("read bandwidth ({} threads): {:.1f} GB/s\n\n", threads, bw);
    fmt::print(
        "| weights | KV cache | depth | prefill {} tok/s | decode tok/s | MB read/token | effective GB/s | % of read "
        "BW |\n",
        n_prefill);
    fmt::print("|---|---|---:|---:|---:|---:|---:|---:|\n");

    for (const auto& mix_name : mixes) {
        const FileMix mix = *file_mix_from_name(mix_name);
        const SynthSpec spec = bench_spec(mix);
        const std::string path = bench::slice_model(dir, mix_name, spec);
        for (const auto& cache_name : caches) {
            for (int64_t depth : depths)
                for (const auto& split : splits) {
                    Engine engine(
                        bench::slice_engine(path, threads, cache_name, depth + std::max(n_prefill, n_decode) + 16));
                    bench::apply_attention_split(engine, split);
                    double prefill_tps = 0;
                    if (n_prefill > 0)  // a prompt after `depth` cached positions
                        prefill_tps = run_bench_test(engine, {n_prefill, 0, depth, false}, 1).tokens_per_s;
                    const double decode_tps = run_bench_test(engine, {0, n_decode, depth, false}, 2).tokens_per_s;

                    const ModelParams& p = engine.model().params();
                    double bytes = weight_bytes_per_token(engine.model().file(), p.n_expert, p.n_expert_used);
                    bytes += kv_bytes_read(engine.cache(), depth + 1 + n_decode / 2.0);
                    const double gbs = bytes * decode_tps / 1e9;
                    fmt::print("| {} | {}{} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.0f}% |\n", mix_name, cache_name,
                               split == "on" ? "" : " (unsplit)", depth,
                               prefill_tps > 0 ? fmt::format("{:.1f}", prefill_tps) : std::string("-"), decode_tps,
                               bytes / 1e6, gbs, 100 * gbs / bw);
                    std::fflush(stdout);
                }
        }
    }
    return 0;
}
