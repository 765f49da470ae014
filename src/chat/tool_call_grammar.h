// The grammar a tool-calling answer follows, as llama-server adds it to a
// chat request with tools (spec server-behaviour §5.4, chat-templates §4):
// each call in the template family's own syntax, the function one of the
// request's tools, its arguments those the tool's JSON schema allows.
//
// With tool_choice "auto" the grammar is lazy: the answer is free until it
// writes a trigger (the family's "<tool_call>" marker, outside reasoning),
// and from that marker on it must be calls. With "required" it applies from
// the first token: the answer is calls, after the model's reasoning block
// where it has one.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/chat_output.h"

namespace moeserve {

struct ToolCallGrammar {
    std::string gbnf;
    std::vector<std::string> triggers;  // texts that start a call (the lazy grammar's triggers)
};

// How the answer may begin before its calls, for "required".
enum class ReasoningLead {
    None,      // the calls come first
    Optional,  // the model may write a <think>...</think> block first (Qwen3)
    Open,      // the prompt opened the block: reasoning text, "</think>", then the calls (GLM, Nemotron)
};

struct ToolCallGrammarOptions {
    ToolCallFormat format = ToolCallFormat::None;
    bool parallel = true;  // several calls in one answer
    bool required = false;
    ReasoningLead lead = ReasoningLead::None;  // used when required
};

// `tools` in the OpenAI form ({"type":"function","function":{name, parameters}}).
// Argument schemas the JSON-schema converter cannot express are relaxed to any
// JSON object (or any value, for one parameter), so a request never fails for
// its schema. Empty gbnf: nothing to constrain (no tools, or format None).
ToolCallGrammar tool_call_grammar(const nlohmann::ordered_json& tools, const ToolCallGrammarOptions& options);

}  // namespace moeserve
