#include "server/responses_handler.h"

#include <httplib.h>

#include "server/completion_handler.h"
#include "server/converted_answer.h"
#include "server/json_fields.h"
#include "server/responses_api.h"

namespace moeserve {

void handle_responses(const httplib::Request& req, httplib::Response& res, std::shared_ptr<ServedModel> model) {
    const json chat = responses_to_chat_request(parse_body(req.body));
    handle_completion_body(ApiKind::chat, chat, req, res, std::move(model),
                           std::make_shared<ConvertedAnswer<ResponsesStream, responses_object>>());
}

void handle_input_tokens(bool responses_api, const httplib::Request& req, httplib::Response& res,
                         std::shared_ptr<ServedModel> model) {
    const json body = parse_body(req.body);
    const int64_t n = chat_prompt_tokens(responses_api ? responses_to_chat_request(body) : body, *model);
    res.set_content(json{{"object", "response.input_tokens"}, {"input_tokens", n}}.dump(),
                    "application/json; charset=utf-8");
}

}  // namespace moeserve
