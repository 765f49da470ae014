#include "quant/ggml_type.h"

#include <array>
#include <cctype>
#include <stdexcept>
#include <string>

namespace moeserve {
namespace {

constexpr std::array<GgmlTypeInfo, kGgmlTypeCount> make_table() {
    std::array<GgmlTypeInfo, kGgmlTypeCount> t{};  // empty name = invalid id
    auto set = [&](GgmlType ty, std::string_view name, int64_t blck, int64_t size, bool deq) {
        t[static_cast<uint32_t>(ty)] = GgmlTypeInfo{name, blck, size, deq};
    };
    set(GgmlType::F32, "f32", 1, 4, true);
    set(GgmlType::F16, "f16", 1, 2, true);
    set(GgmlType::Q4_0, "q4_0", 32, 18, true);
    set(GgmlType::Q4_1, "q4_1", 32, 20, true);
    set(GgmlType::Q5_0, "q5_0", 32, 22, true);
    set(GgmlType::Q5_1, "q5_1", 32, 24, true);
    set(GgmlType::Q8_0, "q8_0", 32, 34, true);
    set(GgmlType::Q8_1, "q8_1", 32, 36, true);
    set(GgmlType::Q2_K, "q2_K", 256, 84, true);
    set(GgmlType::Q3_K, "q3_K", 256, 110, true);
    set(GgmlType::Q4_K, "q4_K", 256, 144, true);
    set(GgmlType::Q5_K, "q5_K", 256, 176, true);
    set(GgmlType::Q6_K, "q6_K", 256, 210, true);
    set(GgmlType::Q8_K, "q8_K", 256, 292, true);
    set(GgmlType::IQ2_XXS, "iq2_xxs", 256, 66, false);
    set(GgmlType::IQ2_XS, "iq2_xs", 256, 74, false);
    set(GgmlType::IQ3_XXS, "iq3_xxs", 256, 98, false);
    set(GgmlType::IQ1_S, "iq1_s", 256, 50, false);
    set(GgmlType::IQ4_NL, "iq4_nl", 32, 18, true);
    set(GgmlType::IQ3_S, "iq3_s", 256, 110, false);
    set(GgmlType::IQ2_S, "iq2_s", 256, 82, false);
    set(GgmlType::IQ4_XS, "iq4_xs", 256, 136, true);
    set(GgmlType::I8, "i8", 1, 1, false);
    set(GgmlType::I16, "i16", 1, 2, false);
    set(GgmlType::I32, "i32", 1, 4, false);
    set(GgmlType::I64, "i64", 1, 8, false);
    set(GgmlType::F64, "f64", 1, 8, false);
    set(GgmlType::IQ1_M, "iq1_m", 256, 56, false);
    set(GgmlType::BF16, "bf16", 1, 2, true);
    set(GgmlType::TQ1_0, "tq1_0", 256, 54, false);
    set(GgmlType::TQ2_0, "tq2_0", 256, 66, false);
    set(GgmlType::MXFP4, "mxfp4", 32, 17, false);
    set(GgmlType::NVFP4, "nvfp4", 64, 36, false);
    set(GgmlType::Q1_0, "q1_0", 128, 18, false);
    set(GgmlType::Q2_0, "q2_0", 64, 18, false);
    return t;
}

constexpr auto kTable = make_table();

bool equal_ignore_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
    if (id >= kGgmlTypeCount || kTable[id].name.empty()) return nullptr;
    return &kTable[id];
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
    if (!info) throw std::invalid_argument("invalid ggml type id " + std::to_string(static_cast<uint32_t>(type)));
    return *info;
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
    for (uint32_t id = 0; id < kGgmlTypeCount; ++id)
        if (!kTable[id].name.empty() && equal_ignore_case(kTable[id].name, name)) return static_cast<GgmlType>(id);
    return std::nullopt;
}

std::string_view ggml_type_name(GgmlType type) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
    return info ? info->name : std::string_view("invalid");
}

size_t ggml_row_bytes(GgmlType type, int64_t n) {
    const GgmlTypeInfo& info = ggml_type_info(type);
    if (n % info.block_size != 0)
        throw std::invalid_argument("row of " + std::to_string(n) + " elements is not a multiple of the " +
                                    std::string(info.name) + " block size " + std::to_string(info.block_size));
    return static_cast<size_t>(n / info.block_size * info.type_size);
}

}  // namespace moeserve
