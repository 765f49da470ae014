// Dequantization: one row of a GGML tensor to float32 (spec §2).
//
// Results are bit-exact with ggml's dequantize_row_* (float32 arithmetic in
// the spec's order, no fused multiply-add), on every path: the SIMD versions
// give the same bits as the scalar ones.
#pragma once

#include <cstdint>

#include "quant/ggml_type.h"

namespace moeserve {

// Dequantizes n elements (n a multiple of the type's block size) from the
// packed blocks at src. Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS. Throws
// std::invalid_argument naming the type for anything else, or when n is not a
// multiple of the block size.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// The plain scalar code, for tests and benchmarks (same results).
void dequantize_row_scalar(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace moeserve
