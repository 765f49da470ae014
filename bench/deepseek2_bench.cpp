// GLM-4.7-Flash (deepseek2) benchmark: prefill and decode speed of a
// synthetic slice of the real model at full width — hidden 2048, 20 heads,
// q_lora 768, kv_lora 512, qk_nope 192, qk_rope 64, v_head 256; the dense
// first layer (FFN 10240) and two MoE layers (64 experts top-4 of 1536 plus
// a shared expert) — with the Q4_K_M type mix and a 704-token vocabulary,
// at several context depths and cache types. Decode speed is also reported
// as the effective bandwidth of the weight and cache bytes one token reads,
// against the machine's read bandwidth measured in the same run.
//
// usage: deepseek2_bench [--threads N] [--dir DIR] [--depths 0,8192,32768] [--prefill 512] [--decode 32]
//                        [--mix Q4_K_M] [--cache f16,q4_0]
#include <fmt/format.h>

#include <filesystem>
#include <sstream>

#include "engine/bench_runner.h"
#include "slice_bench_options.h"
#include "synth/presets.h"

using namespace moeserve;

int main(int argc, char** argv) {
    const std::string usage =
        "usage: deepseek2_bench [--threads N] [--dir DIR] [--depths 0,8192,32768] [--prefill 512] [--decode 32] "
        "[--mix Q4_K_M] [--cache f16,q4_0]\n";
    const auto [threads, dir, depths, n_prefill, n_decode, mixes, caches, splits] = bench::slice_bench_options_or_exit(
        argc, argv, "deepseek2_bench", usage,
        {.depths = {0, 8192, 32768}, .mixes = {"Q4_K_M"}, .caches = {"f16", "q4_0"}});
    if (splits != std::vector<std::string>{"on"}) {
        std::fprintf(stderr, "deepseek2_bench: --split is for GQA attention; MLA splits its rows on its own\n");
        return 2;
    }

    const double bw = measure_read_bandwidth(threads);
    const double fma = measure_fma_rate(threads);
    fmt::print("read bandwidth ({} threads): {:.1f} GB/s; f32 multiply-adds: {:.1f} G/s\n\n", threads, bw, fma);
    // The last two columns: the time per token that 50% of the weights+cache
    // bound allows (issue 9's bar at depth), and the time the MLA op's own
    // f32 multiply-adds take at the measured peak: per cached row and layer,
    // every head scores the latent+RoPE row and sums the latent.
    fmt::print(
        "| weights | KV cache | depth | prefill {} tok/s | decode tok/s | ms/token | MB read/token | effective "
        "GB/s | % of read BW | ms at 50% of bound | MLA MACs at peak, ms |\n",
        n_prefill);
    fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& mix_name : mixes) {
        SynthSpec spec = *synth_preset("glm-4.7-flash", *file_mix_from_name(mix_name));
        cut_layers(spec, 3);  // the dense layer and two MoE layers
        spec.n_vocab = 704;   // a small head, so the layers dominate as they do in the 47-layer model
        const std::string path = bench::slice_model(dir, "glm47flash-3L-" + mix_name, spec);
        for (const auto& cache_name : caches) {
            for (int64_t depth : depths) {
                Engine engine(
                    bench::slice_engine(path, threads, cache_name, depth + std::max(n_prefill, n_decode) + 64));
                const BenchSample prefill =
                    n_prefill > 0 ? run_bench_test(engine, {n_prefill, 0, depth}, 1) : BenchSample{};
                const BenchSample decode = run_bench_test(engine, {0, n_decode, depth}, 2);

                const ModelParams& p = engine.model().params();
                const double bytes = weight_bytes_per_token(engine.model().file(), p.n_expert, p.n_expert_used) +
                                     kv_bytes_read(engine.cache(), depth + 1 + n_decode / 2.0);
                const double gbs = bytes * decode.tokens_per_s / 1e9;
                double macs = 0;  // per decoded token, at the test's mean depth
                for (int l = 0; l < engine.cache().n_layer(); ++l)
                    if (engine.cache().config().n_embd_k[l] > 0)
                        macs += static_cast<double>(p.n_head[l]) *
                                (engine.cache().config().n_embd_k[l] + spec.kv_lora_rank) *
                                (depth + 1 + n_decode / 2.0);
                fmt::print(
                    "| {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.0f}% | {:.1f} | {:.1f} |\n",
                    mix_name, cache_name, depth, prefill.tokens_per_s, decode.tokens_per_s,
                    1000.0 / decode.tokens_per_s, bytes / 1e6, gbs, 100 * gbs / bw, 2 * bytes / bw / 1e6,
                    macs / fma / 1e6);
                std::fflush(stdout);
            }
        }
    }
    return 0;
}
