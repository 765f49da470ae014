// The answer of an API served by converting requests to chat completions
// (the Anthropic Messages API, the Responses API): the chat answer turned
// into that API's object by BodyOf, and the chat stream into its events by
// Stream. Stream is constructed from (chat id, model, prompt tokens) and has
// on_chunks(chunks), finish(result, output tokens) and error(ApiError).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "server/completion_handler.h"
#include "server/completion_response.h"

namespace moeserve {

template <class Stream, json (*BodyOf)(const json& chat_completion, const GenerationResult&, int64_t input_tokens)>
class ConvertedAnswer final : public AnswerFormat {
  public:
    void prepare(const CompletionCall& call) override {
        input_tokens_ = call.requests.empty() ? 0 : static_cast<int64_t>(call.requests[0].prompt.size());
    }
    json body(const CompletionResponse& r) override { return BodyOf(r.final_body(), r.result(0), input_tokens_); }
    void append(std::string& out, const std::vector<json>& chunks, const CompletionResponse&) override {
        if (!stream_ && !chunks.empty())
            stream_.emplace(chunks[0].value("id", std::string()), chunks[0].value("model", std::string()),
                            input_tokens_);
        if (stream_) out += stream_->on_chunks(chunks);
    }
    std::string end(const CompletionResponse& r) override {
        return stream().finish(r.result(0), r.completion_tokens());
    }
    std::string error(const ApiError& e) override { return stream().error(e); }

  private:
    Stream& stream() {
        if (!stream_) stream_.emplace("", "", input_tokens_);
        return *stream_;
    }
    int64_t input_tokens_ = 0;
    std::optional<Stream> stream_;
};

}  // namespace moeserve
