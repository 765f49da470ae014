// The vectorized softmax of the attention kernels against std::exp in
// double precision: every value within a few ulps, over the whole range
// scores take, with tails of every length.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/vec_math.h"

namespace moeserve {
namespace {

TEST(CpuVecMath, exp_shifted_sum_matches_exp_to_a_few_ulps) {
    std::vector<float> xs;
    for (float v = -90.0f; v <= 0.0f; v += 0.0137f) xs.push_back(v);
    for (float v : {0.0f, -1e-8f, -0.34657359f, -0.34657360f, -0.6931472f, -87.0f, -87.33f}) xs.push_back(v);
    std::vector<float> got = xs;
    const float sum = exp_shifted_sum(got.data(), static_cast<int64_t>(got.size()), 0.0f);
    double want_sum = 0.0;
    for (size_t i = 0; i < xs.size(); ++i) {
        const double want = std::exp(static_cast<double>(xs[i]));
        want_sum += want;
        if (xs[i] < -87.0f) {  // results that would not be normal floats are flushed to 0
            EXPECT_EQ(got[i], 0.0f) << "exp(" << xs[i] << ")";
            continue;
        }
        EXPECT_NEAR(got[i], want, want * 4e-7) << "exp(" << xs[i] << ")";
    }
    EXPECT_NEAR(sum, want_sum, want_sum * 1e-5);
}

TEST(CpuVecMath, softmax_sums_to_one_and_matches_double_for_every_tail_length) {
    std::mt19937 rng(7);
    std::normal_distribution<float> d(0.0f, 6.0f);
    for (int n = 1; n <= 70; ++n) {
        std::vector<float> x(n);
        for (float& v : x) v = d(rng);
        std::vector<double> want(n);
        double mx = -1e300, s = 0;
        for (int i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
        for (int i = 0; i < n; ++i) s += want[i] = std::exp(x[i] - mx);
        softmax_inplace(x.data(), n);
        double total = 0;
        for (int i = 0; i < n; ++i) {
            EXPECT_NEAR(x[i], want[i] / s, 1e-6 + want[i] / s * 1e-6) << "n=" << n << " i=" << i;
            total += x[i];
        }
        EXPECT_NEAR(total, 1.0, 1e-5);
    }
}

}  // namespace
}  // namespace moeserve
