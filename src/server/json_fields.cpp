#include "server/json_fields.h"

#include <fmt/format.h>

#include <cmath>

namespace moeserve {
namespace {

const json* find(const json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return nullptr;
    return &*it;
}

const char* type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::string:
            return "a string";
        case json::value_t::boolean:
            return "a boolean";
        case json::value_t::array:
            return "an array";
        case json::value_t::object:
            return "an object";
        case json::value_t::number_float:
            return "a number with a fraction";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
            return "an integer";
        default:
            return "null";
    }
}

[[noreturn]] void wrong(const char* name, const char* expected, const json& v) {
    throw invalid_request(fmt::format("Field '{}': expected {}, got {}", name, expected, type_name(v)));
}

}  // namespace

std::optional<int64_t> int_field(const json& body, const char* name) {
    const json* v = find(body, name);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
        double d = v->get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return static_cast<int64_t>(d);
    }
    wrong(name, "an integer", *v);
}

std::optional<double> float_field(const json& body, const char* name) {
    const json* v = find(body, name);
    if (!v) return std::nullopt;
    if (v->is_number()) return v->get<double>();
    wrong(name, "a number", *v);
}

std::optional<bool> bool_field(const json& body, const char* name) {
    const json* v = find(body, name);
    if (!v) return std::nullopt;
    if (v->is_boolean()) return v->get<bool>();
    wrong(name, "a boolean", *v);
}

std::optional<std::string> string_field(const json& body, const char* name) {
    const json* v = find(body, name);
    if (!v) return std::nullopt;
    if (v->is_string()) return v->get<std::string>();
    wrong(name, "a string", *v);
}

std::string member_string(const json& object, const char* key, const std::string& where) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return "";
    if (!it->is_string()) throw invalid_request(where + "." + key + " must be a string");
    return it->get<std::string>();
}

std::optional<std::vector<std::string>> strings_field(const json& body, const char* name) {
    const json* v = find(body, name);
    if (!v) return std::nullopt;
    if (v->is_string()) return std::vector<std::string>{v->get<std::string>()};
    if (v->is_array()) {
        std::vector<std::string> out;
        for (const auto& e : *v) {
            if (!e.is_string()) wrong(name, "a string or an array of strings", e);
            out.push_back(e.get<std::string>());
        }
        return out;
    }
    wrong(name, "a string or an array of strings", *v);
}

bool json_text_nests_deeper_than(const std::string& text, size_t limit) {
    size_t depth = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return false;
}

json parse_body(const std::string& body) {
    if (json_text_nests_deeper_than(body, kMaxJsonDepth))
        throw invalid_request(
            fmt::format("the request body nests arrays and objects more than {} levels deep", kMaxJsonDepth));
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
        throw invalid_request(fmt::format("the request body is not valid JSON: {}", e.what()));
    }
    if (!j.is_object()) throw invalid_request("the request body must be a JSON object");
    return j;
}

}  // namespace moeserve
