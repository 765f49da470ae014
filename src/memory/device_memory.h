// Where a backend keeps the memory its ops read and write: host memory for
// the CPU backend, GPU memory for CUDA. The KV cache, the recurrent state and
// the models' activations are allocated here, so the same model code and
// cache bookkeeping run on either; only the backend touches the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace moeserve {

class DeviceMemory {
  public:
    virtual ~DeviceMemory() = default;
    virtual const char* name() const = 0;
    // True when pointers from allocate() may be dereferenced by host code.
    virtual bool is_host() const = 0;
    // A zero-filled block of at least `bytes`, aligned for any SIMD or
    // vector load; throws (std::bad_alloc or std::runtime_error) when out
    // of memory.
    virtual void* allocate(size_t bytes) = 0;
    virtual void release(void* p) noexcept = 0;
    // Copies between blocks of this memory / to and from host memory.
    virtual void copy(void* dst, const void* src, size_t bytes) = 0;
    virtual void zero(void* dst, size_t bytes) = 0;
    virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
    virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
    // Rows of row_bytes by index: row cells[i] of the array at src into
    // host_dst[i] (packed, in order), and host_src[i] into row cells[i] of
    // dst. By default one download / upload per run of consecutive cells; a
    // GPU, where each copy is a call and a wait and a sequence's cells
    // interleave with the other slots', gathers or scatters them on the
    // device around one copy.
    virtual void download_rows(void* host_dst, const void* src, size_t row_bytes, std::span<const int32_t> cells);
    virtual void upload_rows(void* dst, const void* host_src, size_t row_bytes, std::span<const int32_t> cells);
};

// Calls f(first index, count) for each run of consecutive cells in `cells`.
template <class F>
void for_each_cell_run(std::span<const int32_t> cells, F&& f) {
    for (size_t i = 0; i < cells.size();) {
        size_t j = i + 1;
        while (j < cells.size() && cells[j] == cells[j - 1] + 1) ++j;
        f(i, j - i);
        i = j;
    }
}

// Plain host memory (64-byte aligned).
DeviceMemory& host_memory();

// An owned block of some DeviceMemory.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    DeviceBuffer(DeviceMemory& mem, size_t bytes) : mem_(&mem), size_(bytes) {
        if (bytes) data_ = mem.allocate(bytes);
    }
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            reset();
            mem_ = std::exchange(o.mem_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* data() { return data_; }
    const void* data() const { return data_; }
    size_t size() const { return size_; }
    DeviceMemory* memory() const { return mem_; }
    void reset() {
        if (data_) mem_->release(data_);
        data_ = nullptr;
        size_ = 0;
    }

  private:
    DeviceMemory* mem_ = nullptr;
    void* data_ = nullptr;
    size_t size_ = 0;
};

// A grow-only float array for activations, in the backend's memory.
// resize() keeps the block when it is big enough; when it grows, the old
// contents are not kept (every forward pass writes its buffers before
// reading them).
class Activations {
  public:
    explicit Activations(DeviceMemory& mem) : mem_(&mem) {}
    void resize(size_t n) {
        if (n > capacity_) {
            buffer_ = DeviceBuffer(*mem_, n * sizeof(float));
            capacity_ = n;
        }
        size_ = n;
    }
    float* data() { return static_cast<float*>(buffer_.data()); }
    const float* data() const { return static_cast<const float*>(buffer_.data()); }
    size_t size() const { return size_; }

  private:
    DeviceMemory* mem_;
    DeviceBuffer buffer_;
    size_t capacity_ = 0;
    size_t size_ = 0;
};

}  // namespace moeserve
