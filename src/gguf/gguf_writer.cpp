#include "gguf/gguf_writer.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace moeserve {
namespace {

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Serialises header fields into a byte sink.
class Encoder {
public:
    explicit Encoder(std::function<void(const void*, size_t)>& sink) : sink_(sink) {}

    template <typename T>
    void put(T x) {
        sink_(&x, sizeof(T));
        written_ += sizeof(T);
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        sink_(s.data(), s.size());
        written_ += s.size();
    }
    void put_value(const GgufValue& v) {
        std::visit(
            [&](const auto& x) {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, std::string>) {
                    put_string(x);
                } else if constexpr (std::is_same_v<T, GgufArray>) {
                    put<uint32_t>(static_cast<uint32_t>(x.elem_type));
                    put<uint64_t>(x.items.size());
                    for (const auto& item : x.items) {
                        if (item.type() != x.elem_type)
                            throw std::invalid_argument(fmt::format("array of {} holds a {} value",
                                                                    gguf_value_type_name(x.elem_type),
                                                                    gguf_value_type_name(item.type())));
                        put_value(item);
                    }
                } else if constexpr (std::is_same_v<T, bool>) {
                    put<int8_t>(x ? 1 : 0);
                } else {
                    put<T>(x);
                }
            },
            v.v);
    }
    void pad_to(uint64_t alignment) {
        static const uint8_t zeros[256] = {};
        uint64_t n = align_up(written_, alignment) - written_;
        while (n > 0) {
            size_t k = std::min<uint64_t>(n, sizeof(zeros));
            sink_(zeros, k);
            written_ += k;
            n -= k;
        }
    }
    void put_bytes(const void* p, size_t n) {
        sink_(p, n);
        written_ += n;
    }

private:
    std::function<void(const void*, size_t)>& sink_;
    uint64_t written_ = 0;
};

uint64_t tensor_nbytes(GgmlType type, const std::vector<int64_t>& ne) {
    if (ne.empty() || ne.size() > 4) throw std::invalid_argument("a tensor has 1 to 4 dimensions");
    uint64_t rows = 1;
    for (size_t i = 1; i < ne.size(); ++i) rows *= static_cast<uint64_t>(ne[i]);
    return ggml_row_bytes(type, ne[0]) * rows;
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw std::invalid_argument("GGUF alignment must be a power of two");
    if (alignment != 32) set("general.alignment", GgufValue(alignment));
}

void GgufWriter::set(const std::string& key, GgufValue value) {
    if (key.empty()) throw std::invalid_argument("GGUF metadata keys must not be empty");
    for (auto& kv : kv_)
        if (kv.first == key) {
            kv.second = std::move(value);
            return;
        }
    kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                            std::vector<uint8_t> data) {
    uint64_t nbytes = tensor_nbytes(type, ne);
    if (data.size() != nbytes)
        throw std::invalid_argument(fmt::format("tensor '{}': {} bytes given, its shape and type need {}", name,
                                                data.size(), nbytes));
    tensors_.push_back({name, type, std::move(ne), nbytes, std::move(data), nullptr, false});
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Fill fill) {
    uint64_t nbytes = tensor_nbytes(type, ne);
    tensors_.push_back({name, type, std::move(ne), nbytes, {}, std::move(fill), false});
}

void GgufWriter::add_tensor_info(const std::string& name, GgmlType type, std::vector<int64_t> ne) {
    uint64_t nbytes = tensor_nbytes(type, ne);
    tensors_.push_back({name, type, std::move(ne), nbytes, {}, nullptr, true});
}

void GgufWriter::write_to(std::function<void(const void*, size_t)> sink) const {
    bool header_only = !tensors_.empty();
    for (const auto& t : tensors_) header_only = header_only && t.info_only;
    for (const auto& t : tensors_)
        if (t.info_only && !header_only)
            throw std::invalid_argument(fmt::format("tensor '{}' has no data but others do", t.name));

    Encoder e(sink);
    e.put_bytes("GGUF", 4);
    e.put<uint32_t>(3);
    e.put<int64_t>(static_cast<int64_t>(tensors_.size()));
    bool add_header_only_key = header_only;
    for (const auto& kv : kv_)
        if (kv.first == "moeserve.header_only") add_header_only_key = false;
    e.put<int64_t>(static_cast<int64_t>(kv_.size() + (add_header_only_key ? 1 : 0)));
    for (const auto& [key, value] : kv_) {
        e.put_string(key);
        e.put<uint32_t>(static_cast<uint32_t>(value.type()));
        e.put_value(value);
    }
    if (add_header_only_key) {
        e.put_string("moeserve.header_only");
        e.put<uint32_t>(static_cast<uint32_t>(GgufValueType::BOOL));
        e.put<int8_t>(1);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        e.put_string(t.name);
        e.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
        for (int64_t n : t.ne) e.put<int64_t>(n);
        e.put<uint32_t>(static_cast<uint32_t>(t.type));
        e.put<uint64_t>(offset);
        offset += align_up(t.nbytes, alignment_);
    }
    if (tensors_.empty()) return;
    e.pad_to(alignment_);
    if (header_only) return;
    std::vector<uint8_t> scratch;
    for (const auto& t : tensors_) {
        if (t.fill) {
            scratch.assign(t.nbytes, 0);
            t.fill(std::span<uint8_t>(scratch));
            e.put_bytes(scratch.data(), scratch.size());
        } else {
            e.put_bytes(t.data.data(), t.data.size());
        }
        e.pad_to(alignment_);
    }
}

void GgufWriter::write(const std::string& path) const {
    std::string tmp = path + ".partial";
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
    if (!f) throw std::runtime_error(fmt::format("{}: cannot create: {}", tmp, std::strerror(errno)));
    try {
        write_to([&](const void* p, size_t n) {
            if (n && std::fwrite(p, 1, n, f.get()) != n)
                throw std::runtime_error(fmt::format("{}: write failed: {}", tmp, std::strerror(errno)));
        });
        if (std::fclose(f.release()) != 0)
            throw std::runtime_error(fmt::format("{}: write failed: {}", tmp, std::strerror(errno)));
    } catch (...) {
        f.reset();
        std::remove(tmp.c_str());
        throw;
    }
    // Written under a temporary name so an interrupted write never leaves a
    // file that looks complete.
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error(fmt::format("{}: cannot rename to {}: {}", tmp, path, std::strerror(errno)));
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    std::vector<uint8_t> out;
    write_to([&](const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        out.insert(out.end(), b, b + n);
    });
    return out;
}

}  // namespace moeserve
