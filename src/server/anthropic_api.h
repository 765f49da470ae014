// Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens;
// spec server-behaviour §5.1) on top of the chat pipeline, as llama-server
// does it: the request becomes a chat-completions body (system prompt,
// content blocks, tool_use / tool_result, tools, tool_choice, stop
// sequences, thinking), the chat answer becomes a Message object, and a
// stream of chat chunks becomes Anthropic's named SSE events
// (message_start, content_block_start/_delta/_stop, message_delta,
// message_stop). Clients such as Claude Code talk to it unchanged.
#pragma once

#include <string>
#include <vector>

#include "engine/generation.h"
#include "server/api_error.h"

namespace moeserve {

// The chat-completions body for an Anthropic Messages request (custom
// tools only: Anthropic's server and built-in tools are not offered). Throws
// ApiError (400) naming the field for a malformed one, and for content
// moeserve cannot take (images, documents: no vision model).
json anthropic_to_chat_request(const json& body);

// stop_reason for a finished answer: "tool_use", "stop_sequence",
// "end_turn" or "max_tokens".
const char* anthropic_stop_reason(const GenerationResult& result, bool has_tool_calls);

// The Message object for a finished chat completion (the chat endpoint's
// non-streaming body) and the result behind its only choice.
json anthropic_message(const json& chat_completion, const GenerationResult& result, int64_t input_tokens);

// One SSE event: "event: <type>\ndata: <json>\n\n".
std::string anthropic_sse(const json& event);

// Turns the chunk stream of one chat completion into Anthropic events.
// Content blocks are opened as the answer's parts appear (thinking, text,
// each tool call) and closed when the next part starts or the answer ends.
class AnthropicStream {
  public:
    AnthropicStream(std::string id, std::string model, int64_t input_tokens)
        : id_(std::move(id)), model_(std::move(model)), input_tokens_(input_tokens) {}

    // The events for some chat.completion.chunk objects (message_start first).
    std::string on_chunks(const std::vector<json>& chunks);
    // The closing events: the open block's stop, message_delta, message_stop.
    std::string finish(const GenerationResult& result, int64_t output_tokens);
    // An error after the stream started: the "error" event.
    std::string error(const ApiError& e) const;

  private:
    enum class Block { none, thinking, text, tool_use };
    void start(std::string& out);
    void open(std::string& out, Block kind, const json& content_block);
    void close(std::string& out);
    void delta(std::string& out, const json& delta);

    std::string id_, model_;
    int64_t input_tokens_ = 0;
    bool started_ = false;
    Block open_ = Block::none;
    int index_ = -1;      // of the open (or last) content block
    int open_tool_ = -1;  // the chat tool-call index of an open tool_use block
    bool any_tool_ = false;
};

}  // namespace moeserve
