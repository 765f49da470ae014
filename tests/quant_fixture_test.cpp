// Cross-check against llama-quantize: the fixture models' -q8_0, -q4_k_m and
// -iq4_xs files were all quantized (no importance matrix) from the -f16 file
// of the same model. Quantizing each F16 tensor with quantize_weight_row must
// reproduce every quantized tensor byte for byte, and dequantizing it must
// land within the type's usual error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

// Normalized RMS error bounds ||deq - f16|| / ||f16|| per type, for weights
// quantized without an imatrix. Worst tensor over the three fixture families
// (printed by the test): Q8_0 0.54%, Q6_K 1.78%, Q5_K 3.61%, Q5_0 4.3%,
// Q4_K 7.17%, IQ4_NL 7.6%, IQ4_XS 7.67%. The fixture weights are random and
// near-Gaussian, so these are the formats' worst case (real trained weights,
// with their outliers, quantize to lower relative error). Bounds: worst + ~25%.
const std::map<GgmlType, double> kMaxError = {
    {GgmlType::Q8_0, 0.007}, {GgmlType::Q6_K, 0.022},   {GgmlType::Q5_0, 0.054},   {GgmlType::Q5_K, 0.045},
    {GgmlType::Q4_K, 0.09},  {GgmlType::IQ4_NL, 0.095}, {GgmlType::IQ4_XS, 0.096},
};

struct Tally {
    int exact = 0;
    int tensors = 0;
    double worst = 0;
};

void cross_check(const std::string& stem, const std::string& quant) {
    const GgufFile src = GgufFile::open(test::fixture("models/" + stem + "-f16.gguf").string());
    const GgufFile dst = GgufFile::open(test::fixture("models/" + stem + "-" + quant + ".gguf").string());
    std::map<GgmlType, Tally> tally;
    for (const GgufTensorInfo& t : dst.tensors()) {
        if (t.type == GgmlType::F32 || t.type == GgmlType::F16) continue;
        SCOPED_TRACE(stem + "-" + quant + " " + t.name + " " + std::string(ggml_type_name(t.type)));
        const GgufTensorInfo* s = src.find_tensor(t.name);
        ASSERT_NE(s, nullptr);
        ASSERT_EQ(s->type, GgmlType::F16);
        ASSERT_EQ(s->ne, t.ne);
        ASSERT_TRUE(kMaxError.count(t.type)) << "unexpected type in fixture";
        const int64_t ne0 = t.ne[0];
        const int64_t rows = t.n_elements() / ne0;
        const size_t in_row = s->row_bytes(), out_row = t.row_bytes();
        std::vector<float> x(static_cast<size_t>(ne0)), y(static_cast<size_t>(ne0));
        std::vector<uint8_t> q(out_row);
        const uint8_t* in = src.tensor_data(*s);
        const uint8_t* want = dst.tensor_data(t);
        size_t mismatched_rows = 0;
        double err2 = 0, ref2 = 0;
        for (int64_t r = 0; r < rows; ++r) {
            dequantize_row(GgmlType::F16, in + r * in_row, x.data(), ne0);
            quantize_weight_row(t.type, x.data(), q.data(), ne0);
            if (std::memcmp(q.data(), want + r * out_row, out_row) != 0) ++mismatched_rows;
            dequantize_row(t.type, want + r * out_row, y.data(), ne0);
            for (int64_t i = 0; i < ne0; ++i) {
                err2 += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
                ref2 += static_cast<double>(x[i]) * x[i];
            }
        }
        EXPECT_EQ(mismatched_rows, 0u) << "rows not reproduced byte for byte, of " << rows;
        const double nrmse = std::sqrt(err2 / ref2);
        EXPECT_LE(nrmse, kMaxError.at(t.type)) << "normalized RMS error";
        ++tally[t.type].tensors;
        tally[t.type].exact += mismatched_rows == 0;
        tally[t.type].worst = std::max(tally[t.type].worst, nrmse);
    }
    for (auto& [type, n] : tally)
        std::printf("  %s-%s %-7s %d/%d tensors byte-exact, worst normalized RMS error %.4f\n", stem.c_str(),
                    quant.c_str(), std::string(ggml_type_name(type)).c_str(), n.exact, n.tensors, n.worst);
}

class QuantFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantFixture, llama_quantize_output_is_reproduced_byte_for_byte) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* quant : {"q8_0", "q4_k_m", "iq4_xs"}) cross_check(GetParam(), quant);
}

INSTANTIATE_TEST_SUITE_P(QuantModels, QuantFixture,
                         ::testing::Values("qwen3moe-tiny-s1", "nemotron-h-moe-tiny-s1", "glm47flash-tiny-s1"),
                         [](const auto& info) {
                             std::string name = info.param;
                             for (char& c : name)
                                 if (c == '-') c = '_';
                             return name;
                         });

}  // namespace
}  // namespace moeserve
