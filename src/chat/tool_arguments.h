// Typing tool-call argument values written as text (the XML-like formats of
// Qwen3-Coder, Nemotron and GLM) from the tool's JSON schema (spec 4.0 item 8).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace moeserve {

// True when the schema of parameter `key` of tool `tool_name` resolves to a
// string ("string", ["string", "null"], an enum of strings, anyOf/oneOf of
// strings and null), or when the tool or parameter is not in `tools`: such
// values are taken verbatim.
bool tool_parameter_is_string(const nlohmann::ordered_json& tools, std::string_view tool_name, std::string_view key);

// A non-string value as JSON text: the trimmed text parsed as JSON (Python's
// True/False/None accepted), else the raw text as a JSON string.
std::string typed_value_json(std::string_view raw);

// The body of a JSON string literal for `text` (no quotes): the escapes
// json.dumps writes, UTF-8 kept, invalid bytes replaced by U+FFFD.
std::string json_string_body(std::string_view text);

}  // namespace moeserve
