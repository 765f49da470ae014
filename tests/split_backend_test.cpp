// The layer split (-ngl N below the layer count), with two CPU backends in
// the roles of host and device: every op of the device's layers reaches the
// device backend, everything else the host, the device is given only its
// layers' weights, and the logits are bit for bit those of one backend
// (same kernels, one thread each). On a GPU machine the CUDA test suite runs
// the real split.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "backend/expert_placement.h"
#include "backend/forwarding_backend.h"
#include "backend/split_backend.h"
#include "counting_memory.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "memory/kv_cache.h"
#include "model/model.h"

namespace moeserve {
namespace {

// A CPU backend that notes what reaches it: layers announced, layers named
// by cache ops, the weights of its products, the expert FFNs' layers (by
// their router), the tensors it may upload.
class RecordingBackend final : public ForwardingBackend {
  public:
    explicit RecordingBackend(std::string name) : inner_(make_cpu_backend(1)), name_(std::move(name)) {}
    std::string name() const override { return name_; }
    int n_threads() const override { return 1; }
    DeviceMemory& memory() override { return inner_->memory(); }
    void load_weights(const GgufFile& file, const TensorFilter& upload) override {
        for (const auto& t : file.tensors())
            if (!upload || upload(t.name)) uploaded.insert(t.name);
    }
    void begin_layer(int layer) override { announced.insert(layer); }
    void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert) override {
        weights.insert(w.name);
        ForwardingBackend::matmul(w, x, n_tokens, y, expert);
    }
    void matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) override {
        for (const auto& p : projections) weights.insert(p.w->name);
        ForwardingBackend::matmul_shared_input(x, n_tokens, projections);
    }
    void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                 const Weight& down_exps, const MoeParams& p, float* out) override {
        weights.insert(router.name);
        expert_layers.insert(tensor_layer(router.name));
        ForwardingBackend::moe_ffn(x, n_tokens, router, gate_exps, up_exps, down_exps, p, out);
    }
    void embed(const Weight& table, std::span<const int32_t> tokens, float* out) override {
        weights.insert(table.name);
        ForwardingBackend::embed(table, tokens, out);
    }

    std::set<int> announced, cache_layers, expert_layers;
    std::set<std::string> weights, uploaded;

  protected:
    Backend& route(int layer) override {
        if (layer != kCurrentLayer) cache_layers.insert(layer);
        return *inner_;
    }

  private:
    std::unique_ptr<Backend> inner_;
    std::string name_;
};

int layer_of(const std::string& name) {
    return tensor_layer(name);
}

// Prompt logits, then three decoded tokens' logits, of the file on `be`.
std::vector<float> run(const std::string& path, std::shared_ptr<Backend> be) {
    auto model = load_model(std::make_shared<GgufFile>(GgufFile::open(path)), be);
    KvCache cache(model->kv_cache_config(256, 1, GgmlType::F16, GgmlType::F16), be->memory());
    Batch prompt;
    for (int i = 0; i < 24; ++i) prompt.add((i * 37 + 11) % 600, i, 0, true);
    std::vector<float> out = model->forward(prompt, cache);
    for (int i = 24; i < 27; ++i) {
        Batch next;
        next.add((i * 53 + 7) % 600, i, 0, true);
        const std::vector<float> l = model->forward(next, cache);
        out.insert(out.end(), l.begin(), l.end());
    }
    return out;
}

TEST(SplitBackend, tells_layer_tensors_by_name) {
    EXPECT_TRUE(is_tensor_of_layers_from("blk.3.attn_q.weight", 3));
    EXPECT_TRUE(is_tensor_of_layers_from("blk.12.ffn_down_exps.weight", 3));
    EXPECT_FALSE(is_tensor_of_layers_from("blk.2.attn_q.weight", 3));
    EXPECT_FALSE(is_tensor_of_layers_from("token_embd.weight", 0));
    EXPECT_FALSE(is_tensor_of_layers_from("output.weight", 0));
    EXPECT_FALSE(is_tensor_of_layers_from("blk.x.attn_q.weight", 0));
    EXPECT_FALSE(is_tensor_of_layers_from("blk.4", 0));
    SplitPlan bad;
    bad.n_layer = 4;
    bad.first_device_layer = 5;
    EXPECT_THROW(make_split_backend(make_cpu_backend(1), make_cpu_backend(1), bad), std::invalid_argument);
    bad.first_device_layer = 2;
    bad.host_experts = {true, false};  // not one per layer
    EXPECT_THROW(make_split_backend(make_cpu_backend(1), make_cpu_backend(1), bad), std::invalid_argument);
}

// -ngl N up to the layer count, as select_backend sets it: the head and the
// last blocks on the device, the embedding lookup and the first blocks on the host.
TEST(SplitBackend, device_layers_run_on_the_device_with_the_same_logits) {
    if (!test::have_fixtures()) GTEST_SKIP() << "no fixtures";
    const std::pair<const char*, const char*> cases[] = {
        {"qwen3moe-tiny-s1", "host (layer 0) + device (layer 1, head)"},
        {"nemotron-h-moe-tiny-s1", "host (layers 0-2) + device (layers 3-5, head)"},
        {"glm47flash-tiny-s1", "host (layer 0) + device (layers 1-2, head)"}};
    for (const auto& [stem, name] : cases) {
        SCOPED_TRACE(stem);
        const std::string path = test::fixture(std::string("models/") + stem + "-q8_0.gguf").string();
        const int n_layer =
            static_cast<int>(GgufFile::open(path).get_u32(GgufFile::open(path).architecture() + ".block_count"));
        SplitPlan plan;
        plan.n_layer = n_layer;
        plan.first_device_layer = n_layer / 2;  // qwen3moe 2 layers: 1; nemotron 6: 3; glm 3: 1
        plan.head_on_device = true;
        const int first = plan.first_device_layer;
        auto host = std::make_shared<RecordingBackend>("host");
        auto device = std::make_shared<RecordingBackend>("device");
        auto backend = make_split_backend(host, device, plan);
        EXPECT_EQ(backend->name(), name);
        const std::vector<float> split = run(path, std::move(backend));
        const std::vector<float> whole = run(path, make_cpu_backend(1));
        ASSERT_EQ(split.size(), whole.size());
        EXPECT_EQ(0, std::memcmp(split.data(), whole.data(), split.size() * sizeof(float)));

        std::set<int> device_layers, host_layers;
        for (int l = 0; l < n_layer; ++l) (l >= first ? device_layers : host_layers).insert(l);
        device_layers.insert(n_layer);  // the output head
        EXPECT_EQ(device->announced, device_layers);
        EXPECT_EQ(host->announced, host_layers);
        for (int l : device->cache_layers) EXPECT_GE(l, first);
        for (int l : host->cache_layers) EXPECT_LT(l, first);
        EXPECT_FALSE(device->cache_layers.empty());
        const auto on_device = [&](const std::string& t) { return layer_of(t) >= first || t.rfind("output", 0) == 0; };
        for (const auto& w : device->weights) EXPECT_TRUE(on_device(w)) << w;
        for (const auto& w : host->weights) EXPECT_FALSE(on_device(w)) << w;
        EXPECT_TRUE(host->weights.count("token_embd.weight"));
        EXPECT_TRUE(device->weights.count("output.weight"));
        // The device holds its blocks, the output norm and head, not the token embedding (the head has its own).
        for (const auto& t : device->uploaded) EXPECT_TRUE(on_device(t)) << t;
        for (const auto& t : host->uploaded) EXPECT_FALSE(on_device(t)) << t;
        EXPECT_TRUE(device->uploaded.count("output_norm.weight"));
        EXPECT_TRUE(host->uploaded.count("token_embd.weight"));
    }
}

// --cpu-moe on a GPU run: every layer, the embedding and the head on the
// device, the routed-expert FFNs of the chosen layers on the host, which is
// given exactly those and reads their experts; the device uploads everything
// else. The logits are bit for bit the single backend's.
TEST(SplitBackend, host_experts_run_on_the_host_with_the_same_logits) {
    if (!test::have_fixtures()) GTEST_SKIP() << "no fixtures";
    for (const char* stem : {"qwen3moe-tiny-s1", "nemotron-h-moe-tiny-s1", "glm47flash-tiny-s1"}) {
        SCOPED_TRACE(stem);
        const std::string path = test::fixture(std::string("models/") + stem + "-q8_0.gguf").string();
        const GgufFile file = GgufFile::open(path);
        const int n_layer = static_cast<int>(file.get_u32(file.architecture() + ".block_count"));
        std::vector<std::string> names;
        for (const auto& t : file.tensors()) names.push_back(t.name);
        for (const bool all : {true, false}) {
            SCOPED_TRACE(all ? "--cpu-moe" : "--n-cpu-moe 2 with a layer split at layer 1");
            ExpertPlacementFlags flags;
            flags.cpu_moe = all;
            flags.n_cpu_moe = all ? 0 : 2;
            SplitPlan plan;
            plan.n_layer = n_layer;
            plan.host_experts = resolve_expert_placement(names, n_layer, flags).host_experts;
            plan.first_device_layer = all ? 0 : 1;  // the second run: also a layer split at layer 1
            plan.head_on_device = true;
            std::set<int> moe_layers, host_moe;
            for (const auto& n : names)
                if (routed_expert_layer(n) >= 0) moe_layers.insert(routed_expert_layer(n));
            for (int l = plan.first_device_layer; l < n_layer; ++l)
                if (plan.host_experts[l]) host_moe.insert(l);
            ASSERT_FALSE(host_moe.empty());

            auto host = std::make_shared<RecordingBackend>("host");
            auto device = std::make_shared<RecordingBackend>("device");
            auto split = make_split_backend(host, device, plan);
            const std::string name = split->name();
            EXPECT_NE(name.find("with the routed experts of layers"), std::string::npos) << name;
            const std::vector<float> got = run(path, std::move(split));
            const std::vector<float> whole = run(path, make_cpu_backend(1));
            ASSERT_EQ(got.size(), whole.size());
            EXPECT_EQ(0, std::memcmp(got.data(), whole.data(), got.size() * sizeof(float)));

            // The host runs the expert FFNs of its host-expert device layers
            // (and all of its own layers' ops), the device every other op.
            std::set<int> device_moe;
            for (int l : moe_layers)
                if (l >= plan.first_device_layer && !host_moe.count(l)) device_moe.insert(l);
            EXPECT_EQ(device->expert_layers, device_moe);
            for (int l : host_moe) EXPECT_TRUE(host->expert_layers.count(l)) << l;
            std::set<int> device_layers;
            for (int l = plan.first_device_layer; l < n_layer; ++l) device_layers.insert(l);
            device_layers.insert(n_layer);  // the head
            EXPECT_EQ(device->announced, device_layers);
            EXPECT_EQ(all, device->weights.count("token_embd.weight") == 1);  // the embedding goes with layer 0
            for (const auto& w : device->weights) EXPECT_FALSE(host_moe.count(expert_ffn_layer(w))) << w;
            // Uploads: the device holds no expert of a host-expert layer, the host exactly those (and its layers').
            for (const auto& t : device->uploaded) EXPECT_FALSE(host_moe.count(expert_ffn_layer(t))) << t;
            for (const auto& t : host->uploaded)
                EXPECT_TRUE((layer_of(t) >= 0 && layer_of(t) < plan.first_device_layer) ||
                            (t == "token_embd.weight" && !all) || host_moe.count(expert_ffn_layer(t)))
                    << t;
            for (const auto& n : names)
                if (host_moe.count(routed_expert_layer(n))) EXPECT_TRUE(host->uploaded.count(n)) << n;
        }
    }
}

// An f32 weight {in, out, n} named `name`, random values.
struct F32Weight {
    std::vector<float> values;
    Weight w;
    F32Weight(std::string name, int64_t in, int64_t out, int64_t n, std::mt19937& rng) : values(in * out * n) {
        std::normal_distribution<float> d(0.0f, 0.3f);
        for (float& v : values) v = d(rng);
        w.name = std::move(name);
        w.type = GgmlType::F32;
        w.ne = {in, out, n, 1};
        w.row_bytes = in * sizeof(float);
        w.matrix_bytes = in * out * sizeof(float);
        w.data = reinterpret_cast<const uint8_t*>(values.data());
    }
};

// The host experts of a latent MoE (Nemotron-3-Super: the experts read their
// own narrower input, expert_input) through the split: the host gets copies
// of both inputs and the device adds the sum into out, with the bits of the
// host backend's own op.
TEST(SplitBackend, host_experts_read_copies_of_both_inputs) {
    std::mt19937 rng(7);
    const int64_t n_embd = 48, n_latent = 32, n_ff = 16, n_expert = 6, n_tokens = 5;
    const F32Weight router("blk.0.ffn_gate_inp.weight", n_embd, n_expert, 1, rng);
    const F32Weight up("blk.0.ffn_up_exps.weight", n_latent, n_ff, n_expert, rng);
    const F32Weight down("blk.0.ffn_down_exps.weight", n_ff, n_latent, n_expert, rng);
    MoeParams p;
    p.n_expert = static_cast<int>(n_expert);
    p.n_expert_used = 2;
    p.gating = GatingFunc::Sigmoid;
    p.activation = ExpertActivation::ReluSquared;
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> x(n_tokens * n_embd), xe(n_tokens * n_latent), out0(n_tokens * n_latent);
    for (auto* v : {&x, &xe, &out0})
        for (float& f : *v) f = d(rng);

    std::vector<float> want = out0;
    MoeParams direct = p;
    direct.expert_input = xe.data();
    make_cpu_backend(1)->moe_ffn(x.data(), n_tokens, router.w, Weight{}, up.w, down.w, direct, want.data());

    SplitPlan plan;
    plan.n_layer = 1;
    plan.head_on_device = true;
    plan.host_experts = {true};
    auto host = std::make_shared<RecordingBackend>("host");
    auto device = std::make_shared<RecordingBackend>("device");
    auto counting = std::make_unique<test::CountingMemory>();
    test::CountingMemory* shared = counting.get();
    auto split = make_split_backend(host, device, plan, std::move(counting));
    split->begin_batch({});
    split->begin_layer(0);
    std::vector<float> got = out0;
    MoeParams staged = p;
    staged.expert_input = xe.data();
    split->moe_ffn(x.data(), n_tokens, router.w, Weight{}, up.w, down.w, staged, got.data());
    split->end_batch();
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
    EXPECT_EQ(host->expert_layers, std::set<int>{0});
    EXPECT_TRUE(device->expert_layers.empty());
    EXPECT_NE(want, out0);
    // Both inputs went to the host as copies, the sum came back as one.
    EXPECT_EQ(shared->downloaded_bytes, (x.size() + xe.size()) * sizeof(float));
    EXPECT_EQ(shared->uploaded_bytes, out0.size() * sizeof(float));
}

}  // namespace
}  // namespace moeserve
