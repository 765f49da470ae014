// The PromptFormatter backed by the Jinja chat-template engine (src/chat/):
// the model's own template (or --chat-template-file / --chat-template
// source) rendered with the variables llama.cpp passes.
#pragma once

#include <memory>
#include <string>

#include "chat/chat_template.h"
#include "server/prompt_formatter.h"

namespace moeserve {

class JinjaFormatter final : public PromptFormatter {
  public:
    explicit JinjaFormatter(ChatTemplate tmpl) : tmpl_(std::move(tmpl)) {}

    std::string name() const override { return "jinja"; }
    // Throws FormatError with the template's message (and line) when the
    // template cannot render the conversation.
    std::string format(const json& messages, const json& tools, bool add_generation_prompt,
                       const json& kwargs) const override;
    // The template's own syntax: tool calls of its family when the request
    // has tools, reasoning as its generation prompt leaves it.
    FormattedChat format_chat(const json& messages, const json& tools, bool add_generation_prompt, const json& kwargs,
                              const ChatOutputOptions& options) const override;

  private:
    ChatTemplate tmpl_;
};

}  // namespace moeserve
