// general.sampling.* in the model file (spec server-behaviour §1.2): the
// server's sampling defaults become the file's recommendations for every
// setting not chosen on the command line, /props and each request without
// its own value report them, and a request's own field still wins. The
// fixtures carry no such keys, so the test writes a copy of one that does,
// with the value types llama.cpp parses (a float, integers, a number in a
// string, a sampler list naming an unknown sampler).
#include <gtest/gtest.h>

#include "fixtures.h"
#include "model_copy.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;
using test::json;
using test::Server;

std::string recommending_model() {
    return test::model_copy(test::fixture("models/qwen3moe-tiny-s1-q8_0.gguf").string(), "sampling-keys",
                            [](GgufWriter& w) {
                                w.set("general.sampling.temp", 0.25f);
                                w.set("general.sampling.top_k", uint32_t{7});
                                w.set("general.sampling.top_p", "0.5");
                                w.set("general.sampling.min_p", 0.0f);
                                w.set("general.sampling.penalty_last_n", int32_t{32});
                                w.set("general.sampling.penalty_repeat", 1.1f);
                                w.set("general.sampling.sequence", "top_k;frobnicate;temperature");
                            });
}

class ServerModelSampling : public test::SharedServerTest<ServerModelSampling> {
  public:
    static std::vector<std::string> server_args() {
        // --top-k and --repeat-penalty are the user's: the file's values do not replace them.
        return {"-m", recommending_model(), "-c", "1024", "-t", "1", "--top-k", "3", "--repeat-penalty", "1.0"};
    }
};

TEST_F(ServerModelSampling, the_files_recommendations_replace_the_defaults_the_user_did_not_set) {
    const auto r = curl(server_->url("/props"));
    ASSERT_EQ(r.status, 200) << r.body;
    const json p = r.json_body()["default_generation_settings"]["params"];
    EXPECT_FLOAT_EQ(p["temperature"].get<float>(), 0.25f);
    EXPECT_EQ(p["top_k"], 3);  // --top-k 3
    EXPECT_FLOAT_EQ(p["top_p"].get<float>(), 0.5f);
    EXPECT_FLOAT_EQ(p["min_p"].get<float>(), 0.0f);
    EXPECT_EQ(p["repeat_last_n"], 32);
    EXPECT_FLOAT_EQ(p["repeat_penalty"].get<float>(), 1.0f);  // --repeat-penalty 1.0
    EXPECT_EQ(p["samplers"], json::array({"top_k", "temperature"}));
    EXPECT_FLOAT_EQ(p["typical_p"].get<float>(), 1.0f);  // not in the file: llama-server's default
    EXPECT_NE(server_->log().find("sampling defaults from the model file"), std::string::npos) << server_->log();
}

TEST_F(ServerModelSampling, a_request_gets_them_unless_it_sets_its_own) {
    auto settings = [&](const json& body) {
        const auto r = curl(server_->url("/completion"), "POST", body.dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body()["generation_settings"];
    };
    const json plain = settings({{"prompt", "Hello"}, {"n_predict", 2}});
    EXPECT_FLOAT_EQ(plain["temperature"].get<float>(), 0.25f);
    EXPECT_FLOAT_EQ(plain["top_p"].get<float>(), 0.5f);
    const json own = settings({{"prompt", "Hello"}, {"n_predict", 2}, {"temperature", 0.9}, {"top_p", 0.7}});
    EXPECT_FLOAT_EQ(own["temperature"].get<float>(), 0.9f);
    EXPECT_FLOAT_EQ(own["top_p"].get<float>(), 0.7f);
}

// Without such keys nothing changes: llama-server's own defaults.
TEST(ServerModelSamplingDefaults, a_file_without_recommendations_keeps_llama_servers_defaults) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/qwen3moe-tiny-s1-q8_0.gguf").string(), "-c", "512", "-t", "1"});
    ASSERT_TRUE(s.ready()) << s.log();
    const json p = curl(s.url("/props")).json_body()["default_generation_settings"]["params"];
    EXPECT_FLOAT_EQ(p["temperature"].get<float>(), 0.8f);
    EXPECT_EQ(p["top_k"], 40);
    EXPECT_FLOAT_EQ(p["top_p"].get<float>(), 0.95f);
    EXPECT_EQ(p["repeat_last_n"], 64);
    EXPECT_EQ(s.log().find("sampling defaults from the model file"), std::string::npos);
}

}  // namespace
}  // namespace moeserve
