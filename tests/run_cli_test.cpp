// `moeserve run` end to end: the real trained stories260K model reproduces
// llama.cpp's greedy text exactly; qwen3moe greedy decoding reproduces the
// golden continuation up to legitimate near-ties.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine_test_util.h"
#include "golden.h"
#include "run_command.h"

namespace moeserve {
namespace {

TEST(RunCli, stories260k_greedy_text_matches_llama_cpp_exactly) {
    MOESERVE_REQUIRE_FIXTURES();
    auto r = test::run_moeserve({"run", "-m", test::fixture("models/real/stories260K.gguf").string(), "-p",
                                 "Once upon a time", "-n", "64", "--temp", "0", "-t", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, test::slurp(test::fixture("models/real/golden/stories260K.greedy64.txt")));
    EXPECT_NE(r.err.find("generation: 64 tokens"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("tokens/s"), std::string::npos);
}

TEST(RunCli, same_seed_gives_the_same_sampled_text) {
    MOESERVE_REQUIRE_FIXTURES();
    auto model = test::fixture("models/real/stories260K.gguf").string();
    auto a = test::run_moeserve({"run", "-m", model, "-p", "Once upon a time", "-n", "40", "--seed", "7"});
    auto b = test::run_moeserve({"run", "-m", model, "-p", "Once upon a time", "-n", "40", "--seed", "7"});
    auto c = test::run_moeserve({"run", "-m", model, "-p", "Once upon a time", "-n", "40", "--seed", "8"});
    ASSERT_EQ(a.status, 0) << a.err;
    EXPECT_EQ(a.out, b.out);
    EXPECT_NE(a.out, c.out);
}

TEST(RunCli, bad_arguments_give_a_clear_error) {
    auto r = test::run_moeserve({"run", "-p", "hi"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("no model given"), std::string::npos) << r.err;
    r = test::run_moeserve({"run", "-m", "/nonexistent.gguf", "-p", "hi"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("/nonexistent.gguf: cannot open"), std::string::npos) << r.err;
    r = test::run_moeserve({"run", "-m", "x.gguf", "-p", "hi", "-ctk", "q9_9"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("unsupported cache type 'q9_9'"), std::string::npos) << r.err;
    r = test::run_moeserve({"run", "-m", "x.gguf", "-p", "hi", "-n", "many"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("option -n expects an integer, got 'many'"), std::string::npos) << r.err;
}

// Greedy decoding reproduces the F16/f16 golden's continuation (up to a near-tie).
TEST(Qwen3MoeGreedy, continuation_matches_the_f16_golden) {
    MOESERVE_REQUIRE_FIXTURES();
    test::Golden g = test::load_golden("qwen3moe-tiny-s1-f16.kv-f16");
    Engine e(test::fixture_engine_options("qwen3moe-tiny-s1", "f16", "f16", 1));
    test::expect_greedy_continuation(e, g);
}

}  // namespace
}  // namespace moeserve
