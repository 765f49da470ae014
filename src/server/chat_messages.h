// A chat-completions body -> the prompt text (spec chat-templates §3.2):
// messages normalized (content a string, text parts joined, developer ->
// system, tool-call arguments parsed into objects), tools rebuilt, template
// kwargs merged over the server's, and the formatter applied. Shared by
// /v1/chat/completions and /apply-template.
#pragma once

#include <string>

#include "server/api_error.h"
#include "server/served_model.h"

namespace moeserve {

struct RenderedChatRequest {
    std::string text;   // the rendered prompt
    json messages;      // normalized
    json tools;         // normalized; empty array when none
    json kwargs;        // template variables
    ChatSyntax syntax;  // how to read the model's answer
    // parallel_tool_calls: false keeps only the first call of an answer.
    bool parallel_tool_calls = true;
};

// Throws ApiError (400) naming what is wrong with the request.
RenderedChatRequest render_chat_prompt(const json& body, const ServedModel& model);

}  // namespace moeserve
