// GGUF writer → reader round trips: every value type, nested arrays,
// tensors of every type, header-only files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"

namespace moeserve {
namespace {

std::vector<uint8_t> pattern_bytes(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 131 + seed);
    return v;
}

GgufWriter writer_with_every_value_type() {
    GgufWriter w;
    w.set("general.architecture", "qwen3moe");
    w.set("t.u8", uint8_t{200});
    w.set("t.i8", int8_t{-100});
    w.set("t.u16", uint16_t{60000});
    w.set("t.i16", int16_t{-30000});
    w.set("t.u32", uint32_t{4000000000u});
    w.set("t.i32", int32_t{-2000000000});
    w.set("t.f32", 1.5f);
    w.set("t.bool", true);
    w.set("t.str", std::string("héllo\nworld"));
    w.set("t.u64", uint64_t{18000000000000000000ull});
    w.set("t.i64", int64_t{-9000000000000000000ll});
    w.set("t.f64", 2.25);
    w.set("t.strs", gguf_string_array({"a", "", "ccc"}));
    w.set("t.i32s", gguf_array<int32_t>(GgufValueType::INT32, {1, -2, 3}));
    w.set("t.f32s", gguf_array<float>(GgufValueType::FLOAT32, {0.5f, -1.0f}));
    GgufArray inner1{GgufValueType::UINT8, {uint8_t{1}, uint8_t{2}}};
    GgufArray inner2{GgufValueType::UINT8, {}};
    w.set("t.nested", GgufValue(GgufArray{GgufValueType::ARRAY, {GgufValue(inner1), GgufValue(inner2)}}));
    return w;
}

TEST(GgufRoundTrip, every_metadata_value_type_reads_back_equal) {
    GgufWriter w = writer_with_every_value_type();
    GgufFile f = GgufFile::parse(w.to_bytes(), "mem.gguf");
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.architecture(), "qwen3moe");
    EXPECT_EQ(std::get<uint8_t>(f.find("t.u8")->v), 200);
    EXPECT_EQ(std::get<int8_t>(f.find("t.i8")->v), -100);
    EXPECT_EQ(std::get<uint16_t>(f.find("t.u16")->v), 60000);
    EXPECT_EQ(std::get<int16_t>(f.find("t.i16")->v), -30000);
    EXPECT_EQ(f.get_u32("t.u32"), 4000000000u);
    EXPECT_EQ(f.get_i64("t.i32"), -2000000000);
    EXPECT_EQ(f.get_f32("t.f32"), 1.5f);
    EXPECT_TRUE(f.get_bool("t.bool"));
    EXPECT_EQ(f.get_string("t.str"), "héllo\nworld");
    EXPECT_EQ(f.find("t.u64")->as_uint(), 18000000000000000000ull);
    EXPECT_EQ(f.get_i64("t.i64"), -9000000000000000000ll);
    EXPECT_EQ(std::get<double>(f.find("t.f64")->v), 2.25);
    EXPECT_EQ(f.get_string_array("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f.get_int_array("t.i32s"), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(f.get_f32_array("t.f32s"), (std::vector<float>{0.5f, -1.0f}));
    const GgufArray& nested = f.find("t.nested")->as_array();
    ASSERT_EQ(nested.elem_type, GgufValueType::ARRAY);
    ASSERT_EQ(nested.items.size(), 2u);
    EXPECT_EQ(nested.items[0].as_array().items.size(), 2u);
    EXPECT_EQ(std::get<uint8_t>(nested.items[0].as_array().items[1].v), 2);
    EXPECT_TRUE(nested.items[1].as_array().items.empty());
    // Keys keep the order they were set in.
    ASSERT_EQ(f.metadata().size(), 17u);
    EXPECT_EQ(f.metadata()[0].key, "general.architecture");
    EXPECT_EQ(f.metadata()[16].key, "t.nested");
}

TEST(GgufRoundTrip, rewriting_a_read_file_gives_identical_bytes) {
    GgufWriter w = writer_with_every_value_type();
    w.add_tensor("a", GgmlType::Q4_K, {512, 3}, pattern_bytes(2 * 144 * 3, 1));
    w.add_tensor("b", GgmlType::F32, {5}, pattern_bytes(20, 2));
    std::vector<uint8_t> bytes = w.to_bytes();
    GgufFile f = GgufFile::parse(bytes);

    GgufWriter again;
    for (const auto& kv : f.metadata()) again.set(kv.key, kv.value);
    for (const auto& t : f.tensors()) {
        const uint8_t* p = f.tensor_data(t);
        again.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims),
                         std::vector<uint8_t>(p, p + t.nbytes));
    }
    EXPECT_EQ(again.to_bytes(), bytes);
}

TEST(GgufRoundTrip, tensors_of_every_dequantizable_type_keep_shape_offset_and_bytes) {
    GgufWriter w(64);
    std::vector<std::pair<std::string, GgmlType>> types;
    for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
        const GgmlTypeInfo* info = ggml_type_info(id);
        if (!info) continue;
        types.emplace_back(std::string(info->name), static_cast<GgmlType>(id));
    }
    uint8_t seed = 0;
    for (const auto& [name, type] : types) {
        const GgmlTypeInfo& info = ggml_type_info(type);
        std::vector<int64_t> ne = {info.block_size * 2, 3, 2};
        w.add_tensor("t." + name, type, ne, pattern_bytes(ggml_row_bytes(type, ne[0]) * 6, seed++));
    }
    auto path = test::scratch_dir() / "types.gguf";
    w.write(path.string());
    GgufFile f = GgufFile::open(path.string());
    EXPECT_EQ(f.alignment(), 64u);
    ASSERT_EQ(f.tensors().size(), types.size());
    seed = 0;
    for (size_t i = 0; i < types.size(); ++i) {
        const GgufTensorInfo& t = f.tensors()[i];
        EXPECT_EQ(t.name, "t." + types[i].first);
        EXPECT_EQ(t.type, types[i].second);
        EXPECT_EQ(t.n_dims, 3);
        EXPECT_EQ(t.ne[0], ggml_type_info(t.type).block_size * 2);
        EXPECT_EQ(t.ne[2], 2);
        EXPECT_EQ(t.offset % 64, 0u);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensor_data(t)) % 64, 0u);
        std::vector<uint8_t> expect = pattern_bytes(t.nbytes, seed++);
        EXPECT_EQ(std::memcmp(f.tensor_data(t), expect.data(), t.nbytes), 0) << t.name;
        EXPECT_EQ(f.find_tensor(t.name), &t);
    }
    EXPECT_EQ(f.find_tensor("missing"), nullptr);
}

TEST(GgufRoundTrip, generated_tensor_data_is_written_through_the_fill_callback) {
    GgufWriter w;
    w.add_tensor("gen", GgmlType::F16, {4, 2}, [](std::span<uint8_t> bytes) {
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
    });
    GgufFile f = GgufFile::parse(w.to_bytes());
    const uint8_t* p = f.tensor_data(*f.find_tensor("gen"));
    for (int i = 0; i < 16; ++i) EXPECT_EQ(p[i], i);
}

TEST(GgufRoundTrip, header_only_file_has_tensor_infos_but_refuses_data_access) {
    GgufWriter w;
    w.set("general.architecture", "qwen3moe");
    w.add_tensor_info("blk.0.ffn_up_exps.weight", GgmlType::IQ4_XS, {2048, 768, 128});
    std::vector<uint8_t> bytes = w.to_bytes();
    EXPECT_LT(bytes.size(), 4096u);  // no 100 MB of weights
    GgufFile f = GgufFile::parse(bytes, "big.gguf");
    EXPECT_TRUE(f.header_only());
    const GgufTensorInfo* t = f.find_tensor("blk.0.ffn_up_exps.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->nbytes, 2048ull / 256 * 136 * 768 * 128);
    try {
        f.tensor_data(*t);
        FAIL() << "expected an error";
    } catch (const GgufError& e) {
        EXPECT_NE(std::string(e.what()).find("header-only"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("big.gguf"), std::string::npos) << e.what();
    }
}

TEST(GgufRoundTrip, typed_getters_name_the_key_and_the_type_on_mismatch) {
    GgufWriter w;
    w.set("a.string", "x");
    w.set("a.neg", int32_t{-1});
    GgufFile f = GgufFile::parse(w.to_bytes(), "m.gguf");
    auto message = [&](auto&& fn) {
        try {
            fn();
        } catch (const GgufError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(message([&] { f.get_u32("a.string"); }), "m.gguf: metadata key 'a.string': value has type string, expected an integer");
    EXPECT_EQ(message([&] { f.get_u32("a.neg"); }), "m.gguf: metadata key 'a.neg': value -1 is negative, expected a non-negative integer");
    EXPECT_EQ(message([&] { f.get_string("nope"); }), "m.gguf: missing metadata key 'nope'");
    EXPECT_EQ(f.find_u32("nope"), std::nullopt);
    EXPECT_THROW(f.find_u32("a.string"), GgufError);
}

TEST(GgufRoundTrip, per_layer_values_accept_a_scalar_or_an_array_of_n_layer) {
    GgufWriter w;
    w.set("x.scalar", uint32_t{4});
    w.set("x.array", gguf_array<int32_t>(GgufValueType::INT32, {0, 2, 0}));
    GgufFile f = GgufFile::parse(w.to_bytes());
    EXPECT_EQ(f.get_u32_per_layer("x.scalar", 3), (std::vector<uint32_t>{4, 4, 4}));
    EXPECT_EQ(f.get_u32_per_layer("x.array", 3), (std::vector<uint32_t>{0, 2, 0}));
    EXPECT_THROW(f.get_u32_per_layer("x.array", 4), GgufError);
}

}  // namespace
}  // namespace moeserve
