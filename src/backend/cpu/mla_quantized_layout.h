// How cpu_mla_quantized.cpp splits one pass of latent attention over a
// Q4_0/Q8_0 cache into work and scratch, in one place for the kernel and for
// the memory planner (memory/workspace.cpp), which must count the same bytes.
#pragma once

#include <algorithm>
#include <cstdint>

namespace moeserve {

struct MlaQuantizedLayout {
    static constexpr int kBlockQueries = 320;         // queries of a prompt that walk the rows together
    static constexpr int kGroupQueries = 10;          // queries summed together in phase 3 (20 accumulators)
    static constexpr int kScoreRows = 16;             // rows per phase-1 work item (one transposed group)
    static constexpr int kSlice = 32;                 // latent values per phase-3 slice: one cache block
    static constexpr int64_t kChunkValues = 1 << 18;  // scores held per chunk (queries × rows), 1 MiB
    static constexpr int64_t kMaxChunkRows = 2048;    // a chunk's cache rows stay in L2 between phases

    // Tokens of one sequence's run that share a pass.
    static int64_t block_tokens(int n_head) { return std::max(1, kBlockQueries / n_head); }

    // A pass of nq queries on `threads` threads.
    MlaQuantizedLayout(int nq, int threads)
        : n_queries(nq),
          n_groups((nq + kGroupQueries - 1) / kGroupQueries),
          chunk(std::clamp<int64_t>(kChunkValues / nq / kScoreRows * kScoreRows, kScoreRows, kMaxChunkRows)),
          split_queries(n_groups >= 4 * threads) {}

    int n_queries;
    int n_groups;   // query groups of the softmax walk and the V sums
    int64_t chunk;  // rows per chunk
    // Each thread its own groups through every step (a prompt: at least four
    // groups per thread pay for converting the rows on every thread), else
    // each step split over all threads (a decoded token: measured 10% faster
    // at 32K than splitting GLM's two groups between two threads).
    bool split_queries;
};

}  // namespace moeserve
