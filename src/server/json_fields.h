// Typed access to request fields: absent or null gives nullopt (the default
// applies); a value of the wrong type is a 400 naming the field.
#pragma once

#include <cstddef>
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
// A string member of a nested object (a message, a content block): "" when
// absent or null, a 400 naming `where`.`key` for another type.
std::string member_string(const json& object, const char* key, const std::string& where);
// A string or an array of strings (like `stop`).
std::optional<std::vector<std::string>> strings_field(const json& body, const char* name);

// nlohmann::json parses any depth, but copying, comparing or printing a value
// recurses once per level: a body of 100,000 '[' would overflow the stack of
// the thread that handles it. No API request comes near this depth.
constexpr size_t kMaxJsonDepth = 256;

// Whether JSON text nests arrays and objects deeper than `limit` (a linear
// scan that skips strings; for text about to be parsed).
bool json_text_nests_deeper_than(const std::string& text, size_t limit);

// The request body as JSON; a 400 for malformed JSON (numbers out of range
// included), nesting deeper than kMaxJsonDepth, or a non-object.
json parse_body(const std::string& body);

}  // namespace moeserve
