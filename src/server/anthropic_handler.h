// POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API
// (anthropic_api.h) served by the chat completion pipeline.
#pragma once

#include <memory>

#include "server/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace moeserve {

void handle_anthropic_messages(const httplib::Request& req, httplib::Response& res, std::shared_ptr<ServedModel> model);
// {"input_tokens": N}: the prompt the request would be, counted.
void handle_anthropic_count_tokens(const httplib::Request& req, httplib::Response& res,
                                   std::shared_ptr<ServedModel> model);

}  // namespace moeserve
