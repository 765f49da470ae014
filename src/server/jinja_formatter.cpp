#include "server/jinja_formatter.h"

namespace moeserve {

std::string JinjaFormatter::format(const json& messages, const json& tools, bool add_generation_prompt,
                                   const json& kwargs) const {
    ChatTemplateInputs in;
    in.messages = messages;
    in.tools = tools.is_null() ? json::array() : tools;
    in.add_generation_prompt = add_generation_prompt;
    if (kwargs.is_object()) in.chat_template_kwargs = kwargs;
    try {
        return tmpl_.apply(in).prompt;
    } catch (const std::exception& e) {
        throw FormatError(e.what());
    }
}

}  // namespace moeserve
