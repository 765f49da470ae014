// llama-server's --fit for the context (server/context_fit.h): with -c unset,
// the training context stays when its plan fits in the memory available less
// --fit-target; otherwise the largest -c that fits, never below --fit-ctx.
#include <gtest/gtest.h>

#include "backend/expert_placement.h"
#include "backend/select_backend.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
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

// On a GPU run whose placement is --fit's: when even --fit-ctx does not fit
// on the card, the routed experts of the first N layers stay in host memory,
// the smallest N that fits; nothing moves when the placement is the user's.
TEST(ContextFit, moves_experts_off_the_card_when_the_context_alone_cannot_fit) {
    MOESERVE_REQUIRE_FIXTURES();
    const GgufFile f = GgufFile::open(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    std::vector<std::string> names;
    for (const auto& t : f.tensors()) names.push_back(t.name);
    const auto host_bytes = [&](int n) {
        ExpertPlacementFlags flags;
        flags.n_cpu_moe = n;
        BackendRequest r{1, kGpuLayersAuto, 2, resolve_expert_placement(names, 2, flags).host_experts};
        return host_weight_bytes(f, r);
    };
    const uint64_t h1 = host_bytes(1), h2 = host_bytes(2);
    ASSERT_GT(h1, 0u);
    ASSERT_GT(h2, h1);
    ServerOptions o;
    o.fit_ctx = 256;
    const uint64_t target = 1 << 20;
    const uint64_t at_256 = plan_bytes(f, o, 256);

    FitResult r = fit_context(f, o, 4, true, at_256 - h1 + target, target, 0, host_bytes);
    EXPECT_TRUE(r.lowered);
    EXPECT_EQ(r.n_ctx, 256);
    EXPECT_EQ(r.n_cpu_moe, 1);
    r = fit_context(f, o, 4, true, at_256 - h1 + target - 1, target, 0, host_bytes);
    EXPECT_EQ(r.n_cpu_moe, 2);
    r = fit_context(f, o, 4, true, at_256 - h2 + target - 1, target, 0, host_bytes);
    EXPECT_EQ(r.n_cpu_moe, 0);  // not even all of them: the engine's check explains
    // The context comes first: where it alone makes the plan fit, no expert moves.
    r = fit_context(f, o, 4, true, at_256 + target, target, 0, host_bytes);
    EXPECT_TRUE(r.lowered);
    EXPECT_EQ(r.n_cpu_moe, 0);
    // A placement the user chose (no callback): the context only.
    EXPECT_EQ(fit_context(f, o, 4, true, at_256 - h1 + target, target).n_cpu_moe, 0);
    // With -c given the context stays and the experts move.
    o.n_ctx_given = true;
    o.n_ctx = 256;
    r = fit_context(f, o, 4, true, at_256 - h1 + target, target, 0, host_bytes);
    EXPECT_FALSE(r.lowered);
    EXPECT_EQ(r.n_cpu_moe, 1);
}

}  // namespace
}  // namespace moeserve
