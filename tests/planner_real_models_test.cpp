// The planner's numbers for the three target models, from synth's
// header-only files, against hand calculations from the spec's formulas
// (architectures §7): KV bytes per token, recurrent state, totals at 256K,
// llama-server's context rounding, and the fit search.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "memory/byte_size.h"
#include "memory/planner.h"
#include "synth/presets.h"

namespace moeserve {
namespace {

GgufFile header_only(const std::string& preset) {
    const auto path = test::scratch_dir() / (preset + ".gguf");
    SynthSpec s = *synth_preset(preset, FileMix::Q4_K_M);
    s.header_only = true;
    write_synth_model(path.string(), s);
    return GgufFile::open(path.string());
}

PlanOptions flags(int64_t c, int np, const char* type) {
    PlanOptions o;
    o.n_ctx = c;
    o.n_parallel = np;
    o.type_k = o.type_v = *ggml_type_from_name(type);
    o.n_threads = 4;
    return o;
}

struct Expected {
    const char* preset;
    uint64_t f16, q8_0, q4_0;  // KV bytes per token (spec §7.3)
    uint64_t recurrent;        // bytes per sequence
    int64_t kv_layers;
};

class PlannerRealModel : public ::testing::TestWithParam<Expected> {};

TEST_P(PlannerRealModel, kv_bytes_per_token_and_recurrent_state_match_the_spec) {
    const Expected e = GetParam();
    const GgufFile f = header_only(e.preset);
    const MemoryShape shape = read_memory_shape(f);
    EXPECT_EQ(shape.kv_layers(), e.kv_layers);
    EXPECT_EQ(kv_bytes_per_token(shape, GgmlType::F16, GgmlType::F16), e.f16);
    EXPECT_EQ(kv_bytes_per_token(shape, GgmlType::Q8_0, GgmlType::Q8_0), e.q8_0);
    EXPECT_EQ(kv_bytes_per_token(shape, GgmlType::Q4_0, GgmlType::Q4_0), e.q4_0);
    const MemoryPlan p = plan_memory(f, shape, flags(262144, 1, "f16"));
    EXPECT_EQ(p.kv_bytes_per_token, e.f16);
    EXPECT_EQ(p.kv_bytes, e.f16 * 262144);
    EXPECT_EQ(p.recurrent_bytes_per_seq, e.recurrent);
    EXPECT_EQ(p.weights_bytes, shape.weights_bytes);
    EXPECT_EQ(p.total_bytes, p.weights_bytes + p.tables_bytes + p.kv_bytes + p.kv_index_bytes + p.recurrent_bytes +
                                 p.workspace_bytes + p.output_bytes);
}

INSTANTIATE_TEST_SUITE_P(Spec, PlannerRealModel,
                         ::testing::Values(Expected{"qwen3-coder-30b-a3b", 98304, 52224, 27648, 0, 48},
                                           Expected{"glm-4.7-flash", 54144, 28764, 15228, 0, 47},
                                           Expected{"nemotron-3-nano-30b-a3b", 6144, 3264, 1728, 49930240, 6}));

TEST(PlannerRealModels, kv_totals_at_256k_tokens_match_the_spec_examples) {
    const double gib = 1024.0 * 1024 * 1024;
    struct Row {
        const char* preset;
        double f16_gib, q4_0_gib;
    };
    for (const Row& r : {Row{"qwen3-coder-30b-a3b", 24.0, 6.75}, Row{"glm-4.7-flash", 13.22, 3.72},
                         Row{"nemotron-3-nano-30b-a3b", 1.50, 0.42}}) {
        const GgufFile f = header_only(r.preset);
        EXPECT_NEAR(plan_memory(f, flags(262144, 1, "f16")).kv_bytes / gib, r.f16_gib, 0.005) << r.preset;
        EXPECT_NEAR(plan_memory(f, flags(262144, 1, "q4_0")).kv_bytes / gib, r.q4_0_gib, 0.005) << r.preset;
    }
}

TEST(PlannerRealModels, mla_caches_one_latent_row_and_no_v) {
    const MemoryPlan p = plan_memory(header_only("glm-4.7-flash"), flags(8192, 1, "f16"));
    EXPECT_EQ(p.kv_v_bytes, 0u);
    EXPECT_EQ(p.kv_k_bytes, 47u * 576 * 2 * 8192);
}

TEST(PlannerRealModels, nemotron_recurrent_state_is_per_sequence_and_constant_in_context) {
    const GgufFile f = header_only("nemotron-3-nano-30b-a3b");
    const MemoryPlan short_ctx = plan_memory(f, flags(4096, 2, "f16"));
    const MemoryPlan long_ctx = plan_memory(f, flags(1048576, 2, "f16"));
    EXPECT_EQ(short_ctx.recurrent_bytes, long_ctx.recurrent_bytes);
    // The live state and 4 snapshots in the buffers; in host RAM, as used, the other 28 of the
    // default 32 when a slot's context has room for that many 8192 tokens apart.
    EXPECT_EQ(short_ctx.recurrent_bytes, 2 * (1 + 4) * 49930240ull);
    EXPECT_EQ(short_ctx.recurrent_host_bytes_max, 2 * 1 * 49930240ull);
    EXPECT_EQ(long_ctx.recurrent_host_bytes_max, 2 * 28 * 49930240ull);
    // conv 3 × 6144 × 4 B and SSM 128 × 4096 × 4 B per Mamba2 layer, 23 layers (spec §7.3).
    EXPECT_EQ(short_ctx.recurrent_bytes_per_seq, 23ull * (73728 + 2097152));
    bool listed = false;
    for (const auto& b : short_ctx.buffers()) listed |= b.name.find("recurrent state") != std::string::npos;
    EXPECT_TRUE(listed);
}

TEST(Planner, context_follows_llama_server_rounding) {
    const GgufFile f = header_only("qwen3-coder-30b-a3b");
    MemoryPlan p = plan_memory(f, flags(10000, 3, "f16"));  // server-behaviour §2 example
    EXPECT_EQ(p.n_ctx, 10752);
    EXPECT_EQ(p.n_ctx_seq, 3584);
    EXPECT_EQ(p.n_ctx_slot, 3584);
    EXPECT_EQ(p.n_stream, 3);
    PlanOptions o = flags(8192, 4, "f16");
    o.kv_unified = true;
    p = plan_memory(f, o);
    EXPECT_EQ(p.n_ctx, 8192);
    EXPECT_EQ(p.n_ctx_slot, 8192);
    EXPECT_EQ(p.n_stream, 1);
    p = plan_memory(f, flags(0, 1, "f16"));  // -c 0: the training context
    EXPECT_EQ(p.n_ctx, 262144);
    p = plan_memory(f, flags(300000, 1, "f16"));  // the slot is capped, the cache is not
    EXPECT_EQ(p.n_ctx, 300032);
    EXPECT_EQ(p.n_ctx_slot, 262144);
}

TEST(Planner, largest_fitting_context_is_the_boundary) {
    const GgufFile f = header_only("qwen3-coder-30b-a3b");
    const MemoryShape shape = read_memory_shape(f);
    const uint64_t mem = parse_byte_size("24GiB");
    for (int np : {1, 4}) {
        PlanOptions o = flags(0, np, "q8_0");
        const int64_t c = largest_fitting_ctx(f, shape, o, mem);
        ASSERT_GT(c, 0);
        EXPECT_EQ(c % 256, 0);
        o.n_ctx = c;
        EXPECT_LE(plan_memory(f, shape, o).total_bytes, mem);
        o.n_ctx = c + 256;
        EXPECT_GT(plan_memory(f, shape, o).total_bytes, mem);
    }
    // The weights alone do not fit in 16 GiB.
    EXPECT_EQ(largest_fitting_ctx(f, shape, flags(0, 1, "f16"), parse_byte_size("16GiB")), 0);
    // Capped at the training context when everything fits.
    EXPECT_EQ(largest_fitting_ctx(f, shape, flags(0, 1, "q4_0"), parse_byte_size("1TiB")), 262144);
}

TEST(Planner, check_fits_refuses_with_the_numbers_and_the_largest_context) {
    const GgufFile f = header_only("qwen3-coder-30b-a3b");
    try {
        check_fits(f, flags(262144, 1, "f16"), parse_byte_size("24GiB"), "--mem");
        FAIL() << "expected MemoryFitError";
    } catch (const MemoryFitError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("needs"), std::string::npos) << m;
        EXPECT_NE(m.find("24.00 GiB is available (--mem)"), std::string::npos) << m;
        EXPECT_NE(m.find("KV cache K (f16) 12.00 GiB"), std::string::npos) << m;
        EXPECT_NE(m.find("the largest context that fits is -c " + std::to_string(e.largest_ctx())), std::string::npos)
            << m;
        EXPECT_GT(e.largest_ctx(), 0);
    }
    EXPECT_NO_THROW(check_fits(f, flags(8192, 1, "f16"), parse_byte_size("24GiB"), "--mem"));
}

TEST(ByteSize, parses_binary_and_decimal_units_and_plain_bytes) {
    EXPECT_EQ(parse_byte_size("24GiB"), 24ull << 30);
    EXPECT_EQ(parse_byte_size("24GB"), 24000000000ull);
    EXPECT_EQ(parse_byte_size("512MiB"), 512ull << 20);
    EXPECT_EQ(parse_byte_size("1.5 GiB"), 3ull << 29);
    EXPECT_EQ(parse_byte_size("64K"), 65536ull);
    EXPECT_EQ(parse_byte_size("1073741824"), 1ull << 30);
    for (const char* bad : {"", "GiB", "12XB", "1.2.3G", "-5G"})
        EXPECT_THROW(parse_byte_size(bad), std::invalid_argument) << bad;
    EXPECT_EQ(format_bytes(3ull << 29), "1.50 GiB");
    EXPECT_EQ(format_bytes(512), "512 B");
}

}  // namespace
}  // namespace moeserve
