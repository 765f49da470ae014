// Measuring an engine's speed the way llama-bench does — prompt processing
// (prefill) and token generation (decode) at a context depth — and how far
// decode is from the memory limit: the bytes one decoded token reads
// (weights of the routed experts and everything else, plus the KV cache up
// to its depth) per second, next to the machine's measured read bandwidth.
// Used by `moeserve bench` and bench/engine_bench.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/engine.h"

namespace moeserve {

// "0,8192,32768" -> {0, 8192, 32768}; throws std::invalid_argument naming a
// bad item (not a whole number of at least 0) or an empty list.
std::vector<int64_t> parse_int_list(const std::string& s);

// STREAM-style read bandwidth in GB/s (10^9 B/s): every thread sums its share
// of a buffer much larger than the caches; the best of several passes.
double measure_read_bandwidth(int threads, size_t buffer_bytes = size_t{1} << 30);

// f32 multiply-adds per second (10^9/s) over `threads` threads, each
// running independent FMA chains in the widest vectors of this build: the
// arithmetic ceiling of a compute-bound op (MLA attention at depth), next to
// the read bandwidth's ceiling of a memory-bound one. Best of a few passes.
double measure_fma_rate(int threads);

// Weight bytes one decoded token reads: all tensors but the experts, the
// n_used of n_expert routed experts of each MoE layer, one embedding row.
double weight_bytes_per_token(const GgufFile& f, int n_expert, int n_used);

// KV cache bytes a token at context depth `depth` reads (every earlier cell,
// every layer's K and V rows).
double kv_bytes_read(const KvCache& cache, double depth);

// Puts `depth` positions of plausible K/V rows into a sequence without
// computing them: decode speed at depth depends only on how much is read.
void fill_cache_synthetic(KvCache& cache, int seq, int64_t depth);

struct BenchTest {
    int64_t n_prompt = 0;     // prefill this many tokens (0: a decode test)
    int64_t n_gen = 0;        // then decode this many, one at a time (0: a prefill test)
    int64_t depth = 0;        // context already in the cache before the test
    bool real_depth = false;  // fill the depth by evaluating tokens rather than synthetically
    int n_parallel = 1;       // decode tests: sequences decoding side by side, one token each per step
};

struct BenchSample {
    double seconds = 0;  // time of the measured tokens only
    double tokens_per_s = 0;
};

// One repetition of a test on sequence 0 (a decode test with n_parallel > 1:
// on sequences 0..n_parallel-1, all at the same depth, one batch per step,
// as a server's busy slots decode), after a warm-up (the test's prompt, or
// two decode steps at the test's depth, taken back); the cache is
// cleared first and must hold (depth + n_prompt + n_gen) x n_parallel
// cells. Tokens are random byte ids. tokens_per_s counts every sequence's
// tokens.
BenchSample run_bench_test(Engine& engine, const BenchTest& test, uint64_t seed);

struct BenchStats {
    double mean = 0;
    double stddev = 0;  // sample standard deviation; 0 for one sample
};
BenchStats bench_stats(const std::vector<double>& samples);

}  // namespace moeserve
