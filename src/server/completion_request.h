// The completion endpoints' request bodies -> GenerationRequests (spec
// server-behaviour §5.4, §5.5, §5.7): the prompt (chat messages through the
// formatter, or a completion prompt in any of its forms), generation limits,
// sampling fields under their native and OpenAI names, stop strings, stream
// options. Unknown fields are ignored; a wrong type or a hard-range
// violation is a 400 naming the field.
#pragma once

#include <string>
#include <vector>

#include "chat/chat_output.h"
#include "engine/generation.h"
#include "server/api_error.h"
#include "server/served_model.h"

namespace moeserve {

enum class ApiKind { chat, completions, native };

struct CompletionCall {
    ApiKind kind = ApiKind::chat;
    std::vector<GenerationRequest> requests;  // one per prompt and choice; index = position
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
    bool logprobs = false;       // OpenAI logprobs wanted (n_probs > 0)
    bool return_tokens = false;  // native: fill "tokens"
    bool timings_per_token = false;
    std::string prompt_text;  // native: the prompt as text (first prompt)
    // native: only these fields of the final object ("a/b" reads b inside a
    // and puts it at the top level under the key "a/b", as llama-server does).
    std::vector<std::string> response_fields;
    // chat: how to read the answer into content, reasoning_content and tool_calls.
    ChatSyntax chat_syntax;
    bool parallel_tool_calls = true;  // false: only an answer's first tool call is kept
};

CompletionCall parse_completion_call(ApiKind kind, const json& body, const ServedModel& model);

// Prompts in llama-server's forms: a string, token ids, a mix of strings and
// ids (one prompt), or an array of those (several). Strings are tokenized
// with BOS and special tokens; `field` names the field in errors.
std::vector<std::vector<int32_t>> parse_prompts(const json& prompt, const ServedModel& model, const char* field);

// The generation parameters under llama-server's names (generation_settings, /slots).
json generation_settings(const GenerationRequest& rq, const ServedModel& model);

}  // namespace moeserve
