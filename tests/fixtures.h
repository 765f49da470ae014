// Where the shared test fixtures are: $MOESERVE_FIXTURES, else
// ../shared/fixtures next to the repository. Tests that need them call
// MOESERVE_REQUIRE_FIXTURES(), which skips with a clear message when absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace moeserve::test {

inline std::filesystem::path fixtures_dir() {
    if (const char* env = std::getenv("MOESERVE_FIXTURES"); env && *env) return env;
    return std::filesystem::path(MOESERVE_SOURCE_DIR) / ".." / "shared" / "fixtures";
}

inline bool have_fixtures() { return std::filesystem::is_directory(fixtures_dir()); }

inline std::filesystem::path fixture(const std::string& relative) { return fixtures_dir() / relative; }

// A scratch directory unique to the running test, emptied first.
inline std::filesystem::path scratch_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    auto dir = std::filesystem::temp_directory_path() / "moeserve-tests" /
               (std::string(info->test_suite_name()) + "." + info->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

}  // namespace moeserve::test

#define MOESERVE_REQUIRE_FIXTURES()                                                                         \
    do {                                                                                                    \
        if (!::moeserve::test::have_fixtures())                                                             \
            GTEST_SKIP() << "fixtures not found at " << ::moeserve::test::fixtures_dir()                    \
                         << " (set MOESERVE_FIXTURES to the shared/fixtures folder)";                       \
    } while (0)
