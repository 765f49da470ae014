#include "engine/bench_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <tuple>

#include "backend/cpu/thread_pool.h"
#include "backend/cpu/x86_intrinsics.h"
#include "quant/quantize.h"

namespace moeserve {
namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

double measure_read_bandwidth(int threads, size_t buffer_bytes) {
    const size_t n = buffer_bytes / sizeof(float);
    std::vector<float> buf(n, 1.0f);
    ThreadPool pool(std::max(1, threads));
    std::vector<double> sums(pool.size());
    double best = 0;
    for (int pass = 0; pass < 5; ++pass) {
        const double t0 = now();
        pool.run([&](int i, int nt) {
            const size_t b = n * i / nt, e = n * (i + 1) / nt;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
            for (size_t j = b; j + 8 <= e; j += 8) {
                s0 += buf[j], s1 += buf[j + 1], s2 += buf[j + 2], s3 += buf[j + 3];
                s4 += buf[j + 4], s5 += buf[j + 5], s6 += buf[j + 6], s7 += buf[j + 7];
            }
            sums[i] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
        });
        best = std::max(best, n * sizeof(float) / (now() - t0) / 1e9);
    }
    return best;
}

namespace {

// 12 chains x kIters FMAs of one thread; returns the lanes' sum so that
// nothing is left out. 12 chains cover the FMA latency (4 cycles) of two pipes.
float fma_chains(long iters, int* lanes) {
    constexpr int kChains = 12;
#if defined(__AVX512F__)
    *lanes = 16;
    __m512 a[kChains];
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_ps(1.0f + static_cast<float>(i) * 1e-3f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long k = 0; k < iters; ++k)
        for (int i = 0; i < kChains; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
    float s = 0;
    for (int i = 0; i < kChains; ++i) s += _mm512_reduce_add_ps(a[i]);
    return s;
#elif defined(__AVX2__) && defined(__FMA__)
    *lanes = 8;
    __m256 a[kChains];
    for (int i = 0; i < kChains; ++i) a[i] = _mm256_set1_ps(1.0f + static_cast<float>(i) * 1e-3f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long k = 0; k < iters; ++k)
        for (int i = 0; i < kChains; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
    alignas(32) float out[8];
    float s = 0;
    for (int i = 0; i < kChains; ++i) {
        _mm256_store_ps(out, a[i]);
        for (float v : out) s += v;
    }
    return s;
#else
    *lanes = 1;
    float a[kChains];
    for (int i = 0; i < kChains; ++i) a[i] = 1.0f + static_cast<float>(i) * 1e-3f;
    for (long k = 0; k < iters; ++k)
        for (int i = 0; i < kChains; ++i) a[i] = std::fma(a[i], 0.999999f, 1e-7f);
    float s = 0;
    for (float v : a) s += v;
    return s;
#endif
}

}  // namespace

double measure_fma_rate(int threads) {
    ThreadPool pool(std::max(1, threads));
    constexpr long kIters = 5'000'000;  // ~30 ms a pass at one 512-bit FMA per cycle and 2 GHz
    std::vector<float> sums(pool.size());
    std::vector<int> lanes(pool.size(), 1);
    double best = 0;
    for (int pass = 0; pass < 3; ++pass) {
        const double t0 = now();
        pool.run([&](int i, int) { sums[i] = fma_chains(kIters, &lanes[i]); });
        const double macs = 12.0 * kIters * lanes[0] * pool.size();
        best = std::max(best, macs / (now() - t0) / 1e9);
    }
    return best;
}

double weight_bytes_per_token(const GgufFile& f, int n_expert, int n_used) {
    double bytes = 0;
    for (const auto& t : f.tensors()) {
        if (t.name == "token_embd.weight" && f.find_tensor("output.weight"))
            bytes += t.row_bytes();
        else if (t.name.find("_exps.") != std::string::npos && n_expert > 0)
            bytes += static_cast<double>(t.nbytes) * n_used / n_expert;
        else
            bytes += t.nbytes;
    }
    return bytes;
}

double kv_bytes_read(const KvCache& cache, double depth) {
    double row = 0;
    for (int l = 0; l < cache.n_layer(); ++l) row += cache.k_row_bytes(l) + cache.v_row_bytes(l);
    return row * depth;
}

std::vector<int64_t> parse_int_list(const std::string& s) {
    std::vector<int64_t> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) {
        size_t used = 0;
        int64_t n = -1;
        try {
            n = std::stoll(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != item.size() || n < 0)
            throw std::invalid_argument("'" + item + "' in '" + s + "' is not a whole number of at least 0");
        out.push_back(n);
    }
    if (out.empty()) throw std::invalid_argument("'" + s + "' holds no numbers");
    return out;
}

void fill_cache_synthetic(KvCache& cache, int seq, int64_t depth) {
    if (depth <= 0) return;
    std::vector<int32_t> cells = cache.append(seq, depth);
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    constexpr int kDistinct = 16;  // distinct rows, repeated
    for (int l = 0; l < cache.n_layer(); ++l) {
        const int64_t nk = cache.config().n_embd_k[l], nv = cache.config().n_embd_v[l];
        const size_t kb = cache.k_row_bytes(l), vb = cache.v_row_bytes(l);
        if (kb + vb == 0) continue;
        std::vector<uint8_t> krows(kb * kDistinct), vrows(vb * kDistinct);
        std::vector<float> x(std::max(nk, nv));
        for (int r = 0; r < kDistinct; ++r) {
            for (auto& v : x) v = dist(rng);
            if (kb) quantize_row(cache.type_k(), x.data(), krows.data() + r * kb, nk);
            if (vb) quantize_row(cache.type_v(), x.data(), vrows.data() + r * vb, nv);
        }
        if (cache.memory().is_host()) {
            for (int64_t i = 0; i < depth; ++i) {
                if (kb) std::memcpy(cache.k_row(l, cells[i]), krows.data() + (i % kDistinct) * kb, kb);
                if (vb) std::memcpy(cache.v_row(l, cells[i]), vrows.data() + (i % kDistinct) * vb, vb);
            }
            continue;
        }
        // In GPU memory: rows go up in runs of consecutive cells (one run for
        // a cleared cache), each assembled on the host.
        std::vector<uint8_t> run;
        for (int64_t i = 0; i < depth;) {
            int64_t j = i + 1;
            while (j < depth && cells[j] == cells[j - 1] + 1) ++j;
            for (auto [rows, bytes, dst] : {std::tuple{&krows, kb, kb ? cache.k_row(l, cells[i]) : nullptr},
                                            std::tuple{&vrows, vb, vb ? cache.v_row(l, cells[i]) : nullptr}}) {
                if (!bytes) continue;
                run.resize((j - i) * bytes);
                for (int64_t r = i; r < j; ++r)
                    std::memcpy(run.data() + (r - i) * bytes, rows->data() + (r % kDistinct) * bytes, bytes);
                cache.memory().upload(dst, run.data(), run.size());
            }
            i = j;
        }
    }
}

BenchSample run_bench_test(Engine& engine, const BenchTest& test, uint64_t seed) {
    KvCache& cache = engine.cache();
    cache.clear();
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(std::min<int64_t>(engine.n_vocab(), 256) - 1));
    auto random_tokens = [&](int64_t n) {
        std::vector<int32_t> t(n);
        for (auto& x : t) x = tok(rng);
        return t;
    };
    // Warm up (threads, caches, scratch buffers, a GPU's first large GEMMs)
    // on a batch of the test's kind and size, as llama-bench does, then
    // start over.
    engine.eval(0, random_tokens(test.n_prompt > 0 ? test.n_prompt : 1), false);
    cache.clear();
    const int n_seq = test.n_prompt > 0 ? 1 : std::max(1, test.n_parallel);
    for (int seq = 0; seq < n_seq; ++seq) {
        if (test.real_depth)
            engine.eval(seq, random_tokens(test.depth), false);
        else
            fill_cache_synthetic(cache, seq, test.depth);
    }

    BenchSample s;
    if (test.n_prompt > 0) {
        const std::vector<int32_t> prompt = random_tokens(test.n_prompt);
        const double t0 = now();
        engine.eval(0, prompt, false);
        s.seconds += now() - t0;
    }
    // Decode tests: up to two untimed steps at the test's depth, so that a GPU
    // backend captures its CUDA graph for this batch shape outside the
    // measured steps; then every sequence goes back to the depth (a
    // recurrent state through the snapshot taken there).
    if (test.n_prompt == 0 && test.n_gen > 0) {
        std::vector<int64_t> at_depth(n_seq);
        for (int seq = 0; seq < n_seq; ++seq) {
            at_depth[seq] = cache.seq_length(seq);
            cache.snapshot(seq);
        }
        for (int64_t step = 0; step < std::min<int64_t>(test.n_gen, 2); ++step) {
            Batch batch;
            for (int seq = 0; seq < n_seq; ++seq)
                batch.add(tok(rng), static_cast<int32_t>(cache.seq_length(seq)), seq, true);
            engine.model().forward(batch, cache);
        }
        for (int seq = 0; seq < n_seq; ++seq) cache.truncate(seq, at_depth[seq]);
    }
    for (int64_t i = 0; i < test.n_gen; ++i) {
        Batch batch;
        for (int seq = 0; seq < n_seq; ++seq)
            batch.add(tok(rng), static_cast<int32_t>(cache.seq_length(seq)), seq, true);
        const double t0 = now();
        engine.model().forward(batch, cache);
        s.seconds += now() - t0;
    }
    const int64_t n = test.n_prompt + test.n_gen * n_seq;
    s.tokens_per_s = s.seconds > 0 ? n / s.seconds : 0;
    return s;
}

BenchStats bench_stats(const std::vector<double>& samples) {
    BenchStats st;
    if (samples.empty()) return st;
    for (double x : samples) st.mean += x;
    st.mean /= samples.size();
    if (samples.size() > 1) {
        double ss = 0;
        for (double x : samples) ss += (x - st.mean) * (x - st.mean);
        st.stddev = std::sqrt(ss / (samples.size() - 1));
    }
    return st;
}

}  // namespace moeserve
