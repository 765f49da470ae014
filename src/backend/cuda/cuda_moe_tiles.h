// How many of a MoE decode batch's (token, expert) items one matrix-vector
// block takes per weight load (cuda_moe.cu). Plain C++: the CPU build tests it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace moeserve::cuda {

// The tile of a decode batch of n_items (token, slot) items over n_expert
// experts: the mean number of items per expert that has any, were the
// routing uniform (n_expert · (1 − (1 − 1/n_expert)^n_items) such experts),
// rounded down to 1, 2, 4 or 8.
//
// Why not the batch's token count, as for a dense product: a block multiplies
// its weight rows with a whole tile's worth of tokens, so a tile larger than
// an expert's items buys nothing, while the kernel's registers grow with the
// tile (Q4_K gate+up in one pass: 70 registers at 1 token, 186 at 8, i.e.
// seven blocks an SM against two), and at 8 decoded tokens of a 128-expert,
// top-8 model most of the ~50 experts hit get one token. An expert with more
// items than the tile is read once per tile, the later reads mostly from L2.
inline int moe_tile_tokens(int64_t n_items, int n_expert) {
    if (n_items <= 1 || n_expert <= 0) return 1;
    const double active = n_expert * (1.0 - std::pow(1.0 - 1.0 / n_expert, static_cast<double>(n_items)));
    const double mean = static_cast<double>(n_items) / std::max(active, 1.0);
    return mean < 2 ? 1 : mean < 4 ? 2 : mean < 8 ? 4 : 8;
}

}  // namespace moeserve::cuda
