// /infill (llama-server's fill-in-the-middle endpoint) on the real server.
// The fixture models have no FIM tokens, so these tests write a copy of the
// tiny Qwen3-MoE fixture whose GGUF names five of its special tokens as the
// FIM tokens (tokenizer.ggml.fim_*_token_id). Their texts, rendered in the
// native response's "prompt", show the layout; the expected strings are
// written out here from llama.cpp's format_prompt_infill.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "model_copy.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;
using test::json;
using test::Server;

std::string plain_model() {
    return test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string();
}

// The fixture's special tokens standing in for FIM tokens.
constexpr uint32_t kPre = 681;  // <tool_call>
constexpr uint32_t kSuf = 682;  // </tool_call>
constexpr uint32_t kMid = 683;  // <tool_response>
constexpr uint32_t kRep = 679;  // <think>
constexpr uint32_t kSep = 680;  // </think>

// A copy of the fixture with FIM token ids; with_repo adds fim_rep and fim_sep.
std::string fim_model(bool with_repo) {
    return test::model_copy(plain_model(), with_repo ? "fim-repo" : "fim", [&](GgufWriter& w) {
        w.set("tokenizer.ggml.fim_pre_token_id", kPre);
        w.set("tokenizer.ggml.fim_suf_token_id", kSuf);
        w.set("tokenizer.ggml.fim_mid_token_id", kMid);
        if (with_repo) {
            w.set("tokenizer.ggml.fim_rep_token_id", kRep);
            w.set("tokenizer.ggml.fim_sep_token_id", kSep);
        }
    });
}

// -b 256: the prefix keeps its last 192 tokens, the suffix its first 62 - |prompt|.
class ServerInfillE2E : public test::SharedServerTest<ServerInfillE2E> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m", fim_model(false), "-np", "2", "-c", "4096", "-b", "256", "-t", "2"};
    }
};

json infill(const Server& s, const json& body) {
    auto r = curl(s.url("/infill"), "POST", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json_body();
}

std::vector<int32_t> tokenize(const Server& s, const std::string& text) {
    return curl(s.url("/tokenize"), "POST", json{{"content", text}, {"parse_special", false}}.dump())
        .json_body()["tokens"]
        .get<std::vector<int32_t>>();
}

std::string detokenize(const Server& s, const std::vector<int32_t>& ids) {
    return curl(s.url("/detokenize"), "POST", json{{"tokens", ids}}.dump()).json_body()["content"];
}

TEST_F(ServerInfillE2E, prefix_suffix_middle_layout_with_the_prompt_after_the_prefix) {
    const std::string prefix = "def add(a, b):\n    ", suffix = "\n    return c\n";
    json r =
        infill(*server_, {{"input_prefix", prefix}, {"input_suffix", suffix}, {"n_predict", 4}, {"temperature", 0}});
    EXPECT_EQ(r["prompt"], "<tool_call>" + prefix + "</tool_call>" + suffix + "<tool_response>");
    EXPECT_EQ(r["tokens_evaluated"], tokenize(*server_, prefix).size() + tokenize(*server_, suffix).size() + 3);
    EXPECT_EQ(r["tokens_predicted"], 4);
    EXPECT_TRUE(r.contains("content"));
    EXPECT_TRUE(r.contains("generation_settings"));  // the native completion answer

    // "prompt" goes after the prefix (llama.cpp's code; its comment puts it after [FIM_MID]).
    r = infill(*server_, {{"input_prefix", prefix}, {"input_suffix", suffix}, {"prompt", "c = a"}, {"n_predict", 1}});
    EXPECT_EQ(r["prompt"], "<tool_call>" + prefix + "c = a</tool_call>" + suffix + "<tool_response>");

    // Without fim_sep, each extra chunk is introduced by a snippet line, all before the prefix.
    r = infill(*server_, {{"input_prefix", "x"},
                          {"input_suffix", "y"},
                          {"input_extra", {{{"filename", "a.py"}, {"text", "import os\n"}}, {{"text", "B = 2\n"}}}},
                          {"n_predict", 1}});
    EXPECT_EQ(r["prompt"], std::string("\n\n--- snippet ---\n\nimport os\n\n\n--- snippet ---\n\nB = 2\n"
                                       "<tool_call>x</tool_call>y<tool_response>"));
    // Prefix and suffix may mix text and token ids; special-token text in them is plain text.
    r = infill(*server_,
               {{"input_prefix", json::array({"a", 677, "b"})}, {"input_suffix", "<|im_end|>"}, {"n_predict", 1}});
    EXPECT_EQ(r["prompt"], std::string("<tool_call>a<|im_start|>b</tool_call><|im_end|><tool_response>"));
    EXPECT_EQ(r["tokens_evaluated"], 3 + tokenize(*server_, "a").size() + 1 + tokenize(*server_, "b").size() +
                                         tokenize(*server_, "<|im_end|>").size());
}

TEST_F(ServerInfillE2E, long_prefix_and_suffix_are_cut_to_three_quarters_and_a_quarter_of_the_batch) {
    std::string prefix, suffix;
    for (int i = 0; i < 300; ++i) prefix += "p" + std::to_string(i) + " ";
    for (int i = 0; i < 300; ++i) suffix += "s" + std::to_string(i) + " ";
    const auto pt = tokenize(*server_, prefix), st = tokenize(*server_, suffix), qt = tokenize(*server_, "q = 1");
    ASSERT_GT(pt.size(), 192u);
    ASSERT_GT(st.size(), 62u);
    const std::vector<int32_t> prefix_kept(pt.end() - 192, pt.end());
    const std::vector<int32_t> suffix_kept(st.begin(), st.begin() + (62 - static_cast<long>(qt.size())));
    json r =
        infill(*server_, {{"input_prefix", prefix}, {"input_suffix", suffix}, {"prompt", "q = 1"}, {"n_predict", 1}});
    EXPECT_EQ(r["prompt"], "<tool_call>" + detokenize(*server_, prefix_kept) + "q = 1</tool_call>" +
                               detokenize(*server_, suffix_kept) + "<tool_response>");
    EXPECT_EQ(r["tokens_evaluated"], 3 + 192 + qt.size() + suffix_kept.size());
}

TEST_F(ServerInfillE2E, streaming_and_bad_requests) {
    auto s =
        curl(server_->url("/infill"), "POST", R"({"input_prefix":"a","input_suffix":"b","n_predict":3,"stream":true})");
    ASSERT_EQ(s.status, 200) << s.body;
    const auto events = test::sse_payloads(s.body);
    ASSERT_FALSE(events.empty());
    EXPECT_TRUE(json::parse(events.back())["stop"].get<bool>());
    EXPECT_EQ(events.back().find("[DONE]"), std::string::npos);  // native: no [DONE]

    auto msg = [&](const std::string& body) {
        auto r = curl(server_->url("/infill"), "POST", body);
        EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
        return r.json_body()["error"]["message"].get<std::string>();
    };
    EXPECT_EQ(msg(R"({"input_suffix":"b"})"), "\"input_prefix\" is required");
    EXPECT_EQ(msg(R"({"input_prefix":"a"})"), "\"input_suffix\" is required");
    EXPECT_EQ(msg(R"({"input_prefix":"a","input_suffix":"b","prompt":[1,2]})"), "\"prompt\" must be a string");
    EXPECT_EQ(msg(R"({"input_prefix":"a","input_suffix":"b","input_extra":"x"})"),
              "\"input_extra\" must be an array of {\"filename\": string, \"text\": string}");
    EXPECT_EQ(msg(R"({"input_prefix":"a","input_suffix":"b","input_extra":[{"filename":"f"}]})"),
              "extra_context chunk must contain a \"text\" field with a string value");
    EXPECT_EQ(msg(R"({"input_prefix":"a","input_suffix":"b","input_extra":[{"text":"t","filename":3}]})"),
              "extra_context chunk's \"filename\" field must be a string");
}

TEST(ServerInfill, repo_level_layout_and_spm_order) {
    MOESERVE_REQUIRE_FIXTURES();
    // -b 256 leaves the extra context 2048 - 256 + 2 tokens (with the default
    // -b 2048 it would keep only the last 2, as llama-server does).
    Server s({"-m", fim_model(true), "-np", "1", "-c", "2048", "-b", "256", "-t", "2", "--spm-infill"});
    ASSERT_TRUE(s.ready()) << s.log();
    json r = infill(s, {{"input_prefix", "PRE"},
                        {"input_suffix", "SUF"},
                        {"input_extra", {{{"filename", "a.py"}, {"text", "print(1)\n"}}, {{"text", "x = 2\n"}}}},
                        {"n_predict", 1}});
    // [REP]myproject\n [SEP]a.py\n print(1)\n [SEP]tmp\n x = 2\n [SEP]filename\n [SUF]SUF [PRE]PRE [MID]
    EXPECT_EQ(r["prompt"],
              std::string("<think>myproject\n</think>a.py\nprint(1)\n</think>tmp\nx = 2\n</think>filename\n"
                          "</tool_call>SUF<tool_call>PRE<tool_response>"));
}

TEST(ServerInfill, a_model_without_fim_tokens_answers_501) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", plain_model(), "-np", "1", "-c", "512", "-t", "1"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto r = curl(s.url("/infill"), "POST", R"({"input_prefix":"a","input_suffix":"b"})");
    EXPECT_EQ(r.status, 501);
    EXPECT_EQ(r.json_body()["error"]["type"], "not_supported_error");
    EXPECT_EQ(r.json_body()["error"]["message"],
              "Infill is not supported by this model: prefix token is missing. suffix token is missing. middle token "
              "is missing. ");
}

}  // namespace
}  // namespace moeserve
