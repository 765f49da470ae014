// POST /v1/responses (OpenAI's Responses API, responses_api.h) served by the
// chat completion pipeline, and the token-counting routes
// /v1/responses/input_tokens and /v1/chat/completions/input_tokens.
#pragma once

#include <memory>

#include "server/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace moeserve {

void handle_responses(const httplib::Request& req, httplib::Response& res, std::shared_ptr<ServedModel> model);
// {"object":"response.input_tokens","input_tokens":N}: the prompt a Responses
// (responses_api = true) or chat-completions request would be, counted.
void handle_input_tokens(bool responses_api, const httplib::Request& req, httplib::Response& res,
                         std::shared_ptr<ServedModel> model);

}  // namespace moeserve
