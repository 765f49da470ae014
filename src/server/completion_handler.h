// Serves one completion request (chat, text or native): parses it, submits
// it to the scheduler, waits for its events and answers with one JSON body
// or an SSE stream. A client that goes away cancels its request, which
// frees its slot at the scheduler's next step.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "server/completion_request.h"
#include "server/connection_probe.h"
#include "server/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace moeserve {

class CompletionResponse;

// How a completion's answer is written: the OpenAI and native shapes by
// default, or another API's built from them (anthropic_handler.cpp).
class AnswerFormat {
  public:
    virtual ~AnswerFormat() = default;
    // Sees the parsed request before it is submitted (may refuse it).
    virtual void prepare(const CompletionCall& call) {}
    // The non-streaming body.
    virtual json body(const CompletionResponse& r) = 0;
    // Appends the SSE text for some stream chunks of the response.
    virtual void append(std::string& out, const std::vector<json>& chunks, const CompletionResponse& r) = 0;
    // The SSE text that ends a finished stream.
    virtual std::string end(const CompletionResponse& r) = 0;
    // The SSE text for an error after the stream started.
    virtual std::string error(const ApiError& e) = 0;
};

// Throws ApiError for a request that cannot be served; errors that happen
// after an SSE stream started are sent as an SSE error event.
void handle_completion(ApiKind kind, const httplib::Request& req, httplib::Response& res,
                       std::shared_ptr<ServedModel> model);
// The same for a body already parsed (and perhaps rewritten: /infill, or
// converted from another API), answered in `format` (null: the kind's own).
void handle_completion_body(ApiKind kind, const json& body, const httplib::Request& req, httplib::Response& res,
                            std::shared_ptr<ServedModel> model, std::shared_ptr<AnswerFormat> format = nullptr);

// The prompt tokens a chat-completions body would be (the token-counting routes).
int64_t chat_prompt_tokens(json chat_body, const ServedModel& model);

// Shared by the handlers that wait on the scheduler:

// Submits requests; a refusal becomes the ApiError to answer with (503s
// get a Retry-After header).
void submit_requests(ServedModel& model, std::vector<GenerationRequest> requests,
                     std::shared_ptr<GenerationStream> stream, httplib::Response& res);

// How often a waiting handler checks its client.
constexpr std::chrono::milliseconds kPoll{200};

// Waits for the next event, checking the client while waiting and at least
// every kPoll (a generating slot sends events faster than that, so a check
// only in quiet moments would never run). nullopt: the client went away (the
// request is cancelled).
std::optional<GenerationEvent> next_event(GenerationStream& stream, const ConnectionProbe& probe,
                                          std::chrono::steady_clock::time_point& next_check);
// The same with another test for "nobody waits any more" (a resumable
// stream's: only its cancellation).
std::optional<GenerationEvent> next_event(GenerationStream& stream, const std::function<bool()>& gone,
                                          std::chrono::steady_clock::time_point& next_check);

// The ApiError an error event answers with.
ApiError error_from_event(const GenerationEvent& e);

}  // namespace moeserve
