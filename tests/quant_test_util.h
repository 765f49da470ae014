// Helpers shared by the tests/quant_*_test.cpp files.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "quant/fp16.h"
#include "quant/ggml_type.h"

namespace moeserve::test {

inline std::vector<float> random_normal(size_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

inline std::vector<uint8_t> quantized(GgmlType type, const std::vector<float>& x,
                                      void (*quantize)(GgmlType, const float*, void*, int64_t)) {
    std::vector<uint8_t> out(ggml_row_bytes(type, static_cast<int64_t>(x.size())));
    quantize(type, x.data(), out.data(), static_cast<int64_t>(x.size()));
    return out;
}

// ||a - b|| / ||a||
inline double normalized_rms_error(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(a[i]) * a[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline std::vector<uint8_t> hex_bytes(const char* hex) {
    std::vector<uint8_t> out;
    for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
        auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
        out.push_back(static_cast<uint8_t>(nib(hex[i]) << 4 | nib(hex[i + 1])));
    }
    return out;
}

inline void put_fp16(uint8_t* p, uint16_t h) {
    std::memcpy(p, &h, 2);
}

}  // namespace moeserve::test
