// Typed access to request fields: absent or null gives nullopt (the default
// applies); a value of the wrong type is a 400 naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/api_error.h"

namespace moeserve {

std::optional<int64_t> int_field(const json& body, const char* name);
std::optional<double> float_field(const json& body, const char* name);
std::optional<bool> bool_field(const json& body, const char* name);
std::optional<std::string> string_field(const json& body, const char* name);
// A string or an array of strings (like `stop`).
std::optional<std::vector<std::string>> strings_field(const json& body, const char* name);

// The request body as JSON; a 400 for malformed JSON or a non-object.
json parse_body(const std::string& body);

}  // namespace moeserve
