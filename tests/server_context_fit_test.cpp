// llama-server's --fit for the context (server/context_fit.h): with -c unset,
// the training context stays when its plan fits in the memory available less
// --fit-target; otherwise the largest -c that fits, never below --fit-ctx.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "memory/planner.h"
#include "server/context_fit.h"

namespace moeserve {
namespace {

uint64_t plan_bytes(const GgufFile& f, const ServerOptions& o, int64_t n_ctx) {
    PlanOptions po;
    po.n_ctx = n_ctx;
    po.n_parallel = 4;
    po.kv_unified = true;
    po.n_batch = o.n_batch;
    po.n_ubatch = o.n_ubatch;
    return plan_memory(f, po).total_bytes;
}

TEST(ContextFit, keeps_the_training_context_when_it_fits_else_takes_the_largest_that_does) {
    MOESERVE_REQUIRE_FIXTURES();
    const GgufFile f = GgufFile::open(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    ServerOptions o;
    o.fit_ctx = 256;
    const uint64_t target = 1 << 20;
    const uint64_t full = plan_bytes(f, o, 0);

    FitResult r = fit_context(f, o, 4, true, full + target, target);  // just fits
    EXPECT_FALSE(r.lowered);
    EXPECT_EQ(r.n_ctx, 0);
    EXPECT_EQ(r.full_bytes, full);

    r = fit_context(f, o, 4, true, full + target - 1, target);  // one byte short
    ASSERT_TRUE(r.lowered);
    EXPECT_EQ(r.budget_bytes, full - 1);
    EXPECT_GE(r.n_ctx, 256);
    EXPECT_LT(r.n_ctx, 4096);
    EXPECT_EQ(r.n_ctx % 256, 0);
    EXPECT_LE(plan_bytes(f, o, r.n_ctx), r.budget_bytes);
    EXPECT_GT(plan_bytes(f, o, r.n_ctx + 256), r.budget_bytes);

    // Far too little memory: never below --fit-ctx (the engine's check then refuses it with the numbers).
    o.fit_ctx = 1024;
    r = fit_context(f, o, 4, true, target + 1, target);
    EXPECT_TRUE(r.lowered);
    EXPECT_EQ(r.n_ctx, 1024);
    // --fit-ctx at or above the training context: nothing to lower.
    o.fit_ctx = 4096;
    EXPECT_FALSE(fit_context(f, o, 4, true, target + 1, target).lowered);
    // Unknown memory: unchanged.
    o.fit_ctx = 256;
    EXPECT_FALSE(fit_context(f, o, 4, true, 0, target).lowered);
}

}  // namespace
}  // namespace moeserve
