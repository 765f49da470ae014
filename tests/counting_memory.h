// Host memory that counts the copies made through it: a stand-in for a
// GPU's memory in tests of code that must copy rather than read in place.
#pragma once

#include <cstring>

#include "memory/device_memory.h"

namespace moeserve::test {

class CountingMemory final : public DeviceMemory {
  public:
    const char* name() const override { return "counting"; }
    bool is_host() const override { return true; }
    void* allocate(size_t bytes) override { return host_memory().allocate(bytes); }
    void release(void* p) noexcept override { host_memory().release(p); }
    void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
    void zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
    void upload(void* dst, const void* src, size_t bytes) override {
        ++uploads;
        uploaded_bytes += bytes;
        std::memmove(dst, src, bytes);
    }
    void download(void* dst, const void* src, size_t bytes) override {
        ++downloads;
        downloaded_bytes += bytes;
        std::memmove(dst, src, bytes);
    }
    int uploads = 0, downloads = 0;
    size_t uploaded_bytes = 0, downloaded_bytes = 0;
};

}  // namespace moeserve::test
