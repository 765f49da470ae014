// OpenAI-style errors: {"error":{"code":400,"message":"...","type":"invalid_request_error"}}
// (spec server-behaviour §4.5). Handlers throw ApiError; the router turns it
// into the response.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace moeserve {

using json = nlohmann::ordered_json;

class ApiError : public std::runtime_error {
  public:
    ApiError(int status, std::string type, const std::string& message, json extra = json::object())
        : std::runtime_error(message), status(status), type(std::move(type)), extra(std::move(extra)) {}
    int status;
    std::string type;
    json extra;  // more members of the error object (n_prompt_tokens, n_ctx)
};

inline ApiError invalid_request(const std::string& message) {
    return ApiError(400, "invalid_request_error", message);
}

inline json error_json(int status, const std::string& type, const std::string& message,
                       const json& extra = json::object()) {
    json e = {{"code", status}, {"message", message}, {"type", type}};
    for (const auto& [k, v] : extra.items()) e[k] = v;
    return json{{"error", e}};
}

}  // namespace moeserve
