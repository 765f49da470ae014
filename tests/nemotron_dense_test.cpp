// The dense nemotron_h (ReLU² MLP layers instead of MoE) on a small
// synthetic file: the layer kinds come from the per-layer arrays, the
// logits are finite, and chunked prefill equals one pass; an implausible
// Mamba2 shape is refused by name.
#include <gtest/gtest.h>

#include <cmath>

#include "fixtures.h"
#include "model/model.h"
#include "synth/synth_model.h"

namespace moeserve {
namespace {

SynthSpec dense_spec() {
    SynthSpec s;
    s.arch = "nemotron_h";
    s.name = "nemotron-h-dense-test";
    s.layer_pattern = "M*-M-";
    s.n_layer = 5;
    s.n_embd = 128;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.head_dim = 32;
    s.n_ff = 192;
    s.ssm_n_head = 4;
    s.ssm_head_dim = 32;
    s.ssm_d_state = 16;
    s.ssm_n_group = 2;
    s.ssm_d_conv = 4;
    s.n_vocab = 300;
    s.mix = FileMix::F16;
    return s;
}

// The model and a cache of 128 cells for one sequence (the engine is left
// out: these tests are about the model alone).
struct Loaded {
    std::unique_ptr<Model> model;
    std::unique_ptr<KvCache> cache;
};

Loaded load(const std::string& path) {
    Loaded l;
    l.model = load_model(std::make_shared<GgufFile>(GgufFile::open(path)), make_cpu_backend(2));
    l.cache = std::make_unique<KvCache>(l.model->kv_cache_config(128, 1, GgmlType::F16, GgmlType::F16));
    return l;
}

// Evaluates tokens in chunks of `chunk`; returns the logits of every token.
std::vector<float> eval(Loaded& l, const std::vector<int32_t>& toks, size_t chunk) {
    std::vector<float> out;
    for (size_t b = 0; b < toks.size(); b += chunk) {
        Batch batch;
        for (size_t i = b; i < std::min(toks.size(), b + chunk); ++i)
            batch.add(toks[i], static_cast<int32_t>(i), 0, true);
        auto logits = l.model->forward(batch, *l.cache);
        out.insert(out.end(), logits.begin(), logits.end());
    }
    return out;
}

TEST(NemotronDense, mlp_layers_run_and_chunked_prefill_equals_one_pass) {
    const auto path = (test::scratch_dir() / "nemotron_h.gguf").string();
    write_synth_model(path, dense_spec());
    std::vector<int32_t> toks(40);
    for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 37 + 11) % 256);

    Loaded whole = load(path);
    EXPECT_EQ(whole.model->params().arch, "nemotron_h");
    const KvCacheConfig& c = whole.cache->config();
    EXPECT_EQ(c.n_embd_k, (std::vector<int64_t>{0, 64, 0, 0, 0}));
    const int64_t conv = 3 * (128 + 2 * 2 * 16), ssm = 16 * 128;
    EXPECT_EQ(c.n_embd_r, (std::vector<int64_t>{conv, 0, 0, conv, 0}));
    EXPECT_EQ(c.n_embd_s, (std::vector<int64_t>{ssm, 0, 0, ssm, 0}));
    std::vector<float> a = eval(whole, toks, toks.size());
    ASSERT_EQ(a.size(), toks.size() * 300);
    for (float v : a) ASSERT_TRUE(std::isfinite(v));
    float spread = 0;
    for (size_t i = 0; i < 300; ++i) spread = std::max(spread, std::abs(a[i] - a[300 * 39 + i]));
    EXPECT_GT(spread, 1e-3f);  // the logits depend on the input

    Loaded chunked = load(path);
    std::vector<float> b = eval(chunked, toks, 7);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f) << "at " << i;
}

TEST(NemotronDense, an_implausible_mamba2_shape_is_refused_by_name) {
    SynthSpec bad = dense_spec();
    bad.ssm_n_group = 3;  // does not divide the 4 heads
    const auto path = (test::scratch_dir() / "bad.gguf").string();
    write_synth_model(path, bad);
    try {
        load(path);
        FAIL() << "expected a refusal";
    } catch (const std::exception& err) {
        EXPECT_NE(std::string(err.what()).find("implausible Mamba2 shape"), std::string::npos) << err.what();
    }
}

}  // namespace
}  // namespace moeserve
