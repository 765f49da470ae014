#include "synth/random_blocks.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/fp16.h"

namespace moeserve {
namespace {

class Xorshift {
public:
    explicit Xorshift(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
        if (s_ == 0) s_ = 1;
    }
    uint64_t next() {
        s_ ^= s_ << 13;
        s_ ^= s_ >> 7;
        s_ ^= s_ << 17;
        return s_;
    }
    float uniform() { return static_cast<float>(next() >> 40) / 8388608.0f - 1.0f; }  // [-1, 1)

private:
    uint64_t s_;
};

// Byte offsets of the fp16 scale fields inside one block of each type.
struct ScaleFields {
    int n;
    int offset[2];
};

ScaleFields scale_fields(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_0:
        case GgmlType::Q5_0:
        case GgmlType::Q8_0:
        case GgmlType::IQ4_NL:
        case GgmlType::IQ4_XS: return {1, {0, 0}};
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
        case GgmlType::Q8_1:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: return {2, {0, 2}};
        case GgmlType::Q2_K: return {2, {80, 82}};
        case GgmlType::Q3_K: return {1, {108, 0}};
        case GgmlType::Q6_K: return {1, {208, 0}};
        default: throw std::invalid_argument("no random generator for type " + std::string(ggml_type_name(t)));
    }
}

}  // namespace

void fill_random_f32(std::span<uint8_t> bytes, float base, float spread, uint64_t seed) {
    Xorshift rng(seed);
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) {
        float x = base + spread * rng.uniform();
        std::memcpy(&bytes[i], &x, 4);
    }
}

void fill_random_blocks(GgmlType type, std::span<uint8_t> bytes, float scale, uint64_t seed) {
    Xorshift rng(seed);
    switch (type) {
        case GgmlType::F32: fill_random_f32(bytes, 0.0f, scale * 1.7320508f, seed); return;
        case GgmlType::F16:
        case GgmlType::BF16:
            for (size_t i = 0; i + 2 <= bytes.size(); i += 2) {
                const float x = scale * 1.7320508f * rng.uniform();  // uniform with std = scale
                const uint16_t h = type == GgmlType::F16 ? fp32_to_fp16(x) : fp32_to_bf16(x);
                std::memcpy(&bytes[i], &h, 2);
            }
            return;
        default: break;
    }
    const ScaleFields fields = scale_fields(type);
    const size_t block = static_cast<size_t>(ggml_type_info(type).type_size);
    for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
        const uint64_t r = rng.next();
        std::memcpy(&bytes[i], &r, 8);
    }
    for (size_t b = 0; b + block <= bytes.size(); b += block)
        for (int f = 0; f < fields.n; ++f) {
            // d in [0.5, 1.5) x scale; a K-quant's dmin likewise, so values stay centred.
            const uint16_t h = fp32_to_fp16(scale * (1.0f + 0.5f * rng.uniform()));
            std::memcpy(&bytes[b + fields.offset[f]], &h, 2);
        }
}

}  // namespace moeserve
