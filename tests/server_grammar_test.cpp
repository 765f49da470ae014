// End to end: constrained output through the real server. Whatever the
// random-weight model would say, the answer follows the request's grammar,
// JSON schema or response_format; bad grammars are 400s naming the problem.
#include <gtest/gtest.h>

#include <regex>

#include "fixtures.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;
using test::json;
using test::Server;

const json kSchema = json::parse(R"({"type":"object","properties":{
    "city":{"type":"string","maxLength":12},"days":{"type":"integer"},
    "units":{"enum":["C","F"]}},"required":["city","days"]})");

void expect_schema_shape(const std::string& content) {
    SCOPED_TRACE(content);
    const json v = json::parse(content, nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << "not JSON";
    ASSERT_TRUE(v.is_object());
    EXPECT_TRUE(v["city"].is_string());
    EXPECT_LE(v["city"].get<std::string>().size(), 12u * 4);  // at most 12 characters of up to 4 bytes
    EXPECT_TRUE(v["days"].is_number_integer());
    if (v.contains("units")) EXPECT_TRUE(v["units"] == "C" || v["units"] == "F");
    for (const auto& [k, _] : v.items()) EXPECT_TRUE(k == "city" || k == "days" || k == "units") << k;
}

class ServerGrammar : public test::SharedServerTest<ServerGrammar> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "2", "-c", "2048", "-t", "2"};
    }
};

TEST_F(ServerGrammar, response_format_json_schema_gives_json_of_that_shape_streamed_and_not) {
    for (int seed = 1; seed <= 4; ++seed) {
        json body = {
            {"messages", json::array({{{"role", "user"}, {"content", "Weather?"}}})},
            {"max_tokens", 300},
            {"seed", seed},
            {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "w"}, {"schema", kSchema}}}}}};
        auto r = curl(server_->url("/v1/chat/completions"), "POST", body.dump());
        ASSERT_EQ(r.status, 200) << r.body;
        const json answer = r.json_body();
        const json& choice = answer["choices"][0];
        EXPECT_EQ(choice["finish_reason"], "stop");
        expect_schema_shape(choice["message"]["content"]);

        body["stream"] = true;
        auto s = curl(server_->url("/v1/chat/completions"), "POST", body.dump());
        std::string text;
        for (const auto& ev : test::sse_payloads(s.body)) {
            if (ev == "[DONE]") continue;
            const json chunk = json::parse(ev);
            for (const auto& c : chunk["choices"])
                if (c["delta"].contains("content") && c["delta"]["content"].is_string()) text += c["delta"]["content"];
        }
        EXPECT_EQ(text, choice["message"]["content"].get<std::string>()) << "same seed, same grammar, same text";
    }
}

TEST_F(ServerGrammar, gbnf_grammar_json_object_and_native_json_schema) {
    auto g = curl(server_->url("/completion"), "POST",
                  R"({"prompt":"Code:","n_predict":60,"seed":5,"grammar":"root ::= [0-9]{3} \"-\" [a-c]{1,4} \"!\""})");
    ASSERT_EQ(g.status, 200) << g.body;
    const std::string content = g.json_body()["content"];
    EXPECT_TRUE(std::regex_match(content, std::regex("[0-9]{3}-[a-c]{1,4}!"))) << content;
    EXPECT_EQ(g.json_body()["stop_type"], "eos");

    auto o = curl(
        server_->url("/v1/chat/completions"), "POST",
        R"({"messages":[{"role":"user","content":"x"}],"max_tokens":300,"seed":2,"response_format":{"type":"json_object"}})");
    ASSERT_EQ(o.status, 200) << o.body;
    // Any object: strings are unbounded, so a random model may run out of
    // tokens inside one; a finished answer is an object.
    const json oanswer = o.json_body();
    const json& oc = oanswer["choices"][0];
    const std::string otext = oc["message"]["content"];
    EXPECT_EQ(otext.substr(0, 1), "{") << otext;
    if (oc["finish_reason"] == "stop") EXPECT_TRUE(json::parse(otext, nullptr, false).is_object()) << otext;

    json native = {{"prompt", "x"}, {"n_predict", 300}, {"seed", 9}, {"json_schema", kSchema}};
    auto n = curl(server_->url("/completion"), "POST", native.dump());
    ASSERT_EQ(n.status, 200) << n.body;
    expect_schema_shape(n.json_body()["content"]);
}

TEST_F(ServerGrammar, bad_grammars_and_schemas_are_400s_naming_the_problem) {
    struct Case {
        const char* body;
        const char* says;
    } cases[] = {
        {R"({"prompt":"x","grammar":"root ::= item"})", "'item' is used but never defined"},
        {R"({"prompt":"x","grammar":"root ::= \"a"})", "line 1"},
        {R"({"prompt":"x","grammar":"root ::= \"a\"","json_schema":{}})", "not both"},
        {R"({"prompt":"x","json_schema":{"type":"string","pattern":"^a+$"}})", "'pattern' is not supported"},
        {R"({"prompt":"x","response_format":{"type":"xml"}})", "response_format.type"},
        {R"({"prompt":"x","response_format":{"type":"json_schema"}})", "json_schema.schema"},
        {R"({"prompt":"x","grammar":7})", "'grammar'"},
    };
    for (const auto& c : cases) {
        auto r = curl(server_->url("/v1/completions"), "POST", c.body);
        EXPECT_EQ(r.status, 400) << c.body;
        EXPECT_NE(r.body.find(c.says), std::string::npos) << c.body << " -> " << r.body;
    }
    EXPECT_EQ(curl(server_->url("/health")).status, 200);
}

}  // namespace
}  // namespace moeserve
