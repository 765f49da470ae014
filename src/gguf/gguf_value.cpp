#include "gguf/gguf_value.h"

#include <fmt/format.h>

#include <limits>
#include <stdexcept>

namespace moeserve {

std::string_view gguf_value_type_name(GgufValueType type) {
    switch (type) {
        case GgufValueType::UINT8: return "uint8";
        case GgufValueType::INT8: return "int8";
        case GgufValueType::UINT16: return "uint16";
        case GgufValueType::INT16: return "int16";
        case GgufValueType::UINT32: return "uint32";
        case GgufValueType::INT32: return "int32";
        case GgufValueType::FLOAT32: return "float32";
        case GgufValueType::BOOL: return "bool";
        case GgufValueType::STRING: return "string";
        case GgufValueType::ARRAY: return "array";
        case GgufValueType::UINT64: return "uint64";
        case GgufValueType::INT64: return "int64";
        case GgufValueType::FLOAT64: return "float64";
    }
    return "unknown";
}

bool GgufValue::is_integer() const {
    switch (type()) {
        case GgufValueType::UINT8:
        case GgufValueType::INT8:
        case GgufValueType::UINT16:
        case GgufValueType::INT16:
        case GgufValueType::UINT32:
        case GgufValueType::INT32:
        case GgufValueType::UINT64:
        case GgufValueType::INT64: return true;
        default: return false;
    }
}

namespace {

[[noreturn]] void wrong_type(const GgufValue& v, const char* wanted) {
    throw std::runtime_error(fmt::format("value has type {}, expected {}", gguf_value_type_name(v.type()), wanted));
}

}  // namespace

int64_t GgufValue::as_int() const {
    if (!is_integer()) wrong_type(*this, "an integer");
    if (const auto* u = std::get_if<uint64_t>(&v)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw std::runtime_error(fmt::format("value {} does not fit in int64", *u));
        return static_cast<int64_t>(*u);
    }
    return std::visit(
        [](const auto& x) -> int64_t {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return static_cast<int64_t>(x);
            return 0;  // unreachable: is_integer() checked above
        },
        v);
}

uint64_t GgufValue::as_uint() const {
    if (const auto* u = std::get_if<uint64_t>(&v)) return *u;
    int64_t x = as_int();
    if (x < 0) throw std::runtime_error(fmt::format("value {} is negative, expected a non-negative integer", x));
    return static_cast<uint64_t>(x);
}

double GgufValue::as_double() const {
    if (const auto* f = std::get_if<float>(&v)) return *f;
    if (const auto* d = std::get_if<double>(&v)) return *d;
    if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
    if (is_integer()) return static_cast<double>(as_int());
    wrong_type(*this, "a number");
}

bool GgufValue::as_bool() const {
    if (const auto* b = std::get_if<bool>(&v)) return *b;
    wrong_type(*this, "bool");
}

const std::string& GgufValue::as_string() const {
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    wrong_type(*this, "string");
}

const GgufArray& GgufValue::as_array() const {
    if (const auto* a = std::get_if<GgufArray>(&v)) return *a;
    wrong_type(*this, "array");
}

namespace {

std::string quote(const std::string& s, size_t max_len) {
    std::string out = "\"";
    size_t n = 0;
    for (unsigned char c : s) {
        if (n++ == max_len) {
            out += "...";
            break;
        }
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) out += fmt::format("\\x{:02x}", c);
                else out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

}  // namespace

std::string GgufValue::to_display(size_t max_items) const {
    switch (type()) {
        case GgufValueType::STRING: return quote(as_string(), 120);
        case GgufValueType::BOOL: return as_bool() ? "true" : "false";
        case GgufValueType::FLOAT32: return fmt::format("{}", std::get<float>(v));
        case GgufValueType::FLOAT64: return fmt::format("{}", std::get<double>(v));
        case GgufValueType::UINT64: return fmt::format("{}", std::get<uint64_t>(v));
        case GgufValueType::ARRAY: {
            const GgufArray& a = as_array();
            std::string out = "[";
            for (size_t i = 0; i < a.items.size() && i < max_items; ++i) {
                if (i) out += ", ";
                out += a.items[i].to_display(max_items);
            }
            if (a.items.size() > max_items) out += fmt::format(", ... ({} {} values)", a.items.size(), gguf_value_type_name(a.elem_type));
            return out + "]";
        }
        default: return fmt::format("{}", as_int());
    }
}

GgufValue gguf_string_array(const std::vector<std::string>& items) {
    return gguf_array(GgufValueType::STRING, items);
}

}  // namespace moeserve
