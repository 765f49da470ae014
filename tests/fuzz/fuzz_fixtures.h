// Where fuzz targets find the shared test fixtures (a vocabulary, a model):
// $MOESERVE_FIXTURES, else ../shared/fixtures next to the repository, as for
// the unit tests (tests/fixtures.h). A missing fixture stops the target at
// start with a message, not a false crash report.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace moeserve::fuzz {

inline std::string fixture(const std::string& relative) {
    const char* env = std::getenv("MOESERVE_FIXTURES");
    const std::filesystem::path dir = env && *env
                                          ? std::filesystem::path(env)
                                          : std::filesystem::path(MOESERVE_SOURCE_DIR) / ".." / "shared" / "fixtures";
    const std::filesystem::path path = dir / relative;
    if (!std::filesystem::exists(path)) {
        std::fprintf(stderr, "fixture %s not found (set MOESERVE_FIXTURES to the shared/fixtures folder)\n",
                     path.c_str());
        std::exit(1);
    }
    return path.string();
}

}  // namespace moeserve::fuzz
