// Reading GGUF files: memory-mapped, validated, zero-copy tensor access.
//
// GgufFile::open never trusts the file: every length, count, type id and
// offset is checked before use, and any problem becomes a GgufError whose
// message names the file, the byte offset and what is wrong.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/gguf_value.h"
#include "quant/ggml_type.h"

namespace moeserve {

class GgufError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct GgufTensorInfo {
    std::string name;
    GgmlType type = GgmlType::F32;
    int n_dims = 1;
    std::array<int64_t, 4> ne{1, 1, 1, 1};  // ggml order: ne[0] is the contiguous row length
    uint64_t offset = 0;                    // relative to the start of the data section
    uint64_t nbytes = 0;

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    size_t row_bytes() const { return static_cast<size_t>(nbytes / (ne[1] * ne[2] * ne[3])); }
    std::string shape_string() const;  // "[2048, 768, 128]"
};

struct GgufKv {
    std::string key;
    GgufValue value;
};

class MappedFile;
enum class LoadMode;

class GgufFile {
  public:
    // Maps and validates the file. Throws GgufError.
    static GgufFile open(const std::string& path);
    // The same, with the file brought into memory as `mode` says.
    static GgufFile open(const std::string& path, LoadMode mode);
    // Parses an in-memory image (tests, fuzzing). The bytes are copied.
    static GgufFile parse(std::span<const uint8_t> bytes, const std::string& name = "<memory>");

    GgufFile(GgufFile&&) noexcept;
    GgufFile& operator=(GgufFile&&) noexcept;
    ~GgufFile();

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
    uint64_t file_size() const { return size_; }
    // moeserve.header_only = true: tensor infos without data (synth --header-only).
    bool header_only() const { return header_only_; }

    // Metadata, in file order.
    const std::vector<GgufKv>& metadata() const { return kv_; }
    const GgufValue* find(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }

    // Typed getters. The required forms throw GgufError naming the file and
    // key when the key is missing or has an incompatible type.
    std::string get_string(std::string_view key) const;
    uint32_t get_u32(std::string_view key) const;
    int64_t get_i64(std::string_view key) const;
    float get_f32(std::string_view key) const;
    bool get_bool(std::string_view key) const;
    std::vector<std::string> get_string_array(std::string_view key) const;
    std::vector<int64_t> get_int_array(std::string_view key) const;
    std::vector<float> get_f32_array(std::string_view key) const;
    // Optional forms: nullopt when absent; wrong type still throws.
    std::optional<std::string> find_string(std::string_view key) const;
    std::optional<uint32_t> find_u32(std::string_view key) const;
    std::optional<float> find_f32(std::string_view key) const;
    std::optional<bool> find_bool(std::string_view key) const;
    // A u32 that may also be stored as a per-layer array (e.g. head_count_kv).
    // Returns n_layer values; throws if an array has another length.
    std::vector<uint32_t> get_u32_per_layer(std::string_view key, size_t n_layer) const;

    // "general.architecture", or throws.
    std::string architecture() const { return get_string("general.architecture"); }

    // Tensors, in file order.
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const;
    // Pointer into the mapping. Throws for header-only files.
    const uint8_t* tensor_data(const GgufTensorInfo& t) const;

  private:
    GgufFile();
    void parse_header();

    std::string path_;
    std::unique_ptr<MappedFile> map_;
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    bool header_only_ = false;
    std::vector<GgufKv> kv_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::vector<GgufTensorInfo> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace moeserve
