// `moeserve plan` prints the budget tables and one JSON object in bytes;
// `run` refuses a context that does not fit before loading the model, and
// --fit / -c max pick the largest context that fits.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "engine/engine.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "memory/byte_size.h"
#include "run_command.h"
#include "synth/presets.h"

namespace moeserve {
namespace {

std::string write_preset(const std::filesystem::path& dir, const std::string& preset, bool header_only) {
    const std::string path = (dir / (preset + ".gguf")).string();
    SynthSpec s = *synth_preset(preset, FileMix::Q4_K_M);
    s.header_only = header_only;
    write_synth_model(path, s);
    return path;
}

TEST(PlanCli, json_has_every_size_in_bytes_and_the_largest_context_table) {
    const std::string model = write_preset(test::scratch_dir(), "nemotron-3-nano-30b-a3b", true);
    auto r = test::run_moeserve({"plan", "-m", model, "--mem", "24GiB", "-c", "262144", "-np", "2", "-ctk", "q4_0",
                                 "-ctv", "q4_0", "-t", "4", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["n_ctx"], 262144);
    EXPECT_EQ(j["n_ctx_per_slot"], 131072);
    EXPECT_EQ(j["kv_bytes_per_token"], 1728);
    EXPECT_EQ(j["kv_bytes"], 1728ull * 262144);
    EXPECT_EQ(j["recurrent_bytes_per_seq"], 49930240);
    EXPECT_EQ(j["mem_bytes"], 24ull << 30);
    for (const char* key : {"weights_bytes", "recurrent_bytes", "workspace_bytes", "total_bytes"})
        EXPECT_GT(j[key].get<uint64_t>(), 0u) << key;
    EXPECT_EQ(j["fits"], j["total_bytes"].get<uint64_t>() <= (24ull << 30));
    ASSERT_EQ(j["largest_ctx"].size(), 12u);  // -np 1, 2, 4, 8 × f16, q8_0, q4_0
    for (const auto& row : j["largest_ctx"]) {
        EXPECT_GE(row["n_ctx"].get<int64_t>(), row["n_ctx_per_slot"].get<int64_t>());
        EXPECT_LE(row["n_ctx_per_slot"].get<int64_t>(), 1048576);
    }
}

TEST(PlanCli, tables_show_each_buffer_the_fit_and_a_recurrent_line) {
    const std::string model = write_preset(test::scratch_dir(), "nemotron-3-nano-30b-a3b", true);
    auto r = test::run_moeserve({"plan", "-m", model, "--mem", "16GB", "-c", "65536", "-np", "1"});
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char* text : {"| weights |", "| KV cache K (f16) |", "| KV cache V (f16) |", "| recurrent state (f32) |",
                             "| compute workspace |", "| output (logits) |", "| **total** |",
                             "does NOT fit in 14.90 GiB (--mem)", "KV cache per 1K tokens: f16 6.00 MiB",
                             "recurrent state 47.62 MiB per sequence", "| -np | KV f16 | KV q8_0 | KV q4_0 |", "| 8 |"})
        EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
}

// Each recurrent-state snapshot (--ctx-checkpoints, default 32) is one more state
// per slot: the first four in the buffers, the rest in host RAM at most (not in
// the total), as many as a slot's context holds --checkpoint-min-step apart.
TEST(PlanCli, ctx_checkpoints_size_the_recurrent_state) {
    const std::string model = write_preset(test::scratch_dir(), "nemotron-3-nano-30b-a3b", true);
    auto plan = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = {"plan", "-m", model, "-c", "65536", "-np", "2", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        auto r = test::run_moeserve(args);
        EXPECT_EQ(r.status, 0) << r.err;
        const auto j = nlohmann::json::parse(r.out);
        return std::pair{j["recurrent_bytes"].get<uint64_t>(), j["recurrent_host_bytes_max"].get<uint64_t>()};
    };
    const uint64_t state = 49930240;
    // Slots of 32768 tokens: 1 + 32768 / 8192 = 5 rungs at most.
    EXPECT_EQ(plan({}), std::pair(2 * (1 + 4) * state, 2 * 5 * state));
    EXPECT_EQ(plan({"-cms", "1024"}), std::pair(2 * (1 + 4) * state, 2 * 28 * state));
    EXPECT_EQ(plan({"-ctxcp", "0"}), std::pair(2 * state, uint64_t{0}));
    EXPECT_EQ(plan({"-ctxcp", "3"}), std::pair(2 * (1 + 3) * state, uint64_t{0}));
    EXPECT_EQ(plan({"--ctx-checkpoints", "8"}), std::pair(2 * (1 + 4) * state, 2 * 4 * state));
    // Speculative decoding: one more state per slot to roll back to.
    EXPECT_EQ(plan({"--spec-type", "ngram-simple"}), std::pair(2 * (1 + 4 + 1) * state, 2 * 5 * state));
    EXPECT_NE(test::run_moeserve({"plan", "-m", model, "-c", "65536", "-np", "2", "--spec-type", "ngram-simple"})
                  .out.find("2 seqs × (live + 4 snapshots + 1 for speculative decoding) × 47.62 MiB"),
              std::string::npos);
    EXPECT_NE(test::run_moeserve({"plan", "-m", model, "--spec-type", "draft-mtp"}).err.find("needs a draft model"),
              std::string::npos);
    // And the logits rows of each slot's guesses (1 + --spec-draft-n-max per slot).
    const auto spec =
        nlohmann::json::parse(test::run_moeserve({"plan", "-m", model, "-c", "65536", "-np", "2", "--json",
                                                  "--spec-type", "ngram-simple", "--spec-draft-n-max", "8"})
                                  .out);
    const auto plain =
        nlohmann::json::parse(test::run_moeserve({"plan", "-m", model, "-c", "65536", "-np", "2", "--json"}).out);
    EXPECT_EQ(spec["output_bytes"].get<uint64_t>(), 9 * plain["output_bytes"].get<uint64_t>());
    // ngram-mod guesses up to --spec-ngram-mod-n-max (64): 65 rows per slot; with both
    // kinds, the longer one's.
    auto outputs = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = {"plan", "-m", model, "-c", "65536", "-np", "2", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        return nlohmann::json::parse(test::run_moeserve(args).out)["output_bytes"].get<uint64_t>();
    };
    const uint64_t row = plain["output_bytes"].get<uint64_t>() / 2;
    EXPECT_EQ(outputs({"--spec-type", "ngram-mod"}), 2 * 65 * row);
    EXPECT_EQ(outputs({"--spec-type", "ngram-simple,ngram-mod", "--spec-ngram-mod-n-max", "8"}), 2 * 17 * row);
    auto text = test::run_moeserve({"plan", "-m", model, "-c", "65536", "-np", "2"});
    EXPECT_NE(text.out.find("in host RAM, only as long conversations use them: up to 476.17 MiB of recurrent "
                            "checkpoints at message starts (5 per slot"),
              std::string::npos)
        << text.out;
    auto r = test::run_moeserve({"plan", "-m", model, "--ctx-checkpoints", "-1"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--ctx-checkpoints must be between 0 and 1048576"), std::string::npos) << r.err;
}

// The seed's 24 GB card: -ncmoe 24 keeps the first 24 layers' routed experts
// (the three ffn_*_exps tensors of each, and the router) in host memory, so the plan, its
// fit and the largest-context table count only what the card holds; -ngl N
// up to the layer count keeps the first blocks there too (llama.cpp's count:
// the head is one more layer).
TEST(PlanCli, gpu_placement_flags_count_only_what_the_card_holds) {
    const std::string model = write_preset(test::scratch_dir(), "qwen3-coder-30b-a3b", true);
    uint64_t first_24 = 0, all = 0, blocks_0_to_7 = 0, weights = 0;
    // The routed experts and the router that picks them (the expert FFN op reads both).
    const std::regex experts(R"(^blk\.(\d+)\.ffn_((gate|up|down)_exps|gate_inp)\.weight$)");
    const std::regex block(R"(^blk\.(\d+)\.)");
    const GgufFile file = GgufFile::open(model);
    for (const auto& t : file.tensors()) {
        weights += t.nbytes;
        std::smatch m;
        if (std::regex_search(t.name, m, block) && std::stoi(m[1]) < 8) blocks_0_to_7 += t.nbytes;
        if (t.name == "token_embd.weight") blocks_0_to_7 += t.nbytes;  // the lookup runs on the CPU then
        if (!std::regex_match(t.name, m, experts)) continue;
        all += t.nbytes;
        if (std::stoi(m[1]) < 24) first_24 += t.nbytes;
    }
    ASSERT_GT(first_24, 4ull << 30);
    const std::vector<std::string> seed = {"plan", "-m", model,  "--mem", "24GiB", "-c",   "524288",
                                           "-np",  "2",  "-ctk", "q4_0",  "-ctv",  "q4_0", "--json"};
    auto r = test::run_moeserve(seed);
    ASSERT_EQ(r.status, 0) << r.err;
    const auto whole = nlohmann::json::parse(r.out);
    EXPECT_EQ(whole["weights_bytes"], weights);
    EXPECT_FALSE(whole.contains("host_weights_bytes"));
    EXPECT_FALSE(whole["fits"].get<bool>());  // 31 GiB: not on a 24 GiB card

    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = seed;
        args.insert(args.end(), extra.begin(), extra.end());
        auto rr = test::run_moeserve(args);
        EXPECT_EQ(rr.status, 0) << rr.err;
        return nlohmann::json::parse(rr.out);
    };
    auto j = with({"-ngl", "99", "-ncmoe", "24"});
    EXPECT_EQ(j["host_weights"], "the routed experts of layers 0-23");
    EXPECT_EQ(j["host_weights_bytes"], first_24);
    EXPECT_EQ(j["weights_bytes"], weights - first_24);
    EXPECT_EQ(j["total_bytes"], whole["total_bytes"].get<uint64_t>() - first_24);
    EXPECT_TRUE(j["fits"].get<bool>());  // 22.9 GiB
    // The table: a larger context fits on the card with the experts off it.
    EXPECT_GT(j["largest_ctx"][2]["n_ctx"].get<int64_t>(), whole["largest_ctx"][2]["n_ctx"].get<int64_t>());
    // Without -ngl the expert flags mean a whole-GPU run, as serve's default.
    EXPECT_EQ(with({"-cmoe"})["host_weights_bytes"], all);
    // A layer split: -ngl 41 runs the head and layers 8-47 on the card.
    j = with({"-ngl", "41"});
    EXPECT_EQ(j["host_weights"], "layers 0-7 on the CPU");
    EXPECT_EQ(j["host_weights_bytes"], blocks_0_to_7);
    EXPECT_FALSE(with({"-ngl", "all"}).contains("host_weights"));

    r = test::run_moeserve({"plan", "-m", model, "--mem", "24GiB", "-cmoe"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("on a CUDA run " + format_bytes(all) +
                         " of weights stay in host memory (the routed experts of layers 0-47)"),
              std::string::npos)
        << r.out;
    // A pattern that takes more than experts is refused.
    r = test::run_moeserve({"plan", "-m", model, "--mem", "24GiB", "-ot", "blk\\.0\\.=CPU"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("-ot puts blk.0.attn_norm.weight in host memory"), std::string::npos) << r.err;
}

TEST(PlanCli, names_bad_sizes_and_missing_models) {
    auto r = test::run_moeserve({"plan", "-m", "x.gguf", "--mem", "lots"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("'lots' is not a size"), std::string::npos) << r.err;
    r = test::run_moeserve({"plan", "--mem", "1GiB"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("no model given"), std::string::npos) << r.err;
}

TEST(RunFit, a_context_that_does_not_fit_is_refused_before_loading) {
    const auto dir = test::scratch_dir();
    for (const std::string& model :
         {write_preset(dir, "tiny-qwen3moe", false), write_preset(dir, "tiny-glm47flash", false)}) {
        auto r = test::run_moeserve({"run", "-m", model, "-p", "hi", "-n", "4", "-c", "100000000", "--mem", "4GiB"});
        EXPECT_EQ(r.status, 1);
        EXPECT_NE(r.err.find("-c 100000000 with 1 slot(s) needs"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("but 4.00 GiB is available (--mem)"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("KV cache K (f16)"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("the largest context that fits is -c"), std::string::npos) << r.err;
    }
}

TEST(RunFit, fit_picks_the_largest_context_that_fits) {
    const std::string model = write_preset(test::scratch_dir(), "tiny-qwen3moe", false);
    EngineOptions opt;
    opt.model_path = model;
    opt.n_threads = 2;
    const uint64_t mem = parse_byte_size("16MiB");
    const GgufFile f = GgufFile::open(model);
    const int64_t expected = largest_fitting_ctx(f, read_memory_shape(f), engine_plan_options(opt, 0), mem);
    ASSERT_GT(expected, 256);
    ASSERT_LT(expected, 4096);  // below the training context: memory is the limit
    for (const char* how : {"--fit", "max"}) {
        std::vector<std::string> args = {"run", "-m", model, "-p", "Hello", "-n", "2", "-t", "2", "--mem", "16MiB"};
        if (std::string(how) == "--fit")
            args.push_back("--fit");
        else
            args.insert(args.end(), {"-c", "max"});
        auto r = test::run_moeserve(args);
        ASSERT_EQ(r.status, 0) << r.err;
        EXPECT_NE(r.err.find("fit: -c " + std::to_string(expected) + ","), std::string::npos) << r.err;
    }
    opt.fit_ctx = true;
    opt.mem_bytes = mem;
    Engine e(opt);
    EXPECT_EQ(e.options().n_ctx, expected);
    EXPECT_EQ(e.cache().n_cells(), expected);
    EXPECT_LE(e.plan().total_bytes, mem);
}

TEST(RunFit, c_zero_means_the_training_context) {
    const std::string model = write_preset(test::scratch_dir(), "tiny-qwen3moe", false);
    EngineOptions opt;
    opt.model_path = model;
    opt.n_threads = 2;
    opt.n_ctx = 0;
    Engine e(opt);
    EXPECT_EQ(e.cache().n_cells(), 4096);
    auto r = test::run_moeserve({"run", "-m", model, "-p", "Hi", "-n", "1", "-c", "0", "-t", "2"});
    EXPECT_EQ(r.status, 0) << r.err;
    r = test::run_moeserve({"run", "-m", model, "-p", "Hi", "-c", "lots"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("option -c expects an integer or 'max', got 'lots'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moeserve
