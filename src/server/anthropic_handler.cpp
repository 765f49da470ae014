#include "server/anthropic_handler.h"

#include <httplib.h>

#include <optional>

#include "server/anthropic_api.h"
#include "server/completion_handler.h"
#include "server/completion_response.h"
#include "server/json_fields.h"

namespace moeserve {
namespace {

// The chat answer in the Messages API's shapes.
class AnthropicFormat final : public AnswerFormat {
  public:
    void prepare(const CompletionCall& call) override {
        input_tokens_ = call.requests.empty() ? 0 : static_cast<int64_t>(call.requests[0].prompt.size());
    }
    json body(const CompletionResponse& r) override {
        return anthropic_message(r.final_body(), r.result(0), input_tokens_);
    }
    void append(std::string& out, const std::vector<json>& chunks, const CompletionResponse&) override {
        if (!stream_ && !chunks.empty())
            stream_.emplace(chunks[0].value("id", std::string()), chunks[0].value("model", std::string()),
                            input_tokens_);
        if (stream_) out += stream_->on_chunks(chunks);
    }
    std::string end(const CompletionResponse& r) override {
        if (!stream_) stream_.emplace("", "", input_tokens_);
        return stream_->finish(r.result(0), r.completion_tokens());
    }
    std::string error(const ApiError& e) override {
        return anthropic_sse({{"type", "error"}, {"error", {{"type", e.type}, {"message", e.what()}}}});
    }

  private:
    int64_t input_tokens_ = 0;
    std::optional<AnthropicStream> stream_;
};

}  // namespace

void handle_anthropic_messages(const httplib::Request& req, httplib::Response& res,
                               std::shared_ptr<ServedModel> model) {
    const json chat = anthropic_to_chat_request(parse_body(req.body));
    handle_completion_body(ApiKind::chat, chat, req, res, std::move(model), std::make_shared<AnthropicFormat>());
}

void handle_anthropic_count_tokens(const httplib::Request& req, httplib::Response& res,
                                   std::shared_ptr<ServedModel> model) {
    const int64_t n = chat_prompt_tokens(anthropic_to_chat_request(parse_body(req.body)), *model);
    res.set_content(json{{"input_tokens", n}}.dump(), "application/json; charset=utf-8");
}

}  // namespace moeserve
