#include "memory/device_memory.h"

#include <cstdint>
#include <cstring>
#include <new>

namespace moeserve {
namespace {

class HostMemory final : public DeviceMemory {
  public:
    const char* name() const override { return "host"; }
    bool is_host() const override { return true; }
    // Plain operator new (so heap accounting sees it, as it saw the vectors
    // this replaced), aligned to 64 bytes by hand: the pointer new returned
    // is kept just in front of the block.
    void* allocate(size_t bytes) override {
        char* raw = static_cast<char*>(::operator new(bytes + 64));
        auto addr = reinterpret_cast<uintptr_t>(raw) + sizeof(void*);
        char* block = reinterpret_cast<char*>((addr + 63) & ~uintptr_t{63});
        reinterpret_cast<void**>(block)[-1] = raw;
        std::memset(block, 0, bytes);
        return block;
    }
    void release(void* p) noexcept override {
        if (p) ::operator delete(static_cast<void**>(p)[-1]);
    }
    void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
    void zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
    void upload(void* dst, const void* host_src, size_t bytes) override { std::memmove(dst, host_src, bytes); }
    void download(void* host_dst, const void* src, size_t bytes) override { std::memmove(host_dst, src, bytes); }
};

}  // namespace

void DeviceMemory::download_rows(void* host_dst, const void* src, size_t row_bytes, std::span<const int32_t> cells) {
    auto* out = static_cast<uint8_t*>(host_dst);
    const auto* in = static_cast<const uint8_t*>(src);
    for_each_cell_run(cells, [&](size_t i, size_t n) {
        download(out + i * row_bytes, in + static_cast<size_t>(cells[i]) * row_bytes, n * row_bytes);
    });
}

void DeviceMemory::upload_rows(void* dst, const void* host_src, size_t row_bytes, std::span<const int32_t> cells) {
    auto* out = static_cast<uint8_t*>(dst);
    const auto* in = static_cast<const uint8_t*>(host_src);
    for_each_cell_run(cells, [&](size_t i, size_t n) {
        upload(out + static_cast<size_t>(cells[i]) * row_bytes, in + i * row_bytes, n * row_bytes);
    });
}

DeviceMemory& host_memory() {
    static HostMemory memory;
    return memory;
}

}  // namespace moeserve
