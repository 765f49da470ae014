// GenerationEvents -> the completion endpoints' JSON (spec server-behaviour
// §5.4-§5.8): the final object of a non-streaming request, and the chunks of
// a streaming one, for the chat, text-completion and native shapes. One
// CompletionResponse follows one HTTP request from its first event to its
// last; it is not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/generation.h"
#include "server/completion_request.h"
#include "server/served_model.h"

namespace moeserve {

class CompletionResponse {
  public:
    CompletionResponse(const CompletionCall& call, const ServedModel& model);

    // Records an event; returns the stream chunks it produces (none for a
    // started event or text held back). Error events are not handled here.
    std::vector<json> on_event(const GenerationEvent& e);
    // After every choice is done: the chunks that close the stream (the
    // chat usage chunk); the [DONE] line is the caller's.
    std::vector<json> closing_chunks() const;
    // The non-streaming response body.
    json final_body() const;

    const std::string& id() const { return id_; }  // "chatcmpl-…" / "cmpl-…"
    bool all_done() const { return n_done_ == choices_.size(); }
    size_t n_choices() const { return choices_.size(); }
    // How choice i ended (valid once it is done).
    const GenerationResult& result(size_t i) const { return choices_.at(i).result; }
    int64_t prompt_tokens() const;
    int64_t completion_tokens() const;

  private:
    struct Choice {
        std::string text;
        std::vector<int32_t> tokens;
        std::vector<TokenProbability> probs;
        GenerationResult result;
        int slot = -1;
        bool done = false;
        bool role_sent = false;
        // chat with something to parse: the answer read into reasoning,
        // content and tool calls as it streams (null: the text is content).
        std::unique_ptr<ChatStreamParser> parser;
    };

    json chunk_base(const char* object) const;
    json usage() const;
    json timings() const;
    json probs_json(const std::vector<TokenProbability>& probs) const;
    json native_object(const Choice& c, bool final_stream) const;
    json progress_chunk(const GenerationEvent& e) const;
    json role_chunk(int index) const;
    // Stream chunks for a choice's new deltas; probs ride on the first.
    void append_delta_chunks(Choice& c, int index, const std::vector<ChatDelta>& deltas,
                             const std::vector<TokenProbability>& probs, std::vector<json>& out);
    ChatMessage message_of(const Choice& c) const;
    const char* chat_finish_reason(const Choice& c, const ChatMessage& m) const;

    CompletionCall call_;  // requests' prompts cleared
    const ServedModel& model_;
    std::string id_;
    int64_t created_;
    std::vector<Choice> choices_;
    size_t n_done_ = 0;
};

// prefix + 32 random letters and digits (response and item ids).
std::string random_id(const char* prefix);

// llama.cpp's timings object.
json timings_json(const Timings& t);
const char* finish_reason(StopType stop);

}  // namespace moeserve
