// The embedding endpoints (spec server-behaviour §5.13), served with
// --embeddings: POST /v1/embeddings (OpenAI shape) and POST /embedding,
// /embeddings (llama-server's native shape). Each input becomes one
// embedding request to the scheduler; the answer lists them in input order.
#pragma once

#include <memory>

#include "server/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace moeserve {

enum class EmbeddingApi { openai, native };

// Throws ApiError: 501 without --embeddings; 400 for /v1/embeddings with
// pooling none, a missing or malformed input, an empty input, a bad
// encoding_format; the scheduler's refusals (context size, queue full).
void handle_embeddings(EmbeddingApi api, const httplib::Request& req, httplib::Response& res,
                       std::shared_ptr<ServedModel> model);

}  // namespace moeserve
