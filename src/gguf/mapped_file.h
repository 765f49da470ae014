// A read-only view of a whole file: mmap'ed from disk (optionally locked in
// RAM), read into memory, or an owned copy of bytes (for parsing in-memory
// images in tests and fuzzing).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace moeserve {

// How a model file gets into memory: llama-server's --load-mode (and its
// older spellings --mmap, --no-mmap, --mlock, -dio).
enum class LoadMode {
    mmap,   // map the file; pages are read on first use and may be evicted
    mlock,  // map it and lock the pages in RAM (a warning, not an error, when the lock is refused)
    read,   // read the whole file into allocated memory (--no-mmap; also -dio)
};

// "mmap", "mlock", "none" (read), "dio" (read); nullopt for anything else.
std::optional<LoadMode> load_mode_from_name(const std::string& name);

class MappedFile {
  public:
    // Throws std::runtime_error naming the path and the system error.
    static MappedFile map(const std::string& path);
    static MappedFile load(const std::string& path, LoadMode mode);
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
