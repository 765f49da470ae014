#include "server/jinja_formatter.h"

namespace moeserve {

std::string JinjaFormatter::format(const json& messages, const json& tools, bool add_generation_prompt,
                                   const json& kwargs) const {
    return format_chat(messages, tools, add_generation_prompt, kwargs, ChatOutputOptions{}).text;
}

FormattedChat JinjaFormatter::format_chat(const json& messages, const json& tools, bool add_generation_prompt,
                                          const json& kwargs, const ChatOutputOptions& options) const {
    ChatTemplateInputs in;
    in.messages = messages;
    in.tools = tools.is_null() ? json::array() : tools;
    in.add_generation_prompt = add_generation_prompt;
    if (kwargs.is_object()) in.chat_template_kwargs = kwargs;
    in.parse_tool_calls = options.parse_tool_calls;
    in.reasoning_format = options.reasoning_format;
    try {
        ChatPrompt p = tmpl_.apply(in);
        return FormattedChat{std::move(p.prompt), std::move(p.syntax)};
    } catch (const std::exception& e) {
        throw FormatError(e.what());
    }
}

}  // namespace moeserve
