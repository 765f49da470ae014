// Serves one completion request (chat, text or native): parses it, submits
// it to the scheduler, waits for its events and answers with one JSON body
// or an SSE stream. A client that goes away cancels its request, which
// frees its slot at the scheduler's next step.
#pragma once

#include <memory>

#include "server/completion_request.h"
#include "server/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace moeserve {

// Throws ApiError for a request that cannot be served; errors that happen
// after an SSE stream started are sent as an SSE error event.
void handle_completion(ApiKind kind, const httplib::Request& req, httplib::Response& res,
                       std::shared_ptr<ServedModel> model);

}  // namespace moeserve
