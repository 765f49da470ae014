// The built-in chat formatters against the rendering vectors made with the
// real templates (shared/fixtures/chat): every case without tool
// definitions must match byte for byte.
#include <gtest/gtest.h>

#include <fstream>

#include "fixtures.h"
#include "server/prompt_formatter.h"

namespace moeserve {
namespace {

json load(const std::string& name) {
    std::ifstream in(test::fixture("chat/" + name));
    return json::parse(in);
}

std::string family_of(const std::string& template_file) {
    if (template_file == "Qwen3-Coder.jinja") return "chatml";
    if (template_file == "Qwen-Qwen3-0.6B.jinja") return "qwen3";
    if (template_file == "GLM-4.7-Flash.jinja") return "glm4";
    return "nemotron";
}

json normalized_messages(const json& messages) {
    json out = messages;
    for (auto& m : out)
        if (m.contains("content") && m["content"].is_null()) m["content"] = "";
    return out;
}

class ServerPromptFormatterVectors : public ::testing::TestWithParam<const char*> {};

TEST_P(ServerPromptFormatterVectors, renders_like_the_template) {
    MOESERVE_REQUIRE_FIXTURES();
    const json v = load(GetParam());
    auto f = make_builtin_formatter(family_of(v["template"].get<std::string>()));
    ASSERT_TRUE(f);
    const std::string got = f->format(normalized_messages(v["messages"]), json::array(),
                                      v["add_generation_prompt"].get<bool>(), v["extra_variables"]);
    EXPECT_EQ(got, v["expected_prompt"].get<std::string>()) << v["name"];
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ServerPromptFormatterVectors,
                         ::testing::Values("qwen3-coder__thinking_disabled.json",
                                           "qwen3-coder__inline_think_history.json", "qwen3__thinking_disabled.json",
                                           "qwen3__inline_think_history.json", "glm-4.7-flash__thinking_disabled.json",
                                           "glm-4.7-flash__inline_think_history.json",
                                           "nemotron-3-nano__thinking_disabled.json",
                                           "nemotron-3-nano__inline_think_history.json"));

TEST(ServerPromptFormatter, detects_the_family_from_template_source) {
    MOESERVE_REQUIRE_FIXTURES();
    auto read = [](const std::string& name) {
        std::ifstream in(test::fixture("templates/" + name));
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    EXPECT_EQ(formatter_for_template(read("Qwen3-Coder.jinja"))->name(), "chatml");
    EXPECT_EQ(formatter_for_template(read("Qwen-Qwen3-0.6B.jinja"))->name(), "qwen3");
    EXPECT_EQ(formatter_for_template(read("GLM-4.7-Flash.jinja"))->name(), "glm4");
    EXPECT_EQ(formatter_for_template(read("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja"))->name(), "nemotron");
    EXPECT_EQ(formatter_for_template("{{ messages }}"), nullptr);
}

TEST(ServerPromptFormatter, renders_tool_history_and_refuses_tool_definitions) {
    auto f = make_builtin_formatter("qwen3");
    json msgs = json::parse(R"([
        {"role":"user","content":"Weather?"},
        {"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
        {"role":"tool","content":"18C"}])");
    EXPECT_EQ(f->format(msgs, json::array(), true, json::object()),
              "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", "
              "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n18C\n"
              "</tool_response><|im_end|>\n<|im_start|>assistant\n");
    json tools = json::parse(R"([{"type":"function","function":{"name":"f","description":"","parameters":{}}}])");
    EXPECT_THROW(f->format(msgs, tools, true, json::object()), FormatError);
    EXPECT_EQ(make_builtin_formatter("no-such-format"), nullptr);
}

TEST(ServerPromptFormatter, python_json_matches_tojson) {
    EXPECT_EQ(python_json(json::parse(R"({"b":1,"a":[true,null,"é"],"c":{"x":1.5}})")),
              R"({"b": 1, "a": [true, null, "é"], "c": {"x": 1.5}})");
}

}  // namespace
}  // namespace moeserve
