// -ngl and the backend choice: values llama.cpp accepts, and the note when
// no GPU backend can run (a layer split included).
#include <gtest/gtest.h>

#include "backend/select_backend.h"

namespace moeserve {
namespace {

TEST(GpuLayersFlag, accepts_counts_auto_and_all) {
    EXPECT_EQ(parse_gpu_layers("0"), 0);
    EXPECT_EQ(parse_gpu_layers("99"), 99);
    EXPECT_EQ(parse_gpu_layers("auto"), kGpuLayersAuto);
    EXPECT_EQ(parse_gpu_layers("-1"), kGpuLayersAuto);
    EXPECT_EQ(parse_gpu_layers("all"), kGpuLayersAll);
    for (const char* bad : {"", "-2", "many", "9x", "1.5"}) {
        try {
            parse_gpu_layers(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
        }
    }
}

TEST(BackendSelection, zero_gpu_layers_is_the_cpu_without_a_note) {
    std::string note = "stale";
    auto be = select_backend({2, 0, 48, {}}, &note);
    EXPECT_EQ(be->name(), "cpu");
    EXPECT_EQ(be->n_threads(), 2);
    EXPECT_TRUE(note.empty());
}

TEST(BackendSelection, without_cuda_gpu_layers_run_on_the_cpu_with_a_note) {
    if (cuda_backend_built()) GTEST_SKIP() << "CUDA build: tests/cuda covers the device cases";
    std::string note;
    auto be = select_backend({1, 99, 48, {}}, &note);
    EXPECT_EQ(be->name(), "cpu");
    EXPECT_NE(note.find("-ngl 99 is ignored"), std::string::npos) << note;
    // A layer split, too: there is no device to put the last layers on.
    be = select_backend({1, 10, 48, {}}, &note);
    EXPECT_EQ(be->name(), "cpu");
    EXPECT_NE(note.find("-ngl 10 is ignored"), std::string::npos) << note;
    // auto is silent: it means "the GPU if there is one".
    select_backend({1, kGpuLayersAuto, 48, {}}, &note);
    EXPECT_TRUE(note.empty()) << note;
}

}  // namespace
}  // namespace moeserve
