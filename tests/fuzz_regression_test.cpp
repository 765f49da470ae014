// Inputs the fuzz targets (tests/fuzz/) once crashed on, kept as tests of
// the behaviour that was wrong. Each input is also in its target's corpus.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "chat/chat.h"

namespace moeserve {
namespace {

// chat_output_fuzz: a Hermes tool call whose arguments are a bare word and
// whose object is followed by text instead of </tool_call>. The malformed
// call kept its name and arguments, but the parser "closed" the arguments
// with a '}' meant for unfinished objects, so the client got `"abc"}` as a
// complete call's arguments: not JSON.
TEST(FuzzRegression, malformed_hermes_call_keeps_whole_arguments_as_json) {
    ChatSyntax syn;
    syn.tool_format = ToolCallFormat::HermesJson;
    syn.parse_tool_calls = true;
    const std::string text = R"(<tool_call>{"name": "f", "arguments": abc x} trailing)";
    ChatMessage m = parse_chat_output(text, syn);
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_FALSE(m.tool_call_incomplete);
    EXPECT_EQ(m.tool_calls[0].name, "f");
    EXPECT_EQ(m.tool_calls[0].arguments, R"("abc")");
    EXPECT_TRUE(nlohmann::json::accept(m.tool_calls[0].arguments)) << m.tool_calls[0].arguments;
}

// The same for arguments that are an object ending in a nested object: the
// outer object is still closed.
TEST(FuzzRegression, malformed_xml_call_after_an_object_parameter_closes_its_arguments) {
    ChatSyntax syn;
    syn.tool_format = ToolCallFormat::XmlFunction;
    syn.parse_tool_calls = true;
    syn.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "g", "parameters":
        {"type": "object", "properties": {"o": {"type": "object"}, "s": {"type": "string"}}}}}])");
    const std::string text = "<tool_call>\n<function=g>\n<parameter=o>\n{\"c\": 2}\n</parameter>\n<oops>";
    ChatMessage m = parse_chat_output(text, syn);
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_EQ(m.tool_calls[0].name, "g");
    EXPECT_TRUE(nlohmann::json::accept(m.tool_calls[0].arguments)) << m.tool_calls[0].arguments;
}

}  // namespace
}  // namespace moeserve
