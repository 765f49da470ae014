// Writing GGUF files (v3): metadata and tensors of any type, the layout
// GgufFile reads. Used by tests, the demo model, synth and vocab-from-hf.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_value.h"
#include "quant/ggml_type.h"

namespace moeserve {

class GgufWriter {
public:
    // Fills exactly `bytes.size()` bytes of one tensor's data.
    using Fill = std::function<void(std::span<uint8_t> bytes)>;

    explicit GgufWriter(uint32_t alignment = 32);

    // Sets or replaces a key; keys keep the order of their first set.
    void set(const std::string& key, GgufValue value);
    // Adds a tensor whose data is given now.
    void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> data);
    // Adds a tensor whose data is produced while writing (large files).
    void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Fill fill);
    // Adds a tensor info without data (header-only files).
    void add_tensor_info(const std::string& name, GgmlType type, std::vector<int64_t> ne);

    // Header-only when every tensor was added with add_tensor_info; then the
    // key moeserve.header_only = true is written too.
    void write(const std::string& path) const;
    std::vector<uint8_t> to_bytes() const;

private:
    struct Tensor {
        std::string name;
        GgmlType type;
        std::vector<int64_t> ne;
        uint64_t nbytes;
        std::vector<uint8_t> data;
        Fill fill;
        bool info_only = false;
    };
    void write_to(std::function<void(const void*, size_t)> sink) const;

    uint32_t alignment_;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<Tensor> tensors_;
};

}  // namespace moeserve
