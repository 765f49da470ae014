// The table of GGML tensor types: id, name, block size, bytes per block.
// Facts from ../shared/spec/quant-formats.md §1. Every other part of moeserve
// asks this table, never hard-codes a block size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace moeserve {

// Values are the ggml_type ids stored in GGUF tensor infos.
enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
};

// One past the largest id ggml knows.
inline constexpr uint32_t kGgmlTypeCount = 43;

struct GgmlTypeInfo {
    std::string_view name;  // what ggml prints and what --cache-type-k accepts
    int64_t block_size;     // elements per block
    int64_t type_size;      // bytes per block
    bool can_dequantize;    // moeserve has a dequantizer for it
};

// nullptr for ids that are not a valid ggml type (removed or out of range).
const GgmlTypeInfo* ggml_type_info(uint32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType type);

// "q4_K", "Q4_K" and "q4_k" all name Q4_K.
std::optional<GgmlType> ggml_type_from_name(std::string_view name);
std::string_view ggml_type_name(GgmlType type);

// Bytes of one row of n elements; n must be a multiple of the block size.
size_t ggml_row_bytes(GgmlType type, int64_t n);

}  // namespace moeserve
