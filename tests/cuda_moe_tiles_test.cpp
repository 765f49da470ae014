// The MoE decode tile rule (src/backend/cuda/cuda_moe_tiles.h), a host-side
// choice, so it is checked in every build. Expected values worked out by hand
// from the rule: mean items per expert hit, were the routing uniform,
// rounded down to 1, 2, 4 or 8.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_moe_tiles.h"

namespace moeserve::cuda {
namespace {

TEST(CudaMoeTiles, one_token_per_expert_hit_takes_one_token_tiles) {
    EXPECT_EQ(moe_tile_tokens(8, 128), 1);  // one decoded token, top-8 of 128: 8 experts, 1 item each
    // 8 tokens, top-8 of 128: 64 items over 128·(1 - (127/128)^64) = 50.5 experts, 1.27 each.
    EXPECT_EQ(moe_tile_tokens(64, 128), 1);
    // 8 tokens, top-4 of 64 (GLM-4.7-Flash): 32 items over 25.3 experts, 1.26 each.
    EXPECT_EQ(moe_tile_tokens(32, 64), 1);
}

TEST(CudaMoeTiles, more_items_per_expert_take_larger_tiles) {
    // 32 tokens, top-8 of 128: 256 items over 110.8 experts, 2.31 each.
    EXPECT_EQ(moe_tile_tokens(256, 128), 2);
    // 20 tokens, top-2 of 8: 40 items over 8.0 experts, 5.0 each.
    EXPECT_EQ(moe_tile_tokens(40, 8), 4);
    // 32 tokens, top-8 of 8: every expert gets all 32.
    EXPECT_EQ(moe_tile_tokens(256, 8), 8);
    // One expert: all items on it.
    EXPECT_EQ(moe_tile_tokens(5, 1), 4);
    EXPECT_EQ(moe_tile_tokens(3, 1), 2);
}

TEST(CudaMoeTiles, degenerate_batches_take_one_token_tiles) {
    EXPECT_EQ(moe_tile_tokens(0, 128), 1);
    EXPECT_EQ(moe_tile_tokens(1, 128), 1);
    EXPECT_EQ(moe_tile_tokens(16, 0), 1);
}

}  // namespace
}  // namespace moeserve::cuda
