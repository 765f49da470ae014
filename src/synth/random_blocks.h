// Random tensor data in any supported GGML type: random quants with small,
// finite block scales, so a synthetic model computes like a real one (same
// bytes read, no NaN or inf) without the cost of quantizing floats.
#pragma once

#include <cstdint>
#include <span>

#include "quant/ggml_type.h"

namespace moeserve {

// Fills bytes (whole rows of `type`) with values of magnitude about `scale`
// (the std of the float weights for F32/F16/BF16; the block scale d otherwise).
void fill_random_blocks(GgmlType type, std::span<uint8_t> bytes, float scale, uint64_t seed);

// F32 values base + uniform(-spread, spread).
void fill_random_f32(std::span<uint8_t> bytes, float base, float spread, uint64_t seed);

}  // namespace moeserve
