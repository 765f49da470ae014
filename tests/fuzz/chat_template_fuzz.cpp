// libFuzzer target for the Jinja interpreter and chat template rendering:
// the input is "template source \0 variables JSON". Parsing and rendering
// must end in output or a jinja::TemplateError, within the render limits (no
// crash, hang, leak or other exception). The model-output parsers have their
// own target, chat_output_fuzz.
//
// Run with `make fuzz` (FUZZ_SECONDS=60 by default); seeds in
// tests/fuzz/corpus/chat_template_fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat/chat.h"

namespace {

using json = nlohmann::ordered_json;

void fuzz_template(std::string_view data) {
    size_t nul = data.find('\0');
    std::string_view source = data.substr(0, nul);
    json vars = json::object();
    if (nul != std::string_view::npos) {
        json parsed = json::parse(data.substr(nul + 1), nullptr, false);
        if (!parsed.is_discarded() && parsed.is_object()) vars = std::move(parsed);
    }
    if (!vars.contains("messages"))
        vars["messages"] = json::parse(R"([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "<think>r</think>ok", "tool_calls": [{"type": "function",
             "function": {"name": "f", "arguments": {"a": 1, "b": [true, null, 1.5]}}}]},
            {"role": "tool", "content": "res"}])");
    vars["add_generation_prompt"] = true;
    moeserve::jinja::RenderLimits limits;
    limits.max_output_bytes = 1 << 20;
    limits.max_string_bytes = 1 << 20;
    limits.max_work_bytes = 64 << 20;
    limits.max_steps = 200000;
    try {
        moeserve::jinja::Template t(source);
        std::string out = t.render(vars, limits);
        if (out.size() > limits.max_output_bytes) std::abort();
    } catch (const moeserve::jinja::TemplateError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_template(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
