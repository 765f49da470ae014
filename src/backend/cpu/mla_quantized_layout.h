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

    // A pass of nq queries over latent vectors of `latent` values on `threads` threads.
    MlaQuantizedLayout(int nq, int latent, int threads)
        : n_queries(nq),
          n_groups((nq + kGroupQueries - 1) / kGroupQueries),
          chunk(std::clamp<int64_t>(kChunkValues / nq / kScoreRows * kScoreRows, kScoreRows, kMaxChunkRows)),
          by_groups(n_groups >= 2 * threads),
          values_per_row(by_groups ? latent : kSlice) {}

    int n_queries;
    int n_groups;        // phase-2/3 query groups
    int64_t chunk;       // rows per chunk
    bool by_groups;      // phase 3 split by query groups (a prompt), else by slices (a decoded token)
    int values_per_row;  // f32 values of V each thread converts per row
};

}  // namespace moeserve
