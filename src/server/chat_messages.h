// A chat-completions body -> the prompt text (spec chat-templates §3.2):
// messages normalized (content a string, text parts joined, developer ->
// system, tool-call arguments parsed into objects), tools rebuilt, template
// kwargs merged over the server's, and the formatter applied. Shared by
// /v1/chat/completions and /apply-template.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

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
    // With locate_last_user: the bytes of text that are the content of the last
    // user message, [first, second), when the template lets them be found.
    std::optional<std::pair<size_t, size_t>> last_user_span;
    // With locate_last_user: the bytes of text where the content of each user or
    // tool message starts, in order, as far as the template lets them be found
    // (a template that changes what surrounds a message's content stops the list
    // there).
    std::vector<size_t> message_starts;
};

// Throws ApiError (400) naming what is wrong with the request. locate_last_user
// renders the conversation again (with markers for the contents) to find
// last_user_span and message_starts.
RenderedChatRequest render_chat_prompt(const json& body, const ServedModel& model, bool locate_last_user = false);

}  // namespace moeserve
