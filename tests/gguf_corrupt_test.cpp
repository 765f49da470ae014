// The GGUF reader never trusts the file: every corrupt image gives one
// GgufError naming the file, an offset and the problem — no crash, no hang,
// no unbounded allocation.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"

namespace moeserve {
namespace {

// Builds GGUF images field by field so tests can write impossible values.
struct Image {
    std::vector<uint8_t> b;
    template <typename T>
    size_t put(T x) {
        size_t at = b.size();
        b.resize(at + sizeof(T));
        std::memcpy(b.data() + at, &x, sizeof(T));
        return at;
    }
    size_t put_str(const std::string& s) {
        size_t at = put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return at;
    }
    template <typename T>
    void patch(size_t at, T x) {
        std::memcpy(b.data() + at, &x, sizeof(T));
    }
    void pad(size_t alignment) {
        while (b.size() % alignment) b.push_back(0);
    }
};

// Offsets of the interesting fields of the reference image below.
struct Layout {
    size_t version, n_tensors, n_kv, key_len, value_type, str_len, arr_type, arr_count;
    size_t t0_name_len, t0_ndims, t0_ne0, t0_ne1, t0_type, t0_offset;
    size_t t1_name_len, t1_offset, data_start;
};

// A valid file: 2 metadata keys (a string, an int32 array), 2 tensors.
Image reference_image(Layout* l) {
    Image im;
    im.b = {'G', 'G', 'U', 'F'};
    l->version = im.put<uint32_t>(3);
    l->n_tensors = im.put<int64_t>(2);
    l->n_kv = im.put<int64_t>(2);
    l->key_len = im.put_str("general.architecture");
    l->value_type = im.put<uint32_t>(8);
    l->str_len = im.put_str("qwen3moe");
    im.put_str("x.list");
    im.put<uint32_t>(9);
    l->arr_type = im.put<uint32_t>(5);
    l->arr_count = im.put<uint64_t>(3);
    for (int32_t v : {1, 2, 3}) im.put<int32_t>(v);
    // tensor 0: f32 [8, 2] at 0 (64 bytes)
    l->t0_name_len = im.put_str("w0");
    l->t0_ndims = im.put<uint32_t>(2);
    l->t0_ne0 = im.put<int64_t>(8);
    l->t0_ne1 = im.put<int64_t>(2);
    l->t0_type = im.put<uint32_t>(0);
    l->t0_offset = im.put<uint64_t>(0);
    // tensor 1: q8_0 [32] at 64 (34 bytes)
    l->t1_name_len = im.put_str("w1");
    im.put<uint32_t>(1);
    im.put<int64_t>(32);
    im.put<uint32_t>(8);
    l->t1_offset = im.put<uint64_t>(64);
    im.pad(32);
    l->data_start = im.b.size();
    for (int i = 0; i < 64 + 34; ++i) im.b.push_back(static_cast<uint8_t>(i));
    im.pad(32);
    return im;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
    try {
        GgufFile::parse(bytes, "bad.gguf");
    } catch (const GgufError& e) {
        return e.what();
    }
    return "";
}

void expect_error(const Image& im, const std::string& fragment) {
    std::string e = error_of(im.b);
    ASSERT_FALSE(e.empty()) << "accepted a corrupt file; expected: " << fragment;
    EXPECT_EQ(e.rfind("bad.gguf: ", 0), 0u) << e;
    EXPECT_NE(e.find(fragment), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
}

TEST(GgufCorrupt, reference_image_is_valid) {
    Layout l;
    Image im = reference_image(&l);
    GgufFile f = GgufFile::parse(im.b);
    EXPECT_EQ(f.tensors().size(), 2u);
    EXPECT_EQ(f.data_offset(), l.data_start);
    EXPECT_EQ(f.tensor_data(f.tensors()[1])[0], 64);
}

TEST(GgufCorrupt, every_truncation_fails_cleanly) {
    Layout l;
    Image im = reference_image(&l);
    // The last tensor's data ends at data_start + 98; every shorter prefix is broken.
    for (size_t n = 0; n < l.data_start + 98; ++n) {
        std::vector<uint8_t> cut(im.b.begin(), im.b.begin() + n);
        std::string e = error_of(cut);
        EXPECT_FALSE(e.empty()) << "prefix of " << n << " bytes accepted";
        EXPECT_EQ(e.rfind("bad.gguf: ", 0), 0u) << e;
    }
}

TEST(GgufCorrupt, bad_magic) {
    Layout l;
    Image im = reference_image(&l);
    im.b[0] = 'X';
    expect_error(im, "offset 0: not a GGUF file (bad magic)");
}

TEST(GgufCorrupt, unsupported_versions) {
    Layout l;
    Image im = reference_image(&l);
    im.patch<uint32_t>(l.version, 1);
    expect_error(im, "unsupported GGUF version 1");
    im.patch<uint32_t>(l.version, 4);
    expect_error(im, "unsupported GGUF version 4");
    im.patch<uint32_t>(l.version, 0x03000000);
    expect_error(im, "big-endian");
}

TEST(GgufCorrupt, absurd_counts_are_refused_before_allocating) {
    Layout l;
    Image im = reference_image(&l);
    im.patch<int64_t>(l.n_tensors, int64_t{1} << 60);
    expect_error(im, "tensor count");
    im = reference_image(&l);
    im.patch<int64_t>(l.n_tensors, -1);
    expect_error(im, "tensor count -1");
    im = reference_image(&l);
    im.patch<int64_t>(l.n_kv, int64_t{1} << 40);
    expect_error(im, "metadata count");
    im = reference_image(&l);
    im.patch<uint64_t>(l.arr_count, uint64_t{1} << 29);
    expect_error(im, "cannot fit");
    im.patch<uint64_t>(l.arr_count, ~uint64_t{0});
    expect_error(im, "over the 2^30 limit");
}

TEST(GgufCorrupt, string_lengths_past_the_end) {
    Layout l;
    Image im = reference_image(&l);
    im.patch<uint64_t>(l.key_len, 100000);
    expect_error(im, "metadata key has length 100000 but only");
    im = reference_image(&l);
    im.patch<uint64_t>(l.str_len, ~uint64_t{0});
    expect_error(im, "over the 1 GiB limit");
    im = reference_image(&l);
    im.patch<uint64_t>(l.t0_name_len, 5000);
    expect_error(im, "tensor name has length 5000");
}

TEST(GgufCorrupt, unknown_value_and_tensor_types) {
    Layout l;
    Image im = reference_image(&l);
    im.patch<uint32_t>(l.value_type, 13);
    expect_error(im, "unknown value type 13");
    im = reference_image(&l);
    im.patch<uint32_t>(l.arr_type, 77);
    expect_error(im, "array element type has unknown value type 77");
    for (uint32_t bad : {4u, 31u, 36u, 43u, 1000u}) {
        im = reference_image(&l);
        im.patch<uint32_t>(l.t0_type, bad);
        expect_error(im, "tensor 'w0' has unknown type id " + std::to_string(bad));
    }
}

TEST(GgufCorrupt, bad_tensor_shapes) {
    Layout l;
    Image im = reference_image(&l);
    im.patch<uint32_t>(l.t0_ndims, 0);
    expect_error(im, "tensor 'w0' has 0 dimensions");
    im.patch<uint32_t>(l.t0_ndims, 5);
    expect_error(im, "tensor 'w0' has 5 dimensions");
    im = reference_image(&l);
    im.patch<int64_t>(l.t0_ne1, -2);
    expect_error(im, "negative dimension");
    im = reference_image(&l);
    im.patch<int64_t>(l.t0_ne0, int64_t{1} << 40);
    im.patch<int64_t>(l.t0_ne1, int64_t{1} << 40);
    expect_error(im, "overflows the element count");
    im = reference_image(&l);
    im.patch<uint32_t>(l.t0_type, 8);  // q8_0 needs rows of 32
    expect_error(im, "row length 8 is not a multiple of the block size 32");
}

TEST(GgufCorrupt, tensor_offsets_misaligned_outside_or_overlapping) {
    Layout l;
    Image im = reference_image(&l);
    im.patch<uint64_t>(l.t1_offset, 65);
    expect_error(im, "data offset 65 is not a multiple of the alignment 32");
    im.patch<uint64_t>(l.t1_offset, 1 << 20);
    expect_error(im, "lies past the end of the file");
    im.patch<uint64_t>(l.t1_offset, ~uint64_t{0} - 31);
    expect_error(im, "lies past the end of the file");
    im.patch<uint64_t>(l.t1_offset, 32);
    expect_error(im, "tensor 'w1' data overlaps tensor 'w0'");
}

TEST(GgufCorrupt, duplicate_names_and_keys) {
    Layout l;
    Image im = reference_image(&l);
    im.b[l.t1_name_len + 9] = '0';  // "w1" -> "w0"
    expect_error(im, "duplicate tensor name 'w0'");
    GgufWriter w;
    w.set("k", uint32_t{1});
    std::vector<uint8_t> bytes = w.to_bytes();
    // Same key twice: append a second copy of the pair and bump the count.
    size_t pair_start = 4 + 4 + 8 + 8;
    std::vector<uint8_t> pair(bytes.begin() + pair_start, bytes.end());
    bytes.insert(bytes.end(), pair.begin(), pair.end());
    int64_t two = 2;
    std::memcpy(bytes.data() + 16, &two, 8);
    std::string e = error_of(bytes);
    EXPECT_NE(e.find("duplicate metadata key 'k'"), std::string::npos) << e;
}

TEST(GgufCorrupt, alignment_key_must_be_a_u32_power_of_two) {
    GgufWriter w;
    w.set("general.alignment", int32_t{32});
    EXPECT_NE(error_of(w.to_bytes()).find("general.alignment has type int32, expected uint32"), std::string::npos);
    w.set("general.alignment", uint32_t{48});
    EXPECT_NE(error_of(w.to_bytes()).find("general.alignment 48 is not a power of two"), std::string::npos);
}

TEST(GgufCorrupt, deeply_nested_arrays_are_bounded) {
    Image im;
    im.b = {'G', 'G', 'U', 'F'};
    im.put<uint32_t>(3);
    im.put<int64_t>(0);
    im.put<int64_t>(1);
    im.put_str("deep");
    im.put<uint32_t>(9);
    for (int i = 0; i < 1000; ++i) {
        im.put<uint32_t>(9);
        im.put<uint64_t>(1);
    }
    expect_error(im, "nested deeper than");
}

TEST(GgufCorrupt, missing_file_names_the_path) {
    try {
        GgufFile::open("/nonexistent/model.gguf");
        FAIL();
    } catch (const GgufError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf: cannot open"), std::string::npos) << e.what();
    }
}

TEST(GgufCorrupt, random_byte_flips_never_crash) {
    Layout l;
    Image base = reference_image(&l);
    uint64_t state = 12345;
    auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull; };
    int rejected = 0;
    for (int iter = 0; iter < 5000; ++iter) {
        std::vector<uint8_t> b = base.b;
        int flips = 1 + next() % 4;
        for (int k = 0; k < flips; ++k) b[(next() >> 16) % l.data_start] ^= static_cast<uint8_t>(1 + (next() >> 40) % 255);
        try {
            GgufFile f = GgufFile::parse(b);
            for (const auto& t : f.tensors()) ASSERT_LE(f.data_offset() + t.offset + t.nbytes, b.size());
        } catch (const GgufError&) {
            ++rejected;
        }
    }
    EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// Found by the fuzzer: zero-byte tensors and a data section that would start
// past the end of the file.
TEST(GgufCorrupt, data_section_past_the_end_is_refused_even_for_empty_tensors) {
    Image im;
    im.b = {'G', 'G', 'U', 'F'};
    im.put<uint32_t>(3);
    im.put<int64_t>(1);
    im.put<int64_t>(0);
    im.put_str("w0");
    im.put<uint32_t>(2);
    im.put<int64_t>(0);
    im.put<int64_t>(2);
    im.put<uint32_t>(0);
    im.put<uint64_t>(0);
    // no padding, no data: the data section would start at the next multiple of 32
    expect_error(im, "the data section starts past the end of the file");
}

}  // namespace
}  // namespace moeserve
