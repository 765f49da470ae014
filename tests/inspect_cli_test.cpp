// `moeserve inspect` on real fixture files, the demo model and broken input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "gguf/gguf_file.h"
#include "run_command.h"

namespace moeserve {
namespace {

using test::run_moeserve;

std::vector<std::filesystem::path> fixture_ggufs() {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(test::fixtures_dir()))
        if (e.path().extension() == ".gguf") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

TEST(GgufFixtures, every_fixture_gguf_parses_and_tensor_data_lies_in_the_file) {
    MOESERVE_REQUIRE_FIXTURES();
    auto files = fixture_ggufs();
    ASSERT_GE(files.size(), 20u);
    for (const auto& p : files) {
        SCOPED_TRACE(p.string());
        GgufFile f = GgufFile::open(p.string());
        EXPECT_GE(f.version(), 2u);
        EXPECT_TRUE(f.has("tokenizer.ggml.model"));
        for (const auto& t : f.tensors()) {
            EXPECT_LE(f.data_offset() + t.offset + t.nbytes, f.file_size()) << t.name;
            EXPECT_EQ(t.nbytes, ggml_row_bytes(t.type, t.ne[0]) * t.ne[1] * t.ne[2] * t.ne[3]);
        }
    }
}

TEST(GgufFixtures, qwen3moe_q4_k_m_has_the_expected_layout) {
    MOESERVE_REQUIRE_FIXTURES();
    GgufFile f = GgufFile::open(test::fixture("models/qwen3moe-tiny-s1-q4_k_m.gguf").string());
    EXPECT_EQ(f.architecture(), "qwen3moe");
    EXPECT_EQ(f.get_u32("qwen3moe.block_count"), 2u);
    EXPECT_EQ(f.get_u32("general.file_type"), 15u);
    EXPECT_EQ(f.tensors().size(), 3u + 2u * 12u);
    const GgufTensorInfo* up = f.find_tensor("blk.0.ffn_up_exps.weight");
    ASSERT_NE(up, nullptr);
    EXPECT_EQ(up->n_dims, 3);
    EXPECT_EQ(up->ne[0], 256);
    EXPECT_EQ(up->ne[2], 8);
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 685u);
}

TEST(InspectCli, json_output_lists_metadata_and_tensors_of_a_fixture) {
    MOESERVE_REQUIRE_FIXTURES();
    auto path = test::fixture("models/glm47flash-tiny-s1-iq4_xs.gguf").string();
    auto r = run_moeserve({"inspect", path, "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(j["metadata"]["general.architecture"], "deepseek2");
    EXPECT_EQ(j["version"], 3);
    ASSERT_EQ(j["tensors"].size(), f.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const auto& t = f.tensors()[i];
        EXPECT_EQ(j["tensors"][i]["name"], t.name);
        EXPECT_EQ(j["tensors"][i]["type"], std::string(ggml_type_name(t.type)));
        EXPECT_EQ(j["tensors"][i]["offset"], t.offset);
        EXPECT_EQ(j["tensors"][i]["bytes"], t.nbytes);
        EXPECT_EQ(j["tensors"][i]["shape"].size(), static_cast<size_t>(t.n_dims));
    }
    // Long arrays are shortened: 16 items and a note of how many more.
    const auto& tokens = j["metadata"]["tokenizer.ggml.tokens"];
    ASSERT_EQ(tokens.size(), 17u);
    size_t n_vocab = f.get_string_array("tokenizer.ggml.tokens").size();
    EXPECT_EQ(tokens[16], "... " + std::to_string(n_vocab - 16) + " more");
}

TEST(InspectCli, text_output_shows_architecture_hyperparameters_and_type_totals) {
    MOESERVE_REQUIRE_FIXTURES();
    auto r = run_moeserve({"inspect", test::fixture("models/nemotron-h-moe-tiny-s1-q4_k_m.gguf").string()});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("architecture: nemotron_h_moe"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("file type:    Q4_K - Medium"), std::string::npos);
    EXPECT_NE(r.out.find("hyperparameters:"), std::string::npos);
    EXPECT_NE(r.out.find("ssm.conv_kernel"), std::string::npos);
    EXPECT_NE(r.out.find("totals per type:"), std::string::npos);
    EXPECT_NE(r.out.find("bits per weight"), std::string::npos);
}

TEST(InspectCli, demo_model_is_written_and_inspectable) {
    auto path = (test::scratch_dir() / "demo.gguf").string();
    ASSERT_EQ(run_moeserve({"demo", "-o", path}).status, 0);
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.architecture(), "qwen3moe");
    EXPECT_EQ(f.tensors().size(), 3u + 2u * 12u);
    auto r = run_moeserve({"inspect", path});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("architecture: qwen3moe"), std::string::npos);
}

TEST(InspectCli, refused_files_give_one_line_on_stderr_and_nonzero_status) {
    auto dir = test::scratch_dir();
    std::ofstream(dir / "junk.gguf") << "this is not a model";
    auto r = run_moeserve({"inspect", (dir / "junk.gguf").string()});
    EXPECT_NE(r.status, 0);
    EXPECT_TRUE(r.out.empty());
    EXPECT_EQ(r.err, "moeserve inspect: error: " + (dir / "junk.gguf").string() + ": offset 0: not a GGUF file (bad magic)\n");
    r = run_moeserve({"inspect", (dir / "missing.gguf").string()});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("cannot open"), std::string::npos);
    r = run_moeserve({"inspect", "--bogus"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown option --bogus"), std::string::npos);
}

}  // namespace
}  // namespace moeserve
