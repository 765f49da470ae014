// Quantization: one row of float32 values to a GGML type, bit-exact with
// llama.cpp (spec §3, §4).
//
// Three entry points, because llama.cpp itself uses three rules:
//  - quantize_row: ggml's reference rule (its from_float_ref). This is what
//    llama.cpp writes into a quantized KV cache (except Q8_0 on x86, below),
//    and for the K-quants and IQ4_XS it is also what llama-quantize writes.
//  - quantize_weight_row: what llama-quantize writes for a weight tensor
//    without an importance matrix. It differs from quantize_row only for
//    IQ4_NL, whose weight quantizer searches 15 extra scales (spec §4).
//  - quantize_row_activation: what llama.cpp's x86 CPU backend uses for the
//    activation side of a dot product (and its Q8_0 KV cache): Q8_0 and Q8_1
//    with id = 127/amax and round-half-to-even (spec §3.2); every other type
//    as quantize_row.
#pragma once

#include <cstdint>

#include "quant/ggml_type.h"

namespace moeserve {

// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K,
// IQ4_NL (the §3.7 KV rule), Q4_K, Q5_K, Q6_K, IQ4_XS. n must be a multiple
// of the block size. Throws std::invalid_argument naming the type otherwise.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

// As llama-quantize writes weights with no importance matrix. Same types.
void quantize_weight_row(GgmlType type, const float* src, void* dst, int64_t n);

// As llama.cpp's x86 CPU backend quantizes activations. Same types.
void quantize_row_activation(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace moeserve
