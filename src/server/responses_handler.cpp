#include "server/responses_handler.h"

#include <httplib.h>

#include <optional>

#include "server/completion_handler.h"
#include "server/completion_response.h"
#include "server/json_fields.h"
#include "server/responses_api.h"

namespace moeserve {
namespace {

// The chat answer in the Responses API's shapes.
class ResponsesFormat final : public AnswerFormat {
  public:
    void prepare(const CompletionCall& call) override {
        input_tokens_ = call.requests.empty() ? 0 : static_cast<int64_t>(call.requests[0].prompt.size());
    }
    json body(const CompletionResponse& r) override {
        return responses_object(r.final_body(), r.result(0), input_tokens_);
    }
    void append(std::string& out, const std::vector<json>& chunks, const CompletionResponse&) override {
        if (!stream_ && !chunks.empty()) stream_.emplace(chunks[0].value("model", std::string()), input_tokens_);
        if (stream_) out += stream_->on_chunks(chunks);
    }
    std::string end(const CompletionResponse& r) override {
        if (!stream_) stream_.emplace("", input_tokens_);
        return stream_->finish(r.result(0), r.completion_tokens());
    }
    std::string error(const ApiError& e) override {
        if (!stream_) stream_.emplace("", input_tokens_);
        return stream_->error(e);
    }

  private:
    int64_t input_tokens_ = 0;
    std::optional<ResponsesStream> stream_;
};

}  // namespace

void handle_responses(const httplib::Request& req, httplib::Response& res, std::shared_ptr<ServedModel> model) {
    const json chat = responses_to_chat_request(parse_body(req.body));
    handle_completion_body(ApiKind::chat, chat, req, res, std::move(model), std::make_shared<ResponsesFormat>());
}

void handle_input_tokens(bool responses_api, const httplib::Request& req, httplib::Response& res,
                         std::shared_ptr<ServedModel> model) {
    const json body = parse_body(req.body);
    const int64_t n = chat_prompt_tokens(responses_api ? responses_to_chat_request(body) : body, *model);
    res.set_content(json{{"object", "response.input_tokens"}, {"input_tokens", n}}.dump(),
                    "application/json; charset=utf-8");
}

}  // namespace moeserve
