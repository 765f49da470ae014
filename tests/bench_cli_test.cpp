// `moeserve bench` on a tiny synthetic model: the markdown table has
// llama-bench's columns plus the bandwidth ones; --json and --csv parse.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/bench_runner.h"
#include "fixtures.h"
#include "run_command.h"
#include "synth/presets.h"

namespace moeserve {
namespace {

std::string tiny_model() {
    const std::string path = (test::scratch_dir() / "tiny.gguf").string();
    write_synth_model(path, *synth_preset("tiny-qwen3moe", FileMix::Q4_K_M));
    return path;
}

TEST(BenchCli, markdown_table_has_every_column_and_test) {
    const std::string model = tiny_model();
    auto r = test::run_moeserve({"bench", "-m", model, "-p", "16", "-n", "4", "-d", "0,64", "-r", "2", "-t", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("read bandwidth (2 threads):"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| model | size | params | backend | threads | type_k | type_v | test | t/s | MB/token | "
                         "GB/s | % of read BW |"),
              std::string::npos)
        << r.out;
    for (const char* test : {"| pp16 |", "| tg4 |", "| pp16 @ d64 |", "| tg4 @ d64 |"})
        EXPECT_NE(r.out.find(test), std::string::npos) << test << "\n" << r.out;
    EXPECT_NE(r.out.find(" ± "), std::string::npos);
}

TEST(BenchCli, json_gives_samples_and_effective_bandwidth) {
    const std::string model = tiny_model();
    auto r = test::run_moeserve({"bench", "-m", model, "-p", "8", "-n", "3", "-d", "32", "-r", "3", "-t", "2", "-ctk",
                                 "f16,q8_0", "-ctv", "q8_0", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 4u);  // (pp8, tg3) × (f16, q8_0) K caches
    for (const auto& row : j) {
        EXPECT_EQ(row["n_depth"], 32);
        EXPECT_EQ(row["samples_ts"].size(), 3u);
        EXPECT_GT(row["avg_ts"].get<double>(), 0.0);
        EXPECT_EQ(row["type_v"], "q8_0");
        EXPECT_GT(row["read_bandwidth_gbs"].get<double>(), 0.0);
        if (row["n_gen"] == 3)
            EXPECT_GT(row["effective_gbs"].get<double>(), 0.0);
        else
            EXPECT_TRUE(row["effective_gbs"].is_null());
    }
    EXPECT_EQ(j[0]["type_k"], "f16");
    EXPECT_EQ(j[2]["type_k"], "q8_0");
}

TEST(BenchCli, csv_has_a_header_and_one_line_per_test) {
    const std::string model = tiny_model();
    auto r = test::run_moeserve({"bench", "-m", model, "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--csv"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.rfind("model_filename,model_size,model_n_params,", 0), 0u) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3);
}

TEST(BenchCli, parallel_decode_runs_every_sequence_side_by_side) {
    const std::string model = tiny_model();
    auto r = test::run_moeserve(
        {"bench", "-m", model, "-p", "0", "-n", "5", "-d", "40", "-npl", "1,3", "-r", "2", "-t", "2", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["test"], "tg5 @ d40");
    EXPECT_EQ(j[0]["n_parallel"], 1);
    EXPECT_GT(j[0]["effective_gbs"].get<double>(), 0.0);
    EXPECT_EQ(j[1]["test"], "tg5 x3 @ d40");
    EXPECT_EQ(j[1]["n_parallel"], 3);
    EXPECT_TRUE(j[1]["bytes_per_token"].is_null());  // the experts a step reads depend on the overlap
    EXPECT_GT(j[1]["avg_ts"].get<double>(), 0.0);

    // What the test did to the cache: three sequences, each at depth + n_gen.
    EngineOptions opt;
    opt.model_path = model;
    opt.n_threads = 1;
    opt.n_ctx = 3 * 64;
    opt.n_seq = 3;
    Engine engine(opt);
    BenchTest t;
    t.n_gen = 5;
    t.depth = 40;
    t.n_parallel = 3;
    const BenchSample s = run_bench_test(engine, t, 1);
    EXPECT_GT(s.tokens_per_s, 0.0);
    for (int seq = 0; seq < 3; ++seq) EXPECT_EQ(engine.cache().seq_length(seq), 45) << "sequence " << seq;
}

// The untimed decode steps before tgN are taken back, also for a hybrid
// model whose Mamba state goes back through a snapshot: the sequences end at
// depth + n_gen (a state that could not be rewound would throw).
TEST(BenchCli, decode_warm_up_is_taken_back_from_a_recurrent_state) {
    MOESERVE_REQUIRE_FIXTURES();
    EngineOptions opt;
    opt.model_path = test::fixture("models/nemotron-h-moe-tiny-s1-q4_k_m.gguf").string();
    opt.n_threads = 1;
    opt.n_ctx = 2 * 64;
    opt.n_seq = 2;
    Engine engine(opt);
    BenchTest t;
    t.n_gen = 4;
    t.depth = 20;
    t.n_parallel = 2;
    t.real_depth = true;  // a real Mamba state to take back
    run_bench_test(engine, t, 7);
    for (int seq = 0; seq < 2; ++seq) EXPECT_EQ(engine.cache().seq_length(seq), 24) << "sequence " << seq;
}

TEST(BenchCli, names_bad_arguments) {
    auto r = test::run_moeserve({"bench", "-m", "x.gguf", "-p", "a,b"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("option -p expects integers"), std::string::npos) << r.err;
    r = test::run_moeserve({"bench", "-m", "x.gguf", "-p", "0", "-n", "0"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("nothing to measure"), std::string::npos) << r.err;
    r = test::run_moeserve({"bench", "-m", "x.gguf", "-npl", "0"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("option -npl expects integers of at least 1"), std::string::npos) << r.err;
}

// The depth lists of the benchmark programs (bench/*_bench.cpp) go through parse_int_list.
TEST(BenchCli, int_lists_parse_whole_numbers_and_name_a_bad_item) {
    EXPECT_EQ(parse_int_list("0,8192,32768"), (std::vector<int64_t>{0, 8192, 32768}));
    EXPECT_EQ(parse_int_list("7"), (std::vector<int64_t>{7}));
    for (const char* bad : {"1,x", "4k", "-1", "1,,2", ""}) {
        try {
            parse_int_list(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
}

}  // namespace
}  // namespace moeserve
