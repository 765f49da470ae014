// How a model file gets into memory (--mmap, --no-mmap, --mlock, -lm): the
// bytes, and what the engine computes from them, are the same every way.
#include <gtest/gtest.h>

#include <cstring>

#include "engine/engine.h"
#include "fixtures.h"
#include "gguf/mapped_file.h"

namespace moeserve {
namespace {

TEST(LoadMode, every_mode_gives_the_same_bytes_and_logits) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string path = test::fixture("models/qwen3moe-tiny-s1-q4_k_m.gguf").string();
    const MappedFile mapped = MappedFile::load(path, LoadMode::mmap);
    for (LoadMode mode : {LoadMode::read, LoadMode::mlock}) {
        const MappedFile other = MappedFile::load(path, mode);
        ASSERT_EQ(other.size(), mapped.size());
        EXPECT_EQ(std::memcmp(other.data(), mapped.data(), mapped.size()), 0);
    }

    const std::vector<int32_t> tokens = {1, 17, 42, 99, 5, 230, 64, 3};
    std::vector<float> want;
    for (LoadMode mode : {LoadMode::mmap, LoadMode::read, LoadMode::mlock}) {
        EngineOptions opt;
        opt.model_path = path;
        opt.n_threads = 1;
        opt.n_ctx = 64;
        opt.load_mode = mode;
        Engine engine(opt);
        const std::vector<float> logits = engine.eval(0, tokens, true);
        if (want.empty())
            want = logits;
        else
            EXPECT_EQ(logits, want);
    }
}

TEST(LoadMode, names_and_errors) {
    EXPECT_EQ(load_mode_from_name("mmap"), LoadMode::mmap);
    EXPECT_EQ(load_mode_from_name("mlock"), LoadMode::mlock);
    EXPECT_EQ(load_mode_from_name("none"), LoadMode::read);
    EXPECT_EQ(load_mode_from_name("dio"), LoadMode::read);
    EXPECT_FALSE(load_mode_from_name("MMAP").has_value());
    try {
        MappedFile::load("/nonexistent/model.gguf", LoadMode::read);
        FAIL() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf: cannot open"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace moeserve
