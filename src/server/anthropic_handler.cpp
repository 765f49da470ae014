#include "server/anthropic_handler.h"

#include <httplib.h>

#include "server/anthropic_api.h"
#include "server/completion_handler.h"
#include "server/converted_answer.h"
#include "server/json_fields.h"

namespace moeserve {

void handle_anthropic_messages(const httplib::Request& req, httplib::Response& res,
                               std::shared_ptr<ServedModel> model) {
    const json chat = anthropic_to_chat_request(parse_body(req.body));
    handle_completion_body(ApiKind::chat, chat, req, res, std::move(model),
                           std::make_shared<ConvertedAnswer<AnthropicStream, anthropic_message>>());
}

void handle_anthropic_count_tokens(const httplib::Request& req, httplib::Response& res,
                                   std::shared_ptr<ServedModel> model) {
    const int64_t n = chat_prompt_tokens(anthropic_to_chat_request(parse_body(req.body)), *model);
    res.set_content(json{{"input_tokens", n}}.dump(), "application/json; charset=utf-8");
}

}  // namespace moeserve
