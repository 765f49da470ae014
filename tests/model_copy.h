// A copy of a fixture model with some metadata keys set or replaced, for
// tests of how the server reads optional keys the fixtures do not carry.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"

namespace moeserve::test {

// Writes (once per process) `name`.gguf in the temporary directory: every key
// and tensor of `source`, then `edit` applied to the writer.
inline std::string model_copy(const std::string& source, const std::string& name,
                              const std::function<void(GgufWriter&)>& edit) {
    const auto dir = std::filesystem::temp_directory_path() / "moeserve-tests";
    std::filesystem::create_directories(dir);
    const std::string path = (dir / (name + "-" + std::to_string(::getpid()) + ".gguf")).string();
    if (std::filesystem::exists(path)) return path;
    const GgufFile src = GgufFile::open(source);
    GgufWriter w;
    for (const auto& kv : src.metadata()) w.set(kv.key, kv.value);
    edit(w);
    for (const auto& t : src.tensors()) {
        const uint8_t* data = src.tensor_data(t);
        w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims),
                     std::vector<uint8_t>(data, data + t.nbytes));
    }
    w.write(path + ".tmp");
    std::filesystem::rename(path + ".tmp", path);
    return path;
}

}  // namespace moeserve::test
