// libFuzzer target for reading model output back into an OpenAI message
// (reasoning and tool calls, src/chat/chat_output.h). The first byte picks
// the syntax (tool-call format, forced reasoning prefix, reasoning format),
// the second the streaming chunk size, the rest is the model's output. The
// whole parse must not throw, tool-call arguments of complete calls must be
// JSON, and streaming the same text in chunks must give exactly the whole
// parse.
//
// Run with `make fuzz` (FUZZ_SECONDS=60 by default); seeds in
// tests/fuzz/corpus/chat_output_fuzz/.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat/chat.h"

namespace {

using json = nlohmann::ordered_json;

json fuzz_tools() {
    static const json tools = json::parse(R"([
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "a": {"type": "integer"}, "s": {"type": "string"}, "o": {"type": "object"}, "n": {"type": ["string", "null"]}}}}},
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}}}}])");
    return tools;
}

void fuzz_output(std::string_view data) {
    if (data.empty()) return;
    uint8_t mode = static_cast<uint8_t>(data[0]);
    uint8_t step = static_cast<uint8_t>(data.size() > 1 ? data[1] : 7);
    std::string_view text = data.substr(std::min<size_t>(2, data.size()));
    moeserve::ChatSyntax syn;
    static const moeserve::ToolCallFormat kFormats[] = {
        moeserve::ToolCallFormat::None, moeserve::ToolCallFormat::HermesJson, moeserve::ToolCallFormat::XmlFunction,
        moeserve::ToolCallFormat::GlmArgKeyValue};
    syn.tool_format = kFormats[mode & 3];
    syn.parse_tool_calls = (mode & 4) == 0;
    syn.forced_reasoning_prefix = (mode & 8) ? ((mode & 16) ? "<think>\n" : "<think>") : "";
    syn.model_may_think = (mode & 32) != 0;
    syn.reasoning_format = (mode & 64) ? moeserve::ReasoningFormat::None : moeserve::ReasoningFormat::Auto;
    syn.tools = fuzz_tools();

    int counter = 0;
    auto ids = [&counter] { return "id" + std::to_string(counter++); };
    moeserve::ChatMessage whole = moeserve::parse_chat_output(text, syn, ids);
    for (size_t i = 0; i < whole.tool_calls.size(); ++i) {
        bool last_incomplete = whole.tool_call_incomplete && i + 1 == whole.tool_calls.size();
        if (!last_incomplete && !json::accept(whole.tool_calls[i].arguments)) std::abort();
    }

    counter = 0;
    moeserve::ChatStreamParser stream(syn, ids);
    moeserve::ChatMessage acc;
    auto apply = [&](const std::vector<moeserve::ChatDelta>& deltas) {
        for (const auto& d : deltas) {
            switch (d.kind) {
                case moeserve::ChatDelta::Kind::Reasoning:
                    acc.reasoning_content += d.text;
                    break;
                case moeserve::ChatDelta::Kind::Content:
                    acc.content += d.text;
                    break;
                case moeserve::ChatDelta::Kind::ToolCallStart:
                    if (d.tool_index != acc.tool_calls.size()) std::abort();
                    acc.tool_calls.push_back({d.tool_id, d.tool_name, d.text});
                    break;
                case moeserve::ChatDelta::Kind::ToolCallArguments:
                    if (d.tool_index >= acc.tool_calls.size()) std::abort();
                    acc.tool_calls[d.tool_index].arguments += d.text;
                    break;
            }
        }
    };
    size_t chunk = 1 + step % 13;
    for (size_t p = 0; p < text.size(); p += chunk) apply(stream.push(text.substr(p, chunk)));
    apply(stream.finish());
    acc.tool_call_incomplete = whole.tool_call_incomplete;
    if (acc.to_json().dump(-1, ' ', false, json::error_handler_t::replace) !=
        whole.to_json().dump(-1, ' ', false, json::error_handler_t::replace))
        std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_output(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
