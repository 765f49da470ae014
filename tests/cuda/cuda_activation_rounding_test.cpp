// The GPU's activation rounding (cuda_activation_rounding.cu) against the
// CPU's: quantize_row_activation to each partner type and back
// (dequantize_row) must give the same floats bit for bit, including the
// cases where the rules are delicate: ties at .5, a block's largest
// magnitude present with both signs (q8_K keeps the first), all-zero
// blocks, rows that are not a whole number of 256-value spans, and several
// row groups with strides.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "backend/cuda/cuda_matmul_kernels.h"
#include "cuda_op_fixture.h"
#include "quant/dequantize.h"
#include "quant/ggml_type.h"
#include "quant/quantize.h"

namespace moeserve::cuda::test {
namespace {

using CudaActivationRounding = CudaOpTest;

// The CPU's rounding of one row: to `act` blocks and back to floats.
std::vector<float> cpu_rounded(GgmlType act, const float* x, int64_t n) {
    std::vector<float> out(x, x + n);
    if (act == GgmlType::F32) return out;
    std::vector<uint8_t> blocks(ggml_row_bytes(act, n));
    quantize_row_activation(act, x, blocks.data(), n);
    dequantize_row(act, blocks.data(), out.data(), n);
    return out;
}

// Rows with the delicate cases planted among normal values.
std::vector<float> delicate_rows(int64_t n_rows, int64_t width, std::mt19937& rng) {
    std::vector<float> x = normal_floats(n_rows * width, rng, 2.0f);
    for (int64_t r = 0; r < n_rows; ++r) {
        float* row = x.data() + r * width;
        if (r % 4 == 1)  // an all-zero row
            std::fill(row, row + width, 0.0f);
        if (r % 4 == 2) {  // the largest magnitude twice, negative first, in one 256-value block
            row[3] = -7.5f;
            row[200 % width] = 7.5f;
        }
        if (r % 4 == 3) {  // x * 127/amax exactly at .5 for a block of 32: amax 127, values k + 0.5
            row[0] = 127.0f;
            for (int j = 1; j < 32 && j < width; ++j) row[j] = static_cast<float>(j) - 16.5f;
        }
    }
    return x;
}

TEST_F(CudaActivationRounding, every_partner_type_rounds_as_the_cpu_bit_for_bit) {
    std::mt19937 rng(31);
    for (GgmlType act :
         {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F16, GgmlType::BF16, GgmlType::F32}) {
        const int64_t block = act == GgmlType::Q8_K ? 256 : 32;
        // 576: MLA's latent row (two spans and a quarter); 2816: not a power of two.
        for (int64_t width : {block, int64_t{576} / block * block, int64_t{2816}}) {
            if (width % block != 0) continue;
            SCOPED_TRACE(std::string(ggml_type_name(act)) + " width " + std::to_string(width));
            const int64_t n_rows = 9;
            const int n_groups = 2;
            // Source rows: group g, row r at g * group_stride + r * row_stride (strided and padded).
            const int64_t row_stride = width + 8, group_stride = n_rows * row_stride + 16;
            std::vector<float> src(n_groups * group_stride);
            std::vector<float> want(n_groups * n_rows * width);
            for (int g = 0; g < n_groups; ++g) {
                const std::vector<float> rows = delicate_rows(n_rows, width, rng);
                for (int64_t r = 0; r < n_rows; ++r) {
                    std::copy(rows.begin() + r * width, rows.begin() + (r + 1) * width,
                              src.begin() + g * group_stride + r * row_stride);
                    const std::vector<float> w = cpu_rounded(act, rows.data() + r * width, width);
                    std::copy(w.begin(), w.end(), want.begin() + (g * n_rows + r) * width);
                }
            }
            DeviceArray<float> dsrc(src), dout(want.size());
            round_rows_f32(ctx_, act, dsrc.get(), row_stride, group_stride, n_rows, width, n_groups, dout.get());
            const std::vector<float> got = dout.download();
            for (size_t i = 0; i < want.size(); ++i)
                ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
                    << "element " << i << ": GPU " << got[i] << ", CPU " << want[i];
            // The f16 form: the same values converted to f16.
            DeviceArray<__half> dout16(want.size());
            round_rows_f16(ctx_, act, dsrc.get(), row_stride, group_stride, n_rows, width, n_groups, dout16.get());
            const std::vector<__half> got16 = dout16.download();
            for (size_t i = 0; i < want.size(); ++i)
                ASSERT_EQ(__half2float(got16[i]), __half2float(__float2half_rn(want[i]))) << "f16 element " << i;
            finish();
        }
    }
}

// The gathering form (the MoE's expert inputs, read by token row): row r of
// the output is source row rows[r], rounded the same way.
TEST_F(CudaActivationRounding, gathered_rows_round_as_the_cpu) {
    std::mt19937 rng(32);
    const int64_t width = 512, n_src = 6;
    const std::vector<int32_t> rows = {5, 0, 5, 2, 3, 3, 1};
    const std::vector<float> src = delicate_rows(n_src, width, rng);
    for (GgmlType act : {GgmlType::Q8_K, GgmlType::Q8_0, GgmlType::F32}) {
        SCOPED_TRACE(ggml_type_name(act));
        DeviceArray<float> dsrc(src), dout(rows.size() * width);
        DeviceArray<int32_t> drows(rows);
        gather_round_rows_f32(ctx_, act, dsrc.get(), width, drows.get(), static_cast<int64_t>(rows.size()), width,
                              dout.get());
        const std::vector<float> got = dout.download();
        for (size_t r = 0; r < rows.size(); ++r) {
            const std::vector<float> want = cpu_rounded(act, src.data() + rows[r] * width, width);
            ASSERT_EQ(std::memcmp(got.data() + r * width, want.data(), width * sizeof(float)), 0) << "row " << r;
        }
        finish();
    }
}

TEST(CudaActivationRoundingChecks, partner_types_are_the_cpu_backends) {
    EXPECT_EQ(activation_rounding(GgmlType::Q4_K), GgmlType::Q8_K);
    EXPECT_EQ(activation_rounding(GgmlType::IQ4_XS), GgmlType::Q8_K);
    EXPECT_EQ(activation_rounding(GgmlType::Q8_0), GgmlType::Q8_0);
    EXPECT_EQ(activation_rounding(GgmlType::Q5_1), GgmlType::Q8_1);
    EXPECT_EQ(activation_rounding(GgmlType::F16), GgmlType::F16);
    EXPECT_EQ(activation_rounding(GgmlType::F32), GgmlType::F32);
}

TEST(CudaActivationRoundingChecks, rows_that_are_not_whole_blocks_are_refused) {
    // Thrown before any CUDA call, so this runs without a GPU too.
    Context ctx;
    EXPECT_THROW(round_rows_f32(ctx, GgmlType::Q8_K, nullptr, 300, 0, 1, 300, 1, nullptr), std::invalid_argument);
    EXPECT_THROW(round_rows_f32(ctx, GgmlType::Q8_0, nullptr, 40, 0, 1, 40, 1, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace moeserve::cuda::test
