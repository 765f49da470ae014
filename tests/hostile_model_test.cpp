// Model files from strangers: a GGUF whose metadata claims huge sizes, bad
// shapes or inconsistent hyperparameters is refused by the loader (and by
// `moeserve run`) with one error naming the problem, before any large
// allocation — never a crash, a hang or an out-of-bounds read later in a
// forward pass. Each hostile file is a fixture model with a few keys or
// tensor shapes changed, written with GgufWriter.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/engine.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "model/model.h"
#include "run_command.h"

namespace moeserve {
namespace {

// What to change in a copy of a fixture model.
struct Edits {
    std::map<std::string, GgufValue> set;                 // metadata keys added or replaced
    std::map<std::string, std::vector<int64_t>> reshape;  // tensors given another shape (data zero-filled)
};

// Writes fixture `model` (a file under models/) with `edits` applied to
// scratch/`name`.gguf and returns its path.
std::string write_hostile(const std::string& model, const Edits& edits, const std::string& name) {
    const GgufFile src = GgufFile::open(test::fixture("models/" + model).string());
    GgufWriter w;
    for (const GgufKv& kv : src.metadata()) w.set(kv.key, kv.value);
    for (const auto& [key, value] : edits.set) w.set(key, value);
    for (const GgufTensorInfo& t : src.tensors()) {
        auto it = edits.reshape.find(t.name);
        if (it == edits.reshape.end()) {
            const uint8_t* data = src.tensor_data(t);
            w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims),
                         std::vector<uint8_t>(data, data + t.nbytes));
        } else {
            const std::vector<int64_t>& ne = it->second;
            size_t rows = 1;
            for (size_t d = 1; d < ne.size(); ++d) rows *= static_cast<size_t>(ne[d]);
            w.add_tensor(t.name, t.type, ne, std::vector<uint8_t>(ggml_row_bytes(t.type, ne[0]) * rows, 0));
        }
    }
    const std::string path = (test::scratch_dir() / (name + ".gguf")).string();
    w.write(path);
    return path;
}

// The loader's error for the file, or "" when it loads.
std::string load_error(const std::string& path) {
    try {
        auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
        load_model(file, make_cpu_backend(1));
    } catch (const GgufError& e) {
        return e.what();
    }
    return "";
}

// The engine's error (memory planning, then loading, then the KV cache),
// with the context of the file's metadata: what `run` and `serve` do.
std::string engine_error(const std::string& path) {
    EngineOptions opt;
    opt.model_path = path;
    opt.n_threads = 1;
    try {
        Engine e(opt);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

struct HostileCase {
    const char* name;
    const char* model;
    Edits edits;
    const char* fragment;  // the error must contain it
};

constexpr uint64_t kHuge64 = uint64_t{1} << 40;
constexpr uint32_t kHuge32 = 0x80000000u;

const char* kQwen = "qwen3moe-tiny-s1-q8_0.gguf";
const char* kNemotron = "nemotron-h-moe-tiny-s1-q8_0.gguf";
const char* kGlm = "glm47flash-tiny-s1-q8_0.gguf";

std::vector<HostileCase> hostile_cases() {
    using V = std::vector<int64_t>;
    return {
        // Sizes no machine has.
        {"context_2_pow_40", kQwen, {{{"qwen3moe.context_length", GgufValue(kHuge64)}}, {}}, "context_length"},
        {"context_0", kQwen, {{{"qwen3moe.context_length", GgufValue(uint32_t{0})}}, {}}, "context_length"},
        {"context_above_int32",
         kQwen,
         {{{"qwen3moe.context_length", GgufValue(uint32_t{0xFFFFFFFFu})}}, {}},
         "context_length"},
        {"embedding_0", kQwen, {{{"qwen3moe.embedding_length", GgufValue(uint32_t{0})}}, {}}, "embedding length 0"},
        {"embedding_huge", kQwen, {{{"qwen3moe.embedding_length", GgufValue(kHuge32)}}, {}}, "token_embd.weight"},
        {"blocks_huge", kQwen, {{{"qwen3moe.block_count", GgufValue(kHuge32)}}, {}}, "implausible shape"},
        {"blocks_more_than_tensors",
         kQwen,
         {{{"qwen3moe.block_count", GgufValue(uint32_t{3})}}, {}},
         "missing tensor blk.2."},
        {"key_length_huge",
         kQwen,
         {{{"qwen3moe.attention.key_length", GgufValue(kHuge32)},
           {"qwen3moe.attention.value_length", GgufValue(kHuge32)},
           {"qwen3moe.rope.dimension_count", GgufValue(kHuge32)}},
          {}},
         "key_length"},
        // Head counts that do not fit together.
        {"kv_heads_do_not_divide_heads",
         kQwen,
         {{{"qwen3moe.attention.head_count_kv", GgufValue(uint32_t{3})}},
          {{"blk.0.attn_k.weight", V{256, 384}},
           {"blk.0.attn_v.weight", V{256, 384}},
           {"blk.1.attn_k.weight", V{256, 384}},
           {"blk.1.attn_v.weight", V{256, 384}}}},
         "head_count"},
        {"more_kv_heads_than_heads",
         kQwen,
         {{{"qwen3moe.attention.head_count", GgufValue(uint32_t{2})},
           {"qwen3moe.attention.head_count_kv", GgufValue(uint32_t{4})}},
          {}},
         "head_count"},
        {"heads_0", kQwen, {{{"qwen3moe.attention.head_count", GgufValue(uint32_t{0})}}, {}}, "head_count"},
        {"heads_per_layer_wrong_length",
         kQwen,
         {{{"qwen3moe.attention.head_count", gguf_array(GgufValueType::UINT32, std::vector<uint32_t>{4, 4, 4})}}, {}},
         "one per layer"},
        // Experts.
        {"experts_0", kQwen, {{{"qwen3moe.expert_count", GgufValue(uint32_t{0})}}, {}}, "expert_count"},
        {"experts_used_above_count",
         kQwen,
         {{{"qwen3moe.expert_used_count", GgufValue(uint32_t{9})}}, {}},
         "expert_used_count"},
        {"experts_used_0", kQwen, {{{"qwen3moe.expert_used_count", GgufValue(uint32_t{0})}}, {}}, "expert_used_count"},
        {"experts_huge", kQwen, {{{"qwen3moe.expert_count", GgufValue(kHuge32)}}, {}}, "expert_count"},
        // Tensors that do not match the hyperparameters.
        {"expert_tensor_misshapen",
         kQwen,
         {{}, {{"blk.1.ffn_up_exps.weight", V{256, 128, 8}}}},
         "tensor blk.1.ffn_up_exps.weight has shape [256, 128, 8], expected [256, 256, 8]"},
        {"rope_wider_than_head", kQwen, {{{"qwen3moe.rope.dimension_count", GgufValue(uint32_t{4096})}}, {}}, "rope"},
        // nemotron_h_moe: Mamba2 shapes, per-layer KV heads, experts.
        {"mamba_groups_do_not_divide_heads",
         kNemotron,
         {{{"nemotron_h_moe.ssm.group_count", GgufValue(uint32_t{3})}}, {}},
         "Mamba2"},
        {"mamba_heads_0", kNemotron, {{{"nemotron_h_moe.ssm.time_step_rank", GgufValue(uint32_t{0})}}, {}}, "Mamba2"},
        {"mamba_conv_0", kNemotron, {{{"nemotron_h_moe.ssm.conv_kernel", GgufValue(uint32_t{0})}}, {}}, "Mamba2"},
        {"hybrid_kv_heads_do_not_divide",
         kNemotron,
         {{{"nemotron_h_moe.attention.head_count_kv",
            gguf_array(GgufValueType::UINT32, std::vector<uint32_t>{0, 0, 0, 3, 0, 0})}},
          {{"blk.3.attn_k.weight", V{256, 192}}, {"blk.3.attn_v.weight", V{256, 192}}}},
         "head_count"},
        {"hybrid_experts_used_above_count",
         kNemotron,
         {{{"nemotron_h_moe.expert_used_count", GgufValue(uint32_t{100})}}, {}},
         "expert_used_count"},
        {"hybrid_experts_0",
         kNemotron,
         {{{"nemotron_h_moe.expert_count", GgufValue(uint32_t{0})}}, {}},
         "ffn_up.weight"},
        // deepseek2 (MLA).
        {"mla_experts_0", kGlm, {{{"deepseek2.expert_count", GgufValue(uint32_t{0})}}, {}}, "expert_count"},
        {"mla_kv_lora_0", kGlm, {{{"deepseek2.attention.kv_lora_rank", GgufValue(uint32_t{0})}}, {}}, "MLA"},
        {"mla_rope_wider_than_key", kGlm, {{{"deepseek2.rope.dimension_count", GgufValue(uint32_t{300})}}, {}}, "MLA"},
        {"mla_dense_lead_above_blocks",
         kGlm,
         {{{"deepseek2.leading_dense_block_count", GgufValue(uint32_t{100})}}, {}},
         "leading_dense_block_count"},
        {"mla_heads_do_not_match_tensors",
         kGlm,
         {{{"deepseek2.attention.head_count", GgufValue(uint32_t{3})}}, {}},
         "attn_q_b.weight"},
    };
}

void expect_clear(const std::string& error, const std::string& path, const HostileCase& c) {
    ASSERT_FALSE(error.empty()) << c.name << ": accepted; expected an error containing '" << c.fragment << "'";
    EXPECT_NE(error.find(c.fragment), std::string::npos) << c.name << ": " << error;
    EXPECT_NE(error.find(path), std::string::npos) << c.name << ": the error should name the file: " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << c.name << ": one line: " << error;
}

TEST(HostileModel, the_fixtures_themselves_load) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* model : {kQwen, kNemotron, kGlm}) {
        const std::string path = write_hostile(model, {}, "unchanged");
        EXPECT_EQ(load_error(path), "") << model;
    }
}

TEST(HostileModel, loader_refuses_each_with_an_error_naming_the_problem) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const HostileCase& c : hostile_cases()) {
        const std::string path = write_hostile(c.model, c.edits, c.name);
        expect_clear(load_error(path), path, c);
    }
}

// The engine plans memory from the metadata before the loader checks it:
// the planner must not be the one to fail (or allocate) on a hostile file.
TEST(HostileModel, engine_refuses_each_before_allocating) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const HostileCase& c : hostile_cases()) {
        const std::string path = write_hostile(c.model, c.edits, c.name);
        expect_clear(engine_error(path), path, c);
    }
}

// The command line: `run` exits 1 with the error, `inspect` still shows the
// file (its metadata is what a user needs to see what is wrong).
TEST(HostileModel, run_exits_with_the_error_and_inspect_shows_the_file) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const HostileCase& c : hostile_cases()) {
        const std::string path = write_hostile(c.model, c.edits, c.name);
        auto r = test::run_moeserve({"run", "-m", path, "-p", "hi", "-n", "1", "-t", "1"});
        EXPECT_EQ(r.status, 1) << c.name << ": " << r.err;
        EXPECT_NE(r.err.find(c.fragment), std::string::npos) << c.name << ": " << r.err;
        auto i = test::run_moeserve({"inspect", path});
        EXPECT_EQ(i.status, 0) << c.name << ": " << i.err;
    }
}

}  // namespace
}  // namespace moeserve
