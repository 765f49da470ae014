// GGUF metadata values: the 13 GGUF value types, arrays of them (nested too).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace moeserve {

enum class GgufValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};
inline constexpr uint32_t kGgufValueTypeCount = 13;

std::string_view gguf_value_type_name(GgufValueType type);

struct GgufValue;

// Homogeneous array: every element has elem_type.
struct GgufArray {
    GgufValueType elem_type = GgufValueType::UINT8;
    std::vector<GgufValue> items;
};

struct GgufValue {
    using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string,
                                 GgufArray, uint64_t, int64_t, double>;
    Storage v;

    GgufValue() : v(uint8_t{0}) {}
    template <typename T>
    GgufValue(T x) : v(std::move(x)) {}  // NOLINT: implicit on purpose, values read like literals
    GgufValue(const char* s) : v(std::string(s)) {}

    // The variant index equals the GGUF type id, by construction of Storage.
    GgufValueType type() const { return static_cast<GgufValueType>(v.index()); }
    bool is_integer() const;
    bool is_float() const { return type() == GgufValueType::FLOAT32 || type() == GgufValueType::FLOAT64; }

    // Conversions that never lose information; each throws std::runtime_error
    // naming the actual type when it cannot convert.
    int64_t as_int() const;    // any integer type (uint64 above INT64_MAX refused)
    uint64_t as_uint() const;  // any non-negative integer
    double as_double() const;  // floats and integers
    bool as_bool() const;      // BOOL only
    const std::string& as_string() const;
    const GgufArray& as_array() const;

    // Short human-readable form; arrays longer than max_items are shortened.
    std::string to_display(size_t max_items = 8) const;
};

// Array helpers.
GgufValue gguf_string_array(const std::vector<std::string>& items);
template <typename T>
GgufValue gguf_array(GgufValueType elem_type, const std::vector<T>& items) {
    GgufArray a;
    a.elem_type = elem_type;
    a.items.reserve(items.size());
    for (const T& x : items) a.items.emplace_back(x);
    return GgufValue(std::move(a));
}

}  // namespace moeserve
