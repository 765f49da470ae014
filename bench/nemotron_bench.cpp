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
//                       [--mix Q4_K_M] [--cache f16]
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>

#include "backend/cpu/thread_pool.h"
#include "engine/engine.h"
#include "quant/quantize.h"
#include "synth/synth_model.h"

using namespace moeserve;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// STREAM-style read bandwidth: every thread sums its share of a 1 GiB
// buffer. Best of several passes.
double measure_read_bandwidth(int threads) {
    const size_t n = size_t{1} << 28;  // 256 Mi floats
    std::vector<float> buf(n, 1.0f);
    ThreadPool pool(threads);
    double best = 0;
    std::vector<double> sums(threads);
    for (int pass = 0; pass < 5; ++pass) {
        double t0 = now();
        pool.run([&](int i, int nt) {
            const size_t b = n * i / nt, e = n * (i + 1) / nt;
            float s[8] = {};
            for (size_t j = b; j + 8 <= e; j += 8)
                for (int k = 0; k < 8; ++k) s[k] += buf[j + k];
            sums[i] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
        });
        best = std::max(best, n * sizeof(float) / (now() - t0) / 1e9);
    }
    return best;
}

// Weight bytes one decoded token reads: every non-expert tensor, its
// n_used of n_expert routed experts per MoE layer, one embedding row.
double weight_bytes_per_token(const GgufFile& f, int n_expert, int n_used) {
    double bytes = 0;
    for (const auto& t : f.tensors()) {
        if (t.name == "token_embd.weight")
            bytes += t.row_bytes();
        else if (t.name.find("_exps.") != std::string::npos)
            bytes += static_cast<double>(t.nbytes) * n_used / n_expert;
        else
            bytes += t.nbytes;
    }
    return bytes;
}

// Puts `depth` positions of plausible K/V rows into sequence 0 of the
// attention layers without computing them: decode cost at depth depends
// only on how much is read. (The recurrent state is independent of depth.)
void fill_cache(KvCache& cache, int64_t depth) {
    std::vector<int32_t> cells = cache.append(0, depth);
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (int l = 0; l < cache.n_layer(); ++l) {
        const int64_t nk = cache.config().n_embd_k[l], nv = cache.config().n_embd_v[l];
        if (nk == 0) continue;
        std::vector<uint8_t> krows(cache.k_row_bytes(l) * 16), vrows(cache.v_row_bytes(l) * 16);
        std::vector<float> x(std::max(nk, nv));
        for (int r = 0; r < 16; ++r) {
            for (auto& v : x) v = dist(rng);
            quantize_row(cache.type_k(), x.data(), krows.data() + r * cache.k_row_bytes(l), nk);
            quantize_row(cache.type_v(), x.data(), vrows.data() + r * cache.v_row_bytes(l), nv);
        }
        for (int64_t i = 0; i < depth; ++i) {
            std::memcpy(cache.k_row(l, cells[i]), krows.data() + (i % 16) * cache.k_row_bytes(l), cache.k_row_bytes(l));
            std::memcpy(cache.v_row(l, cells[i]), vrows.data() + (i % 16) * cache.v_row_bytes(l), cache.v_row_bytes(l));
        }
    }
}

std::vector<int64_t> parse_list(const std::string& s) {
    std::vector<int64_t> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2;
    std::string dir = std::filesystem::temp_directory_path().string();
    std::vector<int64_t> depths = {0, 16384};
    int64_t n_prefill = 512, n_decode = 32;
    std::vector<std::string> mixes = {"Q4_K_M"}, caches = {"f16", "q8_0"};
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--threads")
            threads = std::stoi(next());
        else if (a == "--dir")
            dir = next();
        else if (a == "--depths")
            depths = parse_list(next());
        else if (a == "--prefill")
            n_prefill = std::stoll(next());
        else if (a == "--decode")
            n_decode = std::stoll(next());
        else if (a == "--mix")
            mixes = {next()};
        else if (a == "--cache")
            caches = {next()};
        else {
            fmt::print(stderr,
                       "usage: nemotron_bench [--threads N] [--dir DIR] [--depths 0,16384] [--prefill 512] "
                       "[--decode 32] [--mix Q4_K_M] [--cache f16]\n");
            return 2;
        }
    }

    const double bw = measure_read_bandwidth(threads);
    fmt::print("read bandwidth ({} threads): {:.1f} GB/s\n\n", threads, bw);
    fmt::print(
        "| weights | KV cache | depth | prefill {} tok/s | decode tok/s | ms/token | MB read/token | effective GB/s "
        "| % of read BW |\n",
        n_prefill);
    fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");

    for (const auto& mix_name : mixes) {
        const auto mix = file_mix_from_name(mix_name);
        if (!mix) throw std::runtime_error("unknown mix " + mix_name);
        const SynthSpec spec = nemotron_bench_spec(*mix);
        const std::string path = fmt::format("{}/moeserve-bench-nemotron-{}.gguf", dir, mix_name);
        if (!std::filesystem::exists(path)) {
            fmt::print(stderr, "writing {} ...\n", path);
            write_synth_model(path, spec);
        }
        for (const auto& cache_name : caches) {
            for (int64_t depth : depths) {
                EngineOptions opt;
                opt.model_path = path;
                opt.n_threads = threads;
                opt.n_ctx = depth + std::max(n_prefill, n_decode) + 16;
                opt.type_k = opt.type_v = parse_cache_type(cache_name);
                Engine engine(opt);
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
                fill_cache(engine.cache(), depth);
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
                fmt::print("| {} | {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.0f}% |\n", mix_name,
                           cache_name, depth, prefill_tps > 0 ? fmt::format("{:.1f}", prefill_tps) : std::string("-"),
                           decode_tps, 1000.0 / decode_tps, bytes / 1e6, gbs, 100 * gbs / bw);
                std::fflush(stdout);
            }
        }
    }
    return 0;
}
