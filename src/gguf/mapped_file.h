// A read-only view of a whole file: mmap'ed from disk, or an owned copy of
// bytes (for parsing in-memory images in tests and fuzzing).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace moeserve {

class MappedFile {
public:
    // Throws std::runtime_error naming the path and the system error.
    static MappedFile map(const std::string& path);
    static MappedFile copy_of(std::span<const uint8_t> bytes);

    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }

private:
    MappedFile() = default;
    void release();

    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    bool mapped_ = false;        // true: munmap on release
    std::vector<uint8_t> copy_;  // owned bytes when not mapped
};

}  // namespace moeserve
