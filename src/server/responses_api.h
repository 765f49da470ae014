// OpenAI's Responses API (POST /v1/responses; spec server-behaviour §5.1) on
// top of the chat pipeline, as llama-server does it: the request's
// instructions and input items (messages, function_call,
// function_call_output, reasoning) become a chat-completions body, the chat
// answer becomes a Response object whose output items are a reasoning item,
// a message with output_text, and function_call items, and a stream of chat
// chunks becomes the Responses events (response.created ... response.completed,
// each with its sequence_number). Nothing is stored: previous_response_id is
// refused, the client sends the whole conversation.
#pragma once

#include <string>
#include <vector>

#include "engine/generation.h"
#include "server/api_error.h"

namespace moeserve {

// The chat-completions body for a Responses request. Throws ApiError (400)
// naming the field for a malformed request and for what moeserve cannot
// serve (stored responses, images and files, built-in tools).
json responses_to_chat_request(const json& body);

// The Response object for a finished chat completion (the chat endpoint's
// non-streaming body) and the result behind its only choice.
json responses_object(const json& chat_completion, const GenerationResult& result, int64_t input_tokens);

// Turns the chunk stream of one chat completion into Responses events.
class ResponsesStream {
  public:
    // chat_id is the chat completion's (the response gets an id of its own).
    ResponsesStream(const std::string& chat_id, std::string model, int64_t input_tokens);

    // The events for some chat.completion.chunk objects (response.created first).
    std::string on_chunks(const std::vector<json>& chunks);
    // The closing events: the open item's .done events, then response.completed.
    std::string finish(const GenerationResult& result, int64_t output_tokens);
    // An error after the stream started: the "error" event.
    std::string error(const ApiError& e);

  private:
    enum class Item { none, reasoning, message, function_call };
    std::string event(json e);
    json response(const char* status) const;
    void start(std::string& out);
    void open(std::string& out, Item kind, json item);
    void close(std::string& out);

    std::string id_, model_;
    int64_t created_ = 0, input_tokens_ = 0;
    int64_t sequence_ = 0;
    bool started_ = false;
    Item open_ = Item::none;
    int open_tool_ = -1;           // the chat tool-call index of an open function_call item
    json output_ = json::array();  // the items so far, the open one last
};

}  // namespace moeserve
