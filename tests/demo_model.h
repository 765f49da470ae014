// The built-in demo model (moeserve demo) as a file for tests that drive the
// engine or the scheduler without the shared fixtures.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "synth/synth_model.h"

namespace moeserve::test {

// The demo model at <tmp>/moeserve-tests/<name>.gguf, written once per
// process. Written under a private name, then renamed: tests running in
// parallel processes never see a half-written file.
inline std::string demo_model_file(const std::string& name) {
    auto dir = std::filesystem::temp_directory_path() / "moeserve-tests";
    std::filesystem::create_directories(dir);
    auto p = (dir / (name + ".gguf")).string();
    auto tmp = p + "." + std::to_string(::getpid()) + ".tmp";
    write_synth_model(tmp, demo_spec());
    std::filesystem::rename(tmp, p);
    return p;
}

}  // namespace moeserve::test
