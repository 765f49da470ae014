// A byte buffer in freshly mapped, pre-faulted pages, for the multi-GB
// copies of a slot's cache (the RAM prompt cache, slot files). Copying 3.2
// GB into a zero-initialized std::vector took 6.5 s on the development VM,
// nearly all of it page faults and zeroing; into pages mapped with
// MAP_POPULATE, 1.2 s.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace moeserve {

class PageBuffer {
  public:
    PageBuffer() = default;
    explicit PageBuffer(size_t n) { resize(n); }
    PageBuffer(PageBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    PageBuffer& operator=(PageBuffer&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    PageBuffer(const PageBuffer&) = delete;
    PageBuffer& operator=(const PageBuffer&) = delete;
    ~PageBuffer() { release(); }

    // n zero bytes (what was there before is gone). Throws std::bad_alloc.
    void resize(size_t n) {
        release();
        if (n == 0) return;
        void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        data_ = static_cast<uint8_t*>(p);
        size_ = n;
    }
    uint8_t* data() { return data_; }
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

  private:
    void release() {
        if (data_) ::munmap(data_, size_);
        data_ = nullptr;
        size_ = 0;
    }
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace moeserve
