// The x86 dot products lane by lane (quant/x86_dot_lanes.h), the arithmetic
// the GPU's int8 matrix-vector kernel runs: eight lanes over the weight
// blocks and the activations in the GPU's int8 form give vec_dot's float
// bit for bit, for every format the kernel reads, at several row lengths
// and scale magnitudes.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "quant/block_formats.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"
#include "quant/x86_dot_lanes.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

// An activation row in the GPU's int8 form (backend/cuda/cuda_q8_rows.h):
// codes, a float scale per block (256 values for q8_K, 32 for q8_0) and the
// int32 sum of every 16 codes.
struct Q8Form {
    std::vector<int8_t> q;
    std::vector<float> d;
    std::vector<int32_t> bsum;
};

Q8Form int8_form(GgmlType act, const std::vector<uint8_t>& row, int64_t n) {
    Q8Form f;
    f.q.resize(n);
    f.bsum.resize(n / 16);
    if (act == GgmlType::Q8_K) {
        const auto* b = reinterpret_cast<const BlockQ8_K*>(row.data());
        for (int64_t i = 0; i < n / kQK_K; ++i) {
            f.d.push_back(b[i].d);
            std::memcpy(&f.q[i * kQK_K], b[i].qs, kQK_K);
        }
    } else {
        const auto* b = reinterpret_cast<const BlockQ8_0*>(row.data());
        for (int64_t i = 0; i < n / 32; ++i) {
            f.d.push_back(fp16_to_fp32(b[i].d));
            std::memcpy(&f.q[i * 32], b[i].qs, 32);
        }
    }
    for (int64_t k = 0; k < n / 16; ++k)
        for (int j = 0; j < 16; ++j) f.bsum[k] += f.q[16 * k + j];
    return f;
}

// The dot of one weight row with one activation row as the GPU computes it:
// eight lanes, each over every 256-value unit in order, then the tree.
template <GgmlType T>
float lane_dot(const uint8_t* w, const Q8Form& a, int64_t n) {
    using L = x86_lanes::Lane<T>;
    float acc[x86_lanes::kLanes] = {}, aux[x86_lanes::kLanes] = {};
    for (int l = 0; l < x86_lanes::kLanes; ++l) {
        for (int64_t u = 0; u < n / x86_lanes::kUnit; ++u) {
            typename L::W wl;
            L::load(w + u * L::kBytes, l, wl);
            const float* d = a.d.data() + u * (L::kQ8K ? 1 : 8);
            L::step(wl, a.q.data() + u * x86_lanes::kUnit, a.bsum.data() + u * 16, d, l, acc[l], aux[l]);
        }
    }
    return x86_lanes::finish<L::kAux>(acc, aux);
}

template <GgmlType T>
void check_type(std::mt19937& rng) {
    for (int64_t n : {256, 512, 2048, 4096}) {
        for (uint16_t d_bits : {uint16_t{0x2A00}, uint16_t{0x3C00}, uint16_t{0x0400}, uint16_t{0x0003}}) {
            for (int rep = 0; rep < 20; ++rep) {
                std::vector<uint8_t> w(ggml_row_bytes(T, n));
                std::normal_distribution<float> dist(0.0f, 1.0f);
                if (rep % 2 == 0) {  // random bytes, the scales pinned
                    for (auto& b : w) b = static_cast<uint8_t>(rng());
                    const int64_t bs = ggml_type_info(T).type_size;
                    for (int64_t off = 0; off < static_cast<int64_t>(w.size()); off += bs) {
                        if (T == GgmlType::Q4_K || T == GgmlType::Q5_K) {
                            test::put_fp16(w.data() + off, d_bits);
                            test::put_fp16(w.data() + off + 2, d_bits);
                        } else if (T == GgmlType::Q6_K) {
                            test::put_fp16(w.data() + off + 208, d_bits);
                        } else {
                            test::put_fp16(w.data() + off, d_bits);
                        }
                        if (T == GgmlType::Q8_0)
                            for (int j = 2; j < 34; ++j)
                                if (w[off + j] == 0x80) w[off + j] = 0x81;  // never made by the quantizer
                    }
                } else {  // a quantized row of normal floats
                    std::vector<float> x(n);
                    for (auto& v : x) v = dist(rng);
                    quantize_weight_row(T, x.data(), w.data(), n);
                }
                const GgmlType at = vec_dot_type(T);
                std::vector<float> x(n);
                for (auto& v : x) v = dist(rng) * (rep % 3 == 0 ? 1e-3f : 1.0f);
                std::vector<uint8_t> a(ggml_row_bytes(at, n));
                quantize_row_activation(at, x.data(), a.data(), n);
                const float want = vec_dot(T, w.data(), a.data(), n);
                const float got = lane_dot<T>(w.data(), int8_form(at, a, n), n);
                uint32_t wb, gb;
                std::memcpy(&wb, &want, 4);
                std::memcpy(&gb, &got, 4);
                ASSERT_EQ(gb, wb) << ggml_type_name(T) << " n=" << n << " d=" << d_bits << " rep " << rep << ": " << got
                                  << " vs " << want;
            }
        }
    }
}

TEST(QuantX86Lanes, eight_lanes_give_vec_dot_bit_for_bit) {
    std::mt19937 rng(71);
    check_type<GgmlType::Q4_K>(rng);
    check_type<GgmlType::Q5_K>(rng);
    check_type<GgmlType::Q6_K>(rng);
    check_type<GgmlType::Q8_0>(rng);
    check_type<GgmlType::Q4_0>(rng);
    check_type<GgmlType::Q5_0>(rng);
}

// The arithmetic is the point: a lane order that differs (here the tree
// summed left to right) gives other bits for some rows, so the check above
// can tell the orders apart.
TEST(QuantX86Lanes, another_summation_order_differs_somewhere) {
    std::mt19937 rng(72);
    const int64_t n = 4096;
    int differ = 0;
    for (int rep = 0; rep < 50; ++rep) {
        std::vector<float> xw(n), xa(n);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        for (auto& v : xw) v = dist(rng);
        for (auto& v : xa) v = dist(rng);
        std::vector<uint8_t> w(ggml_row_bytes(GgmlType::Q4_K, n)), a(ggml_row_bytes(GgmlType::Q8_K, n));
        quantize_weight_row(GgmlType::Q4_K, xw.data(), w.data(), n);
        quantize_row_activation(GgmlType::Q8_K, xa.data(), a.data(), n);
        const Q8Form f = int8_form(GgmlType::Q8_K, a, n);
        using L = x86_lanes::Lane<GgmlType::Q4_K>;
        float acc[8] = {}, aux[8] = {};
        for (int l = 0; l < 8; ++l)
            for (int64_t u = 0; u < n / 256; ++u) {
                L::W wl;
                L::load(w.data() + u * L::kBytes, l, wl);
                L::step(wl, f.q.data() + u * 256, f.bsum.data() + u * 16, f.d.data() + u, l, acc[l], aux[l]);
            }
        float linear = 0.0f;
        for (int l = 0; l < 8; ++l) linear += acc[l];
        linear += ((aux[0] + aux[2]) + (aux[1] + aux[3]));
        differ += linear != vec_dot(GgmlType::Q4_K, w.data(), a.data(), n);
    }
    EXPECT_GT(differ, 0);
}

}  // namespace
}  // namespace moeserve
