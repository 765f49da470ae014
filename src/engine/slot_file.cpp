#include "engine/slot_file.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace moeserve {
namespace {

constexpr char kMagic[4] = {'M', 'S', 'S', 'Q'};
constexpr uint32_t kVersion = 1;

// The layout fields, in file order.
std::vector<uint64_t> layout_of(const KvCache& cache) {
    std::vector<uint64_t> v = {static_cast<uint64_t>(cache.n_layer()), static_cast<uint64_t>(cache.type_k()),
                               static_cast<uint64_t>(cache.type_v())};
    for (int l = 0; l < cache.n_layer(); ++l) {
        v.push_back(cache.k_row_bytes(l));
        v.push_back(cache.v_row_bytes(l));
    }
    v.push_back(cache.has_recurrent() ? static_cast<uint64_t>(cache.recurrent_seq_stride()) : 0);
    return v;
}

class Reader {
  public:
    Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
        if (!in_) throw std::runtime_error(fmt::format("{}: cannot open the file", path));
    }
    template <class T>
    T value() {
        T v{};
        bytes(&v, sizeof v);
        return v;
    }
    void bytes(void* dst, size_t n) {
        if (n && !in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n)))
            throw std::runtime_error(fmt::format("{}: the file ends early (truncated?)", path_));
        read_ += n;
    }
    uint64_t read() const { return read_; }
    bool at_end() { return in_.peek() == std::char_traits<char>::eof(); }

  private:
    std::string path_;
    std::ifstream in_;
    uint64_t read_ = 0;
};

}  // namespace

uint64_t write_slot_file(const std::string& path, const std::vector<int32_t>& tokens, const SequenceState& state,
                         const KvCache& cache) {
    const std::string tmp = path + ".tmp";
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("{}: cannot write the file", path));
    uint64_t written = 0;
    auto put = [&](const void* p, size_t n) {
        out.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
        written += n;
    };
    put(kMagic, 4);
    put(&kVersion, 4);
    const std::vector<uint64_t> layout = layout_of(cache);
    const uint64_t n_layout = layout.size();
    put(&n_layout, 8);
    put(layout.data(), layout.size() * 8);
    const uint64_t n_tokens = tokens.size(), n_rows = state.rows.size(), n_rec = state.recurrent.size();
    put(&n_tokens, 8);
    put(tokens.data(), tokens.size() * sizeof(int32_t));
    put(&n_rows, 8);
    put(state.rows.data(), state.rows.size());
    put(&n_rec, 8);
    put(state.recurrent.data(), state.recurrent.size() * sizeof(float));
    out.close();
    // Written under another name, then renamed: a failed write leaves no half file under the real one.
    if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error(fmt::format("{}: cannot write the file (disk full?)", path));
    }
    return written;
}

SlotFile read_slot_file(const std::string& path, const KvCache& cache, uint64_t* bytes_read) {
    Reader in(path);
    char magic[4];
    in.bytes(magic, 4);
    if (std::memcmp(magic, kMagic, 4) != 0) throw std::runtime_error(fmt::format("{}: not a moeserve slot file", path));
    const auto version = in.value<uint32_t>();
    if (version != kVersion)
        throw std::runtime_error(
            fmt::format("{}: slot file version {} (this server reads {})", path, version, kVersion));
    const std::vector<uint64_t> want = layout_of(cache);
    const auto n_layout = in.value<uint64_t>();
    if (n_layout != want.size())
        throw std::runtime_error(
            fmt::format("{}: saved from a different model or KV cache configuration (layout of {} fields, this cache "
                        "has {})",
                        path, n_layout, want.size()));
    for (size_t i = 0; i < want.size(); ++i)
        if (in.value<uint64_t>() != want[i])
            throw std::runtime_error(fmt::format(
                "{}: saved from a different model or KV cache configuration (cache types or row sizes differ)", path));
    SlotFile f;
    const auto n_tokens = in.value<uint64_t>();
    if (n_tokens > static_cast<uint64_t>(cache.n_cells()))
        throw std::runtime_error(
            fmt::format("{}: {} tokens, more than the cache's {} cells", path, n_tokens, cache.n_cells()));
    f.tokens.resize(n_tokens);
    in.bytes(f.tokens.data(), n_tokens * sizeof(int32_t));
    uint64_t row_bytes = 0;
    for (int l = 0; l < cache.n_layer(); ++l) row_bytes += (cache.k_row_bytes(l) + cache.v_row_bytes(l)) * n_tokens;
    if (in.value<uint64_t>() != row_bytes)
        throw std::runtime_error(fmt::format("{}: the KV rows do not match the token count", path));
    f.state.n_tokens = static_cast<int64_t>(n_tokens);
    f.state.rows.resize(row_bytes);
    in.bytes(f.state.rows.data(), row_bytes);
    const auto n_rec = in.value<uint64_t>();
    if (n_rec != want.back()) throw std::runtime_error(fmt::format("{}: the recurrent state has the wrong size", path));
    f.state.recurrent.resize(n_rec);
    in.bytes(f.state.recurrent.data(), n_rec * sizeof(float));
    if (!in.at_end()) throw std::runtime_error(fmt::format("{}: extra bytes after the slot state", path));
    if (bytes_read) *bytes_read = in.read();
    return f;
}

}  // namespace moeserve
