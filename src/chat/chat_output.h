// Reading a model's generated text back into an OpenAI assistant message:
// reasoning (<think>…</think>) split into reasoning_content, and tool calls in
// the three syntaxes of the seed models (spec: ../shared/spec/chat-templates.md,
// sections 4.0-4.5).
//
//   ChatSyntax syntax = prompt.syntax;               // from ChatTemplate::apply
//   ChatMessage m = parse_chat_output(text, syntax); // whole output at once
//
//   ChatStreamParser s(syntax);                      // or incrementally:
//   for (chunk : generated) for (auto& d : s.push(chunk)) send(d.to_json());
//   for (auto& d : s.finish()) send(d.to_json());
//   s.message();                                     // == parse_chat_output(all text)
//
// The streamed deltas, concatenated, equal the non-streamed parse exactly:
// text that may still turn out to be a marker (a partial "</think>" or
// "<tool_call>", whitespace that trimming may drop) is held back until it is
// known. Output that does not follow the expected syntax is never an error:
// whatever cannot be read as a tool call is returned as content. Output cut
// off inside the reasoning is all reasoning; a tool call cut off mid-way keeps
// the name and the arguments written so far.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

enum class ToolCallFormat {
    None,            // no tool-call parsing: everything after the reasoning is content
    HermesJson,      // Qwen3: <tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>
    XmlFunction,     // Qwen3-Coder, Nemotron-3-Nano:
                     // <tool_call><function=N><parameter=K>V</parameter></function></tool_call>
    GlmArgKeyValue,  // GLM-4.7: <tool_call>N<arg_key>K</arg_key><arg_value>V</arg_value></tool_call>
};
std::string_view tool_call_format_name(ToolCallFormat f);

// llama-server's --reasoning-format. deepseek and auto behave the same for
// these templates: reasoning goes to reasoning_content. none keeps it in the
// content, tags included.
enum class ReasoningFormat { None, Deepseek, Auto };
// "none", "deepseek", "deepseek-legacy" (read as deepseek), "auto"; nullopt otherwise.
std::optional<ReasoningFormat> parse_reasoning_format(std::string_view name);

// How to read one request's output. ChatTemplate::apply fills it in.
struct ChatSyntax {
    ToolCallFormat tool_format = ToolCallFormat::None;
    ReasoningFormat reasoning_format = ReasoningFormat::Auto;
    // The generation prompt opened a reasoning block that the model continues
    // ("<think>\n" for Nemotron, "<think>" for GLM): the output starts inside it.
    std::string forced_reasoning_prefix;
    // The model may open a <think> block itself at the start (Qwen3).
    bool model_may_think = false;
    // Parse tool calls at all (false without tools, or for tool_choice none).
    bool parse_tool_calls = false;
    // The request's tools (OpenAI form), for typing XML-style argument values.
    nlohmann::ordered_json tools = nlohmann::ordered_json::array();
};

struct ToolCall {
    std::string id;
    std::string name;
    std::string arguments;  // a JSON text; may be cut short when the output was truncated
};

struct ChatMessage {
    std::string reasoning_content;
    std::string content;
    std::vector<ToolCall> tool_calls;
    // The output ended inside a tool call (its arguments are incomplete).
    bool tool_call_incomplete = false;

    // An OpenAI assistant message: role, content (null when empty next to tool
    // calls), reasoning_content when non-empty, tool_calls when any.
    nlohmann::ordered_json to_json() const;
};

// One streaming delta (OpenAI's choices[0].delta); exactly one kind is set.
struct ChatDelta {
    enum class Kind { Reasoning, Content, ToolCallStart, ToolCallArguments };
    Kind kind = Kind::Content;
    std::string text;       // reasoning/content fragment, or an arguments fragment
    size_t tool_index = 0;  // tool-call deltas
    std::string tool_id;    // ToolCallStart
    std::string tool_name;  // ToolCallStart

    nlohmann::ordered_json to_json() const;
};

using ToolCallIdGenerator = std::function<std::string()>;
// A random 32-character alphanumeric id.
std::string random_tool_call_id();

// Parses a complete output. Never throws on model output.
ChatMessage parse_chat_output(std::string_view text, const ChatSyntax& syntax,
                              const ToolCallIdGenerator& make_id = random_tool_call_id);

class ChatStreamParser {
  public:
    explicit ChatStreamParser(ChatSyntax syntax, ToolCallIdGenerator make_id = random_tool_call_id);

    // Appends generated text (any split, even inside a UTF-8 sequence) and
    // returns the deltas that are now certain.
    std::vector<ChatDelta> push(std::string_view text);
    // End of generation: releases what was held back.
    std::vector<ChatDelta> finish();
    // The message as streamed so far; after finish(), the final message.
    const ChatMessage& message() const { return sent_; }

  private:
    std::vector<ChatDelta> update(bool at_end);

    ChatSyntax syntax_;
    ToolCallIdGenerator make_id_;
    std::string text_;
    ChatMessage sent_;
    bool finished_ = false;
};

// Internals shared with the tests: the parse of `text` as far as it is
// certain (at_end = false holds back what more text could change). Tool call
// ids are left empty.
ChatMessage parse_chat_output_prefix(std::string_view text, const ChatSyntax& syntax, bool at_end);

}  // namespace moeserve
