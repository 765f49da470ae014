// The host-side logic of decode graphs (cuda_graph.h) that needs no device:
// the recorded words of a pass, the check against them, and the padding of
// cell counts. Runs in every CUDA build, GPU or not.
#include <gtest/gtest.h>

#include <vector>

#include "backend/cuda/cuda_graph.h"

namespace moeserve::cuda {
namespace {

// A pass of three "ops" with the given arguments.
void pass(OpRecorder& rec, const float* x, int64_t n, float scale, const Weight& w) {
    rec.op(1, x, n);
    rec.op(2, w, scale);
    rec.op(3, n);
}

Weight weight(const uint8_t* data, GgmlType type) {
    Weight w;
    w.type = type;
    w.ne = {256, 512, 1, 1};
    w.row_bytes = 144;
    w.matrix_bytes = 144 * 512;
    w.data = data;
    return w;
}

// A recorder holding the words of one pass over x and w.
struct RecordedPass {
    std::vector<float> x = std::vector<float>(8);
    std::vector<uint8_t> bytes = std::vector<uint8_t>(16);
    Weight w = weight(bytes.data(), GgmlType::Q4_K);
    OpRecorder rec;
    std::vector<uint64_t> words;

    RecordedPass() {
        rec.record();
        pass(rec, x.data(), 4, 0.5f, w);
        rec.stop();
        words = rec.take_words();
    }
};

TEST(CudaGraphRecorder, an_identical_pass_checks_complete) {
    RecordedPass p;
    EXPECT_FALSE(p.words.empty());
    p.rec.check(&p.words);
    EXPECT_TRUE(p.rec.checking());
    pass(p.rec, p.x.data(), 4, 0.5f, p.w);
    p.rec.stop();
    EXPECT_TRUE(p.rec.check_complete());
}

TEST(CudaGraphRecorder, any_changed_argument_stops_the_check) {
    RecordedPass p;
    auto& [x, bytes, w, rec, words] = p;
    std::vector<float> other(8);

    auto differs = [&](auto&& run) {
        rec.check(&words);
        bool mismatch = false;
        try {
            run();
        } catch (const SignatureMismatch&) {
            mismatch = true;
        }
        rec.stop();
        return mismatch;
    };
    EXPECT_TRUE(differs([&] { pass(rec, other.data(), 4, 0.5f, w); }));  // a buffer moved
    EXPECT_TRUE(differs([&] { pass(rec, x.data(), 5, 0.5f, w); }));      // another size
    EXPECT_TRUE(differs([&] { pass(rec, x.data(), 4, 0.25f, w); }));     // a float parameter
    EXPECT_TRUE(differs([&] { pass(rec, x.data(), 4, 0.5f, weight(bytes.data(), GgmlType::Q5_K)); }));
    EXPECT_TRUE(differs([&] {  // one op more than the recorded pass
        pass(rec, x.data(), 4, 0.5f, w);
        rec.op(4, x.data());
    }));
    EXPECT_FALSE(differs([&] { pass(rec, x.data(), 4, 0.5f, w); }));
}

TEST(CudaGraphRecorder, a_shorter_pass_is_not_complete) {
    RecordedPass p;
    p.rec.check(&p.words);
    p.rec.op(1, p.x.data(), int64_t{4});
    p.rec.stop();
    EXPECT_FALSE(p.rec.check_complete());
}

TEST(CudaGraphRecorder, off_records_nothing) {
    OpRecorder rec;
    float x = 0;
    rec.op(1, &x, int64_t{3});
    EXPECT_EQ(rec.mode(), OpRecorder::Mode::off);
    EXPECT_TRUE(rec.take_words().empty());
}

TEST(CudaGraphPadding, counts_change_rarely_and_pad_by_less_than_an_eighth) {
    EXPECT_EQ(graph_cell_padding(0), 0);
    EXPECT_EQ(graph_cell_padding(1), 256);
    EXPECT_EQ(graph_cell_padding(256), 256);
    EXPECT_EQ(graph_cell_padding(257), 512);
    EXPECT_EQ(graph_cell_padding(4097), 4608);
    int64_t changes = 0;
    for (int64_t n = 1; n <= 1 << 20; ++n) {
        const int64_t p = graph_cell_padding(n);
        ASSERT_GE(p, n);
        ASSERT_LT(p - n, n / 8 + 256) << n;  // under 1/8 of the count, or within the first 256
        if (n > 1 && p != graph_cell_padding(n - 1)) ++changes;
    }
    // One growing context of 1M cells: the attention's launch shape changes a
    // few hundred times, not a million.
    EXPECT_LT(changes, 400);
}

}  // namespace
}  // namespace moeserve::cuda
