// Decode steps as CUDA graphs (docs/cuda.md "Decode steps as CUDA graphs").
//
// A decode step of a 48-layer MoE model is hundreds of small kernels; launched
// one by one from the host, the launches cost more than the kernels. So a
// forward pass of a small batch is captured once into a graph and replayed
// for the following steps, launching the whole step at once.
//
// A replay is only right if the step would have launched the same kernels
// with the same arguments. The backend cannot know that without running the
// model's host code, so it runs it in a checking mode: every op records the
// arguments that shape its launches (pointers, sizes, parameters) as words
// and compares them with the words the captured pass recorded, launching
// nothing. Equal words: the graph replays. The first difference (a new
// activation buffer, a different batch shape, the attention chunking moving
// to a longer context) stops the check, and the pass is captured again.
//
// What makes replays common: each step's inputs (tokens, positions, cells)
// go to the same device addresses (UploadArena), and the attention's cell
// counts are padded (graph_cell_padding) so its launch shape changes only
// every few hundred tokens.
#pragma once

#include <cuda_runtime.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"

namespace moeserve::cuda {

// Thrown while a graph is being captured by anything that cannot be part of
// one (an allocation, a host wait, a full upload arena). The pass then runs
// again without a graph.
class NotCapturable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Thrown in checking mode at the first op whose arguments differ from the
// captured pass's.
class SignatureMismatch {};

// Whether `stream` is being captured into a graph (never throws).
bool stream_is_capturing(cudaStream_t stream);

// Rounds a cell count up so that it changes rarely as a context grows: to a
// multiple of 256, or of a larger power of two that keeps the padding under
// 1/8 of the count.
int64_t graph_cell_padding(int64_t n_cells);

// The arguments of a pass's ops as a sequence of words; see the top of the file.
class OpRecorder {
  public:
    enum class Mode { off, record, check };

    Mode mode() const { return mode_; }
    bool checking() const { return mode_ == Mode::check; }
    void record() {
        mode_ = Mode::record;
        words_.clear();
    }
    void check(const std::vector<uint64_t>* expected) {
        mode_ = Mode::check;
        expected_ = expected;
        pos_ = 0;
    }
    void stop() { mode_ = Mode::off; }
    // After a check: every recorded word was seen, no more, no fewer.
    bool check_complete() const { return expected_ && pos_ == expected_->size(); }
    std::vector<uint64_t> take_words() { return std::move(words_); }

    // Records (or checks) one op: a tag and its arguments.
    template <class... Args>
    void op(uint64_t tag, const Args&... args) {
        if (mode_ == Mode::off) return;
        word(0x6f70000000000000ull | tag);
        (put(args), ...);
    }

  private:
    void word(uint64_t w) {
        if (mode_ == Mode::record) {
            words_.push_back(w);
        } else {
            if (pos_ >= expected_->size() || (*expected_)[pos_] != w) throw SignatureMismatch{};
            ++pos_;
        }
    }
    template <class T>
    void put(const T& v) {
        if constexpr (std::is_pointer_v<T>) {
            word(reinterpret_cast<uintptr_t>(v));
        } else if constexpr (std::is_enum_v<T>) {
            word(static_cast<uint64_t>(v));
        } else if constexpr (std::is_same_v<T, float>) {
            word(std::bit_cast<uint32_t>(v));
        } else if constexpr (std::is_integral_v<T>) {
            word(static_cast<uint64_t>(v));
        } else {
            put_struct(v);
        }
    }
    void put_struct(const Weight& w);
    void put_struct(const RopeParams& p);
    void put_struct(const MoeParams& p);
    void put_struct(const SsmParams& p);
    void put_struct(const KvLayer& l);
    void put_struct(const AttentionCells& c);
    void put_struct(const RecurrentLayer& r);

    Mode mode_ = Mode::off;
    std::vector<uint64_t> words_;
    const std::vector<uint64_t>* expected_ = nullptr;
    size_t pos_ = 0;
};

// Pinned host memory with a device twin of the same size: a pass's uploads
// are written to the host side at increasing offsets and copied to the same
// offsets on the device, so an upload's device address depends only on the
// sizes uploaded before it in the pass. Reallocating (reserve) changes the
// addresses: generation() counts it, and graphs made before are dropped.
class UploadArena {
  public:
    UploadArena() = default;
    ~UploadArena();
    UploadArena(const UploadArena&) = delete;
    UploadArena& operator=(const UploadArena&) = delete;

    // At least `bytes` of room from offset 0; only while nothing queued uses the arena.
    void reserve(size_t bytes);
    size_t capacity() const { return capacity_; }
    size_t used() const { return used_; }
    void rewind(size_t offset) { used_ = offset; }
    uint64_t generation() const { return generation_; }

    // Copies `bytes` of src to the host side and takes `span_bytes` (>= bytes,
    // room kept for a list that will grow) at the next 256-byte offset;
    // nullopt when they do not fit.
    std::optional<size_t> put(const void* src, size_t bytes, size_t span_bytes);
    uint8_t* host(size_t offset) const { return host_ + offset; }
    uint8_t* device(size_t offset) const { return device_ + offset; }

  private:
    uint8_t* host_ = nullptr;
    uint8_t* device_ = nullptr;
    size_t capacity_ = 0;
    size_t used_ = 0;
    uint64_t generation_ = 0;
};

// Pinned host memory that a graph's device-to-host copies write to.
class ReadbackBuffer {
  public:
    ReadbackBuffer() = default;
    ~ReadbackBuffer();
    ReadbackBuffer(const ReadbackBuffer&) = delete;
    ReadbackBuffer& operator=(const ReadbackBuffer&) = delete;

    void reserve(size_t bytes);  // only while no copy into it is queued
    size_t capacity() const { return capacity_; }
    uint64_t generation() const { return generation_; }
    uint8_t* data() const { return data_; }

  private:
    uint8_t* data_ = nullptr;
    size_t capacity_ = 0;
    uint64_t generation_ = 0;
};

// One instantiated graph per batch size, with the words of the pass it was
// captured from.
struct CachedGraph {
    cudaGraphExec_t exec = nullptr;
    std::vector<uint64_t> words;
    int64_t replays = 0;        // since the last capture
    int captures_in_a_row = 0;  // captures with no replay in between
    int eager_passes_left = 0;  // after too many of those: passes run without graphs
};

// Counts since the backend was made (tests and benchmarks read them).
struct GraphStats {
    int64_t captured = 0;        // passes captured into a graph (and launched)
    int64_t replayed = 0;        // passes that relaunched a captured graph
    int64_t eager = 0;           // passes run op by op (too large, graphs off, or resting)
    int64_t not_capturable = 0;  // captures abandoned, the pass run op by op instead
};

// Instantiates `graph` into cached.exec, updating the existing executable in
// place when the topology allows (much cheaper than a new instantiation).
void install_graph(CachedGraph& cached, cudaGraph_t graph);
void destroy_graph(CachedGraph& cached) noexcept;

}  // namespace moeserve::cuda
