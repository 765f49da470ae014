// synth presets: the full-size presets have the real models' parameter
// counts; the tiny presets have exactly the tensor names, shapes and types
// of the llama.cpp fixture files in every weight mix; synth files load and
// run; the synth command's flags.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/engine.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "run_command.h"
#include "synth/presets.h"

namespace moeserve {
namespace {

std::string write_preset(const std::string& preset, FileMix mix, bool header_only) {
    const auto path = test::scratch_dir() / (preset + (header_only ? ".header" : "") + ".gguf");
    SynthSpec s = *synth_preset(preset, mix);
    s.header_only = header_only;
    write_synth_model(path.string(), s);
    return path.string();
}

int64_t param_count(const GgufFile& f) {
    int64_t n = 0;
    for (const auto& t : f.tensors()) n += t.n_elements();
    return n;
}

TEST(SynthPresets, full_size_presets_have_the_real_parameter_counts) {
    struct Row {
        const char* preset;
        double params;
        size_t tensors;
    };
    for (const Row& r : {Row{"qwen3-coder-30b-a3b", 30.5e9, 579}, Row{"nemotron-3-nano-30b-a3b", 31.6e9, 401},
                         Row{"glm-4.7-flash", 29.9e9, 3 + 13 + 46 * 18}}) {
        const GgufFile f = GgufFile::open(write_preset(r.preset, FileMix::Q4_K_M, true));
        EXPECT_TRUE(f.header_only());
        EXPECT_NEAR(param_count(f) / r.params, 1.0, 0.01) << r.preset << ": " << param_count(f);
        EXPECT_EQ(f.tensors().size(), r.tensors) << r.preset;
    }
}

// Names, shapes and types of every tensor, as in the fixture made by llama.cpp.
void expect_same_tensors(const GgufFile& ours, const GgufFile& ref) {
    std::map<std::string, const GgufTensorInfo*> by_name;
    for (const auto& t : ref.tensors()) by_name[t.name] = &t;
    EXPECT_EQ(ours.tensors().size(), ref.tensors().size()) << ref.path();
    for (const auto& t : ours.tensors()) {
        auto it = by_name.find(t.name);
        if (it == by_name.end()) {
            ADD_FAILURE() << ref.path() << " has no tensor " << t.name;
            continue;
        }
        EXPECT_EQ(t.shape_string(), it->second->shape_string()) << t.name;
        EXPECT_EQ(ggml_type_name(t.type), ggml_type_name(it->second->type)) << ref.path() << ": " << t.name;
    }
}

TEST(SynthPresets, tiny_presets_match_the_fixture_tensor_tables_in_every_mix) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::pair<const char*, const char*> models[] = {
        {"tiny-qwen3moe", "qwen3moe-tiny-s1"},
        {"tiny-glm47flash", "glm47flash-tiny-s1"},
        {"tiny-nemotron-h-moe", "nemotron-h-moe-tiny-s1"},
    };
    const std::pair<FileMix, const char*> mixes[] = {
        {FileMix::F16, "f16"}, {FileMix::Q8_0, "q8_0"}, {FileMix::Q4_K_M, "q4_k_m"}, {FileMix::IQ4_XS, "iq4_xs"}};
    for (const auto& [preset, stem] : models)
        for (const auto& [mix, suffix] : mixes) {
            SCOPED_TRACE(std::string(preset) + " " + suffix);
            const GgufFile ours = GgufFile::open(write_preset(preset, mix, true));
            const GgufFile ref = GgufFile::open(test::fixture(std::string("models/") + stem + "-" + suffix + ".gguf"));
            expect_same_tensors(ours, ref);
            const std::string a = ref.architecture() + ".";
            for (const char* key : {"block_count", "embedding_length", "attention.head_count", "expert_count",
                                    "expert_used_count", "expert_feed_forward_length"})
                EXPECT_EQ(ours.get_u32(a + key), ref.get_u32(a + key)) << key;
        }
}

// llama.cpp's Nemotron-H loader requires the plain layer-norm epsilon as well as the
// RMS one (it refused our files with "key not found in model:
// nemotron_h_moe.attention.layer_norm_epsilon"); converted real models carry both.
TEST(SynthPresets, nemotron_presets_carry_both_norm_epsilons) {
    for (const char* preset : {"tiny-nemotron-h-moe", "nemotron-3-nano-30b-a3b"}) {
        const GgufFile f = GgufFile::open(write_preset(preset, FileMix::Q4_K_M, true));
        for (const char* key : {"attention.layer_norm_epsilon", "attention.layer_norm_rms_epsilon"})
            EXPECT_TRUE(f.find_f32(f.architecture() + "." + key)) << preset << ": " << key;
    }
}

TEST(SynthPresets, layers_can_be_cut_for_cpu_benchmarks) {
    SynthSpec s = *synth_preset("nemotron-3-nano-30b-a3b", FileMix::IQ4_XS);
    cut_layers(s, 6);
    EXPECT_EQ(s.layer_pattern, "MEMEM*");
    EXPECT_EQ(synth_layer_count(s), 6);
    SynthSpec g = *synth_preset("glm-4.7-flash", FileMix::Q8_0);
    cut_layers(g, 2);
    EXPECT_EQ(g.n_layer, 2);
    EXPECT_THROW(cut_layers(g, 3), std::invalid_argument);
    EXPECT_FALSE(synth_preset("no-such-model", FileMix::F16));
}

TEST(SynthPresets, every_tiny_preset_loads_and_runs_a_batch) {
    for (const char* preset : {"tiny-qwen3moe", "tiny-glm47flash", "tiny-nemotron-h-moe"}) {
        const std::string path = write_preset(preset, FileMix::Q4_K_M, false);
        if (GgufFile f = GgufFile::open(path); [&] {
                for (const auto& a : supported_architectures())
                    if (a == f.architecture()) return false;
                return true;
            }()) {
            std::cout << "[ SKIPPED  ] " << preset << ": no engine for this architecture in this build yet\n";
            continue;
        }
        EngineOptions opt;
        opt.model_path = path;
        opt.n_threads = 2;
        opt.n_ctx = 256;
        Engine e(opt);
        const std::vector<int32_t> prompt = {72, 101, 108, 108, 111};
        std::vector<float> logits = e.eval(0, prompt, false);
        ASSERT_EQ(static_cast<int64_t>(logits.size()), e.n_vocab()) << preset;
        for (float x : logits) ASSERT_TRUE(std::isfinite(x)) << preset;
    }
}

TEST(SynthCli, writes_a_qwen3moe_model_that_run_generates_from) {
    const auto dir = test::scratch_dir();
    const std::string path = (dir / "tiny.gguf").string();
    auto r = test::run_moeserve({"synth", "--preset", "tiny-qwen3moe", "--type", "IQ4_XS", "-o", path});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("qwen3moe, 2 layers"), std::string::npos) << r.err;
    EXPECT_FALSE(GgufFile::open(path).header_only());
    r = test::run_moeserve({"run", "-m", path, "-p", "Hello", "-n", "4", "--temp", "0", "-t", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("generation: 4 tokens"), std::string::npos) << r.err;
}

TEST(SynthCli, header_only_files_are_marked_and_inspectable) {
    const auto dir = test::scratch_dir();
    for (const char* preset : {"glm-4.7-flash", "nemotron-3-nano-30b-a3b"}) {
        const std::string path = (dir / (std::string(preset) + ".gguf")).string();
        auto r = test::run_moeserve({"synth", "--preset", preset, "--header-only", "--layers", "8", "-o", path});
        ASSERT_EQ(r.status, 0) << r.err;
        const GgufFile f = GgufFile::open(path);
        EXPECT_TRUE(f.header_only());
        EXPECT_EQ(f.find_bool("moeserve.header_only"), true);
        EXPECT_EQ(f.get_u32(f.architecture() + ".block_count"), 8u);
        r = test::run_moeserve({"inspect", path});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_NE(r.out.find("architecture: " + f.architecture()), std::string::npos) << r.out;
    }
}

TEST(SynthCli, lists_presets_and_names_bad_arguments) {
    auto r = test::run_moeserve({"synth", "--list"});
    EXPECT_EQ(r.status, 0);
    for (const auto& p : synth_presets()) EXPECT_NE(r.out.find(p.name), std::string::npos) << p.name;
    r = test::run_moeserve({"synth", "--preset", "gpt-5", "-o", "/tmp/x.gguf"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown preset 'gpt-5'"), std::string::npos) << r.err;
    r = test::run_moeserve({"synth", "--preset", "tiny-qwen3moe", "--type", "Q3_K", "-o", "/tmp/x.gguf"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown --type 'Q3_K'"), std::string::npos) << r.err;
    r = test::run_moeserve({"synth", "--preset", "tiny-qwen3moe", "--layers", "9", "-o", "/tmp/x.gguf"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--layers must be between 1 and 2"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moeserve
