#include "gguf/gguf_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "gguf/mapped_file.h"

namespace moeserve {
namespace {

constexpr uint64_t kMaxStringBytes = 1ull << 30;  // llama.cpp's limit
constexpr uint64_t kMaxArrayItems = 1ull << 30;   // llama.cpp's limit
constexpr int kMaxArrayDepth = 8;                 // nested arrays: bound the recursion
constexpr size_t kMaxTensorName = 63;             // GGML_MAX_NAME - 1

// Smallest encoded size of one value of a type, so that a declared count can
// be checked against the bytes left before anything is allocated.
uint64_t min_encoded_size(GgufValueType t) {
    switch (t) {
        case GgufValueType::UINT8:
        case GgufValueType::INT8:
        case GgufValueType::BOOL:
            return 1;
        case GgufValueType::UINT16:
        case GgufValueType::INT16:
            return 2;
        case GgufValueType::UINT32:
        case GgufValueType::INT32:
        case GgufValueType::FLOAT32:
            return 4;
        case GgufValueType::STRING:
            return 8;
        case GgufValueType::ARRAY:
            return 12;
        default:
            return 8;
    }
}

// Reads little-endian fields from the mapped header, checking every length
// against the end of the file. Errors name the file and the offset.
class Cursor {
  public:
    Cursor(const std::string& path, const uint8_t* data, uint64_t size) : path_(path), data_(data), size_(size) {}

    uint64_t offset() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(uint64_t at, const std::string& what) const {
        throw GgufError(fmt::format("{}: offset {}: {}", path_, at, what));
    }

    template <typename T>
    T read(const char* what) {
        if (remaining() < sizeof(T))
            fail(pos_, fmt::format("file truncated while reading {} ({} bytes needed, {} left)", what, sizeof(T),
                                   remaining()));
        T x;
        std::memcpy(&x, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return x;
    }

    std::string read_string(const char* what) {
        uint64_t at = pos_;
        uint64_t len = read<uint64_t>(what);
        if (len > kMaxStringBytes) fail(at, fmt::format("{} has length {}, over the 1 GiB limit", what, len));
        if (len > remaining())
            fail(at, fmt::format("{} has length {} but only {} bytes are left in the file", what, len, remaining()));
        std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
        pos_ += len;
        return s;
    }

    GgufValueType read_type(const char* what) {
        uint64_t at = pos_;
        uint32_t t = read<uint32_t>(what);
        if (t >= kGgufValueTypeCount) fail(at, fmt::format("{} has unknown value type {}", what, t));
        return static_cast<GgufValueType>(t);
    }

    GgufValue read_value(GgufValueType type, int depth) {
        switch (type) {
            case GgufValueType::UINT8:
                return read<uint8_t>("uint8 value");
            case GgufValueType::INT8:
                return read<int8_t>("int8 value");
            case GgufValueType::UINT16:
                return read<uint16_t>("uint16 value");
            case GgufValueType::INT16:
                return read<int16_t>("int16 value");
            case GgufValueType::UINT32:
                return read<uint32_t>("uint32 value");
            case GgufValueType::INT32:
                return read<int32_t>("int32 value");
            case GgufValueType::FLOAT32:
                return read<float>("float32 value");
            case GgufValueType::BOOL:
                return read<int8_t>("bool value") != 0;
            case GgufValueType::STRING:
                return read_string("string value");
            case GgufValueType::UINT64:
                return read<uint64_t>("uint64 value");
            case GgufValueType::INT64:
                return read<int64_t>("int64 value");
            case GgufValueType::FLOAT64:
                return read<double>("float64 value");
            case GgufValueType::ARRAY:
                return read_array(depth);
        }
        fail(pos_, "unknown value type");
    }

  private:
    GgufValue read_array(int depth) {
        uint64_t at = pos_;
        if (depth >= kMaxArrayDepth) fail(at, fmt::format("arrays nested deeper than {} levels", kMaxArrayDepth));
        GgufArray a;
        a.elem_type = read_type("array element type");
        uint64_t count = read<uint64_t>("array length");
        if (count > kMaxArrayItems) fail(at, fmt::format("array has {} elements, over the 2^30 limit", count));
        if (count > remaining() / min_encoded_size(a.elem_type))
            fail(at, fmt::format("array of {} {} values cannot fit in the {} bytes left in the file", count,
                                 gguf_value_type_name(a.elem_type), remaining()));
        a.items.reserve(count);
        for (uint64_t i = 0; i < count; ++i) a.items.push_back(read_value(a.elem_type, depth + 1));
        return a;
    }

    const std::string& path_;
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    return __builtin_mul_overflow(a, b, out);
}

uint64_t align_up(uint64_t x, uint64_t alignment) {
    return (x + alignment - 1) / alignment * alignment;
}

}  // namespace

std::string GgufTensorInfo::shape_string() const {
    std::string s = "[";
    for (int i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

GgufFile::GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
    return open(path, LoadMode::mmap);
}

GgufFile GgufFile::open(const std::string& path, LoadMode mode) {
    GgufFile f;
    f.path_ = path;
    try {
        f.map_ = std::make_unique<MappedFile>(MappedFile::load(path, mode));
    } catch (const std::runtime_error& e) {
        throw GgufError(e.what());
    }
    f.base_ = f.map_->data();
    f.size_ = f.map_->size();
    f.parse_header();
    return f;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
    GgufFile f;
    f.path_ = name;
    f.map_ = std::make_unique<MappedFile>(MappedFile::copy_of(bytes));
    f.base_ = f.map_->data();
    f.size_ = f.map_->size();
    f.parse_header();
    return f;
}

void GgufFile::parse_header() {
    Cursor c(path_, base_, size_);
    if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0) c.fail(0, "not a GGUF file (bad magic)");
    c.read<uint32_t>("magic");

    uint64_t at = c.offset();
    version_ = c.read<uint32_t>("version");
    if ((version_ & 0xFFFF) == 0)
        c.fail(at, fmt::format("unsupported GGUF version {:#x}: probably a big-endian file, which is not supported",
                               version_));
    if (version_ < 2 || version_ > 3)
        c.fail(at, fmt::format("unsupported GGUF version {} (moeserve reads versions 2 and 3)", version_));

    at = c.offset();
    int64_t n_tensors = c.read<int64_t>("tensor count");
    int64_t n_kv = c.read<int64_t>("metadata count");
    // Each key/value needs at least 13 bytes, each tensor info at least 29.
    if (n_tensors < 0 || static_cast<uint64_t>(n_tensors) > c.remaining() / 29)
        c.fail(at, fmt::format("tensor count {} is impossible for a file of {} bytes", n_tensors, size_));
    if (n_kv < 0 || static_cast<uint64_t>(n_kv) > c.remaining() / 13)
        c.fail(at + 8, fmt::format("metadata count {} is impossible for a file of {} bytes", n_kv, size_));

    kv_.reserve(n_kv);
    for (int64_t i = 0; i < n_kv; ++i) {
        at = c.offset();
        std::string key = c.read_string("metadata key");
        if (key.empty()) c.fail(at, fmt::format("metadata key {} is empty", i));
        if (kv_index_.count(key)) c.fail(at, fmt::format("duplicate metadata key '{}'", key));
        GgufValueType type = c.read_type("metadata value type");
        GgufValue value = c.read_value(type, 0);
        kv_index_.emplace(key, kv_.size());
        kv_.push_back({std::move(key), std::move(value)});
    }

    if (const GgufValue* a = find("general.alignment")) {
        if (a->type() != GgufValueType::UINT32)
            throw GgufError(fmt::format("{}: general.alignment has type {}, expected uint32", path_,
                                        gguf_value_type_name(a->type())));
        uint32_t v = std::get<uint32_t>(a->v);
        if (v == 0 || (v & (v - 1)) != 0)
            throw GgufError(fmt::format("{}: general.alignment {} is not a power of two", path_, v));
        alignment_ = v;
    }
    if (const GgufValue* h = find("moeserve.header_only"))
        header_only_ = h->type() == GgufValueType::BOOL && h->as_bool();

    tensors_.reserve(n_tensors);
    for (int64_t i = 0; i < n_tensors; ++i) {
        at = c.offset();
        GgufTensorInfo t;
        t.name = c.read_string("tensor name");
        if (t.name.empty()) c.fail(at, fmt::format("tensor {} has an empty name", i));
        if (t.name.size() > kMaxTensorName)
            c.fail(at,
                   fmt::format("tensor name '{}...' is longer than {} bytes", t.name.substr(0, 40), kMaxTensorName));
        if (tensor_index_.count(t.name)) c.fail(at, fmt::format("duplicate tensor name '{}'", t.name));

        uint64_t dims_at = c.offset();
        uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims < 1 || n_dims > 4)
            c.fail(dims_at, fmt::format("tensor '{}' has {} dimensions (1 to 4 allowed)", t.name, n_dims));
        t.n_dims = static_cast<int>(n_dims);
        uint64_t n_elements = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            int64_t ne = c.read<int64_t>("tensor dimension");
            if (ne < 0) c.fail(dims_at, fmt::format("tensor '{}' has negative dimension {}", t.name, ne));
            t.ne[d] = ne;
            if (mul_overflows(n_elements, static_cast<uint64_t>(ne), &n_elements) ||
                n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                c.fail(dims_at,
                       fmt::format("tensor '{}' shape {} overflows the element count", t.name, t.shape_string()));
        }

        uint64_t type_at = c.offset();
        uint32_t type_id = c.read<uint32_t>("tensor type");
        const GgmlTypeInfo* info = ggml_type_info(type_id);
        if (!info) c.fail(type_at, fmt::format("tensor '{}' has unknown type id {}", t.name, type_id));
        t.type = static_cast<GgmlType>(type_id);
        if (t.ne[0] % info->block_size != 0)
            c.fail(dims_at, fmt::format("tensor '{}' ({}) row length {} is not a multiple of the block size {}", t.name,
                                        info->name, t.ne[0], info->block_size));
        uint64_t rows = n_elements == 0 ? 0 : n_elements / static_cast<uint64_t>(t.ne[0]);
        uint64_t row_bytes = static_cast<uint64_t>(t.ne[0] / info->block_size) * info->type_size;
        if (mul_overflows(row_bytes, rows, &t.nbytes))
            c.fail(dims_at, fmt::format("tensor '{}' byte size overflows", t.name));

        uint64_t off_at = c.offset();
        t.offset = c.read<uint64_t>("tensor data offset");
        if (t.offset % alignment_ != 0)
            c.fail(off_at, fmt::format("tensor '{}' data offset {} is not a multiple of the alignment {}", t.name,
                                       t.offset, alignment_));
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    data_offset_ = n_tensors > 0 ? align_up(c.offset(), alignment_) : c.offset();
    if (header_only_) return;

    if (n_tensors > 0 && data_offset_ > size_)
        throw GgufError(
            fmt::format("{}: offset {}: the data section starts past the end of the file ({} bytes; the "
                        "file may be truncated)",
                        path_, data_offset_, size_));
    // Every tensor's bytes must lie inside the file and not overlap another's.
    uint64_t data_size = size_ - data_offset_;
    std::vector<const GgufTensorInfo*> by_offset;
    by_offset.reserve(tensors_.size());
    for (const auto& t : tensors_) {
        if (t.offset > data_size || t.nbytes > data_size - t.offset)
            throw GgufError(
                fmt::format("{}: offset {}: tensor '{}' data ({} bytes at data offset {}) lies past the end "
                            "of the file ({} bytes; the file may be truncated)",
                            path_, data_offset_ + std::min(t.offset, data_size), t.name, t.nbytes, t.offset, size_));
        by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const GgufTensorInfo* prev = by_offset[i - 1];
        if (prev->offset + prev->nbytes > by_offset[i]->offset)
            throw GgufError(fmt::format("{}: offset {}: tensor '{}' data overlaps tensor '{}'", path_,
                                        data_offset_ + by_offset[i]->offset, by_offset[i]->name, prev->name));
    }
}

const GgufValue* GgufFile::find(std::string_view key) const {
    auto it = kv_index_.find(std::string(key));
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

namespace {

template <typename F>
auto convert(const std::string& path, std::string_view key, const GgufValue& v, F&& f) -> decltype(f(v)) {
    try {
        return f(v);
    } catch (const GgufError&) {
        throw;
    } catch (const std::exception& e) {
        throw GgufError(fmt::format("{}: metadata key '{}': {}", path, key, e.what()));
    }
}

}  // namespace

#define MOESERVE_REQUIRED(key)          \
    const GgufValue* value = find(key); \
    if (!value) throw GgufError(fmt::format("{}: missing metadata key '{}'", path_, key));

std::string GgufFile::get_string(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) { return v.as_string(); });
}

uint32_t GgufFile::get_u32(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) {
        uint64_t x = v.as_uint();
        if (x > std::numeric_limits<uint32_t>::max())
            throw std::runtime_error(fmt::format("value {} does not fit in uint32", x));
        return static_cast<uint32_t>(x);
    });
}

int64_t GgufFile::get_i64(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) { return v.as_int(); });
}

float GgufFile::get_f32(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) { return static_cast<float>(v.as_double()); });
}

bool GgufFile::get_bool(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) { return v.as_bool(); });
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) {
        std::vector<std::string> out;
        const GgufArray& a = v.as_array();
        out.reserve(a.items.size());
        for (const auto& item : a.items) out.push_back(item.as_string());
        return out;
    });
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) {
        std::vector<int64_t> out;
        const GgufArray& a = v.as_array();
        out.reserve(a.items.size());
        for (const auto& item : a.items) out.push_back(item.as_int());
        return out;
    });
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
    MOESERVE_REQUIRED(key);
    return convert(path_, key, *value, [](const GgufValue& v) {
        std::vector<float> out;
        const GgufArray& a = v.as_array();
        out.reserve(a.items.size());
        for (const auto& item : a.items) out.push_back(static_cast<float>(item.as_double()));
        return out;
    });
}

#undef MOESERVE_REQUIRED

std::optional<std::string> GgufFile::find_string(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return get_string(key);
}

std::optional<uint32_t> GgufFile::find_u32(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return get_u32(key);
}

std::optional<float> GgufFile::find_f32(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return get_f32(key);
}

std::optional<bool> GgufFile::find_bool(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return get_bool(key);
}

std::vector<uint32_t> GgufFile::get_u32_per_layer(std::string_view key, size_t n_layer) const {
    const GgufValue* value = find(key);
    if (!value) throw GgufError(fmt::format("{}: missing metadata key '{}'", path_, key));
    if (value->type() != GgufValueType::ARRAY) return std::vector<uint32_t>(n_layer, get_u32(key));
    std::vector<int64_t> items = get_int_array(key);
    if (items.size() != n_layer)
        throw GgufError(fmt::format("{}: metadata key '{}' has {} values, expected one per layer ({})", path_, key,
                                    items.size(), n_layer));
    std::vector<uint32_t> out;
    for (int64_t x : items) {
        if (x < 0 || x > std::numeric_limits<uint32_t>::max())
            throw GgufError(fmt::format("{}: metadata key '{}' has out-of-range value {}", path_, key, x));
        out.push_back(static_cast<uint32_t>(x));
    }
    return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& t) const {
    if (header_only_)
        throw GgufError(
            fmt::format("{}: is a header-only file (moeserve.header_only = true, written by synth "
                        "--header-only): it has no weights for tensor '{}'",
                        path_, t.name));
    return base_ + data_offset_ + t.offset;
}

}  // namespace moeserve
