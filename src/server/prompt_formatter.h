// Chat messages -> prompt text. PromptFormatter is the seam: with --jinja
// (the default) the model's template runs in the Jinja engine (src/chat/,
// server/jinja_formatter.h); with --no-jinja, or for a model without a
// template, the server uses the built-in formatters below, which render the
// seed families' templates exactly for conversations without tool
// definitions (spec chat-templates §4):
//
//   chatml    Qwen3-Coder and plain ChatML: <|im_start|>role\n...<|im_end|>\n
//   qwen3     Qwen3 hybrid thinking (reasoning of earlier turns dropped,
//             enable_thinking=false adds an empty think block)
//   glm4      GLM-4.7-Flash: [gMASK]<sop><|user|>...<|assistant|><think>
//   nemotron  Nemotron-3-Nano: ChatML with a system turn always and <think>
//
// Messages arrive normalized (server/chat_request.h): content is a string,
// tool-call arguments are JSON objects.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "chat/chat_output.h"

namespace moeserve {

using json = nlohmann::ordered_json;

// How a request wants its output read back (tool_choice, reasoning_format).
struct ChatOutputOptions {
    bool parse_tool_calls = true;  // false for tool_choice "none"
    ReasoningFormat reasoning_format = ReasoningFormat::Auto;
};

// A rendered prompt and the syntax the model's answer to it will have.
struct FormattedChat {
    std::string text;
    ChatSyntax syntax;
};

// A conversation the formatter cannot render (HTTP 400).
class FormatError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class PromptFormatter {
  public:
    virtual ~PromptFormatter() = default;
    virtual std::string name() const = 0;
    // messages: [{role, content, [reasoning_content], [tool_calls]}...];
    // tools: an array (empty when none); kwargs: template variables such as
    // enable_thinking.
    virtual std::string format(const json& messages, const json& tools, bool add_generation_prompt,
                               const json& kwargs) const = 0;
    // The prompt and its output syntax. The built-in formatters parse
    // reasoning only (they refuse tools): a generation prompt that opens a
    // <think> block makes the output start inside it, and for the families
    // that think, a <think> block the model opens itself is reasoning too.
    virtual FormattedChat format_chat(const json& messages, const json& tools, bool add_generation_prompt,
                                      const json& kwargs, const ChatOutputOptions& options) const;
};

// A built-in formatter by name (chatml, qwen3, qwen3-coder, glm4, glm-4.7,
// nemotron); nullptr for another name.
std::unique_ptr<PromptFormatter> make_builtin_formatter(const std::string& name);

// The built-in formatter whose family a template source belongs to (judged
// by its markers); nullptr when none matches.
std::unique_ptr<PromptFormatter> formatter_for_template(const std::string& source);

// Python's json.dumps as the templates' tojson writes it: insertion order,
// ", " and ": " separators, UTF-8 kept.
std::string python_json(const json& value);

}  // namespace moeserve
