#include "backend/split_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "backend/expert_placement.h"
#include "backend/forwarding_backend.h"
#include "gguf/gguf_file.h"

namespace moeserve {
namespace {

bool embedding_on_device(const SplitPlan& plan) {
    return plan.first_device_layer == 0 && plan.head_on_device;
}

bool experts_on_host(const SplitPlan& plan, int layer) {
    return layer >= 0 && layer < static_cast<int>(plan.host_experts.size()) &&
           plan.host_experts[static_cast<size_t>(layer)];
}

class SplitBackend final : public ForwardingBackend {
  public:
    SplitBackend(std::shared_ptr<Backend> host, std::shared_ptr<Backend> device, SplitPlan plan,
                 std::unique_ptr<DeviceMemory> shared)
        : host_(std::move(host)), device_(std::move(device)), plan_(std::move(plan)), shared_(std::move(shared)) {
        if (plan_.host_experts.empty()) plan_.host_experts.assign(static_cast<size_t>(plan_.n_layer), false);
    }

    std::string name() const override {
        const int first = plan_.first_device_layer, n = plan_.n_layer;
        // "layers 0-9, head", "layers 47", "head"
        const auto part = [](int from, int to, bool head) {
            std::string p = from > to    ? ""
                            : from == to ? fmt::format("layer {}", from)
                                         : fmt::format("layers {}-{}", from, to);
            if (head) p += p.empty() ? "head" : ", head";
            return p;
        };
        std::string s;
        if (first > 0 || !plan_.head_on_device)
            s = fmt::format("{} ({}) + ", host_->name(), part(0, first - 1, !plan_.head_on_device));
        s += fmt::format("{} ({})", device_->name(), part(first, n - 1, plan_.head_on_device));
        std::vector<bool> on_host(plan_.host_experts.size(), false);
        for (int l = first; l < n; ++l) on_host[static_cast<size_t>(l)] = plan_.host_experts[static_cast<size_t>(l)];
        const std::string experts = describe_layers(on_host);
        if (!experts.empty()) s += fmt::format(" with the routed experts of layers {} on {}", experts, host_->name());
        return s;
    }
    int n_threads() const override { return host_->n_threads(); }
    DeviceMemory& memory() override { return shared_ ? *shared_ : host_memory(); }
    bool runs_on_host() override { return host_->runs_on_host() && device_->runs_on_host(); }

    void load_weights(const GgufFile& file, const TensorFilter& upload) override {
        tied_output_ = ties_output_to_embedding(file);
        host_->load_weights(file,
                            [&](const std::string& name) { return !on_device(name) && (!upload || upload(name)); });
        device_->load_weights(file,
                              [&](const std::string& name) { return on_device(name) && (!upload || upload(name)); });
    }
    void begin_batch(const BatchInputs& inputs) override {
        host_->begin_batch(inputs);
        device_->begin_batch(inputs);
        // The embedding lookup, layer 0's: on the host unless the whole
        // model but the experts is on the device.
        current_ = embedding_on_device(plan_) ? device_.get() : host_.get();
        layer_ = 0;
    }
    void end_batch() override {
        device_->end_batch();
        host_->end_batch();
    }
    void begin_layer(int layer) override {
        Backend* next = &on(layer);
        // Leaving the device: what its ops wrote must be complete before the host reads it.
        if (current_ == device_.get() && next != current_) device_->synchronize();
        current_ = next;
        layer_ = layer;
        current_->begin_layer(layer);
    }
    void synchronize() override {
        device_->synchronize();
        host_->synchronize();
    }

    // A device layer whose experts stay in host memory: the host runs the
    // expert FFN on copies of its inputs and the device adds the result into
    // `out`. Copies rather than the shared memory itself: on a GPU a host
    // read of managed memory the card wrote is a page fault and a migration
    // (and the card faults the pages back at its next op), once or more per
    // layer and token, where a copy of a few KiB is one call. The expert sum
    // is computed whole and then added, as the host's op adds it into out,
    // so the result has the same bits.
    void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                 const Weight& down_exps, const MoeParams& p, float* out) override {
        if (current_ != device_.get() || !experts_on_host(plan_, layer_))
            return ForwardingBackend::moe_ffn(x, n_tokens, router, gate_exps, up_exps, down_exps, p, out);
        DeviceMemory& shared = memory();
        const auto stage_in = [&](Activations& host, const float* src, int64_t width) {
            host.resize(static_cast<size_t>(n_tokens * width));
            shared.download(host.data(), src, host.size() * sizeof(float));  // waits for the device's queue
            return host.data();
        };
        MoeParams hp = p;
        const float* hx = stage_in(host_x_, x, router.in());
        if (p.expert_input) hp.expert_input = stage_in(host_expert_input_, p.expert_input, up_exps.in());
        const int64_t n_out = n_tokens * down_exps.out();
        host_out_.resize(static_cast<size_t>(n_out));
        std::fill(host_out_.data(), host_out_.data() + n_out, 0.0f);
        host_->moe_ffn(hx, n_tokens, router, gate_exps, up_exps, down_exps, hp, host_out_.data());
        staged_out_.resize(static_cast<size_t>(n_out));
        shared.upload(staged_out_.data(), host_out_.data(), static_cast<size_t>(n_out) * sizeof(float));
        device_->add(out, staged_out_.data(), n_out);
    }

  protected:
    Backend& route(int layer) override {
        if (layer == kCurrentLayer) return *current_;
        Backend& b = on(layer);
        // An op naming a layer outside a forward pass (a context shift) must
        // not overtake device work still queued.
        if (&b != current_ && current_ == device_.get()) device_->synchronize();
        return b;
    }

  private:
    Backend& on(int layer) const {
        if (layer >= plan_.n_layer) return plan_.head_on_device ? *device_ : *host_;
        return layer >= plan_.first_device_layer ? *device_ : *host_;
    }
    bool on_device(const std::string& name) const { return split_device_holds(plan_, name, tied_output_); }

    std::shared_ptr<Backend> host_, device_;
    SplitPlan plan_;
    std::unique_ptr<DeviceMemory> shared_;
    // The host experts' inputs and sum in host memory, and the sum in the shared memory for the device's add.
    Activations host_x_{host_memory()}, host_expert_input_{host_memory()}, host_out_{host_memory()};
    Activations staged_out_{shared_ ? *shared_ : host_memory()};
    Backend* current_ = nullptr;
    int layer_ = 0;
    bool tied_output_ = false;
};

}  // namespace

bool ties_output_to_embedding(const GgufFile& file) {
    for (const auto& t : file.tensors())
        if (t.name == "output.weight") return false;
    return true;
}

bool split_device_holds(const SplitPlan& plan, const std::string& name, bool tied_output) {
    if (name == "token_embd.weight") return embedding_on_device(plan) || (plan.head_on_device && tied_output);
    const int layer = tensor_layer(name);
    if (layer < 0) return plan.head_on_device;
    return layer >= plan.first_device_layer && !experts_on_host(plan, expert_ffn_layer(name));
}

bool is_tensor_of_layers_from(const std::string& name, int first_layer) {
    const int layer = tensor_layer(name);
    return layer >= 0 && layer >= first_layer;
}

std::unique_ptr<Backend> make_split_backend(std::shared_ptr<Backend> host, std::shared_ptr<Backend> device,
                                            SplitPlan plan, std::unique_ptr<DeviceMemory> shared) {
    if (!host || !device) throw std::invalid_argument("make_split_backend: a backend is missing");
    if (plan.first_device_layer < 0 || plan.first_device_layer > plan.n_layer)
        throw std::invalid_argument(
            fmt::format("layer split at layer {} of a {}-layer model", plan.first_device_layer, plan.n_layer));
    if (!plan.host_experts.empty() && plan.host_experts.size() != static_cast<size_t>(plan.n_layer))
        throw std::invalid_argument(
            fmt::format("expert placement for {} layers of a {}-layer model", plan.host_experts.size(), plan.n_layer));
    return std::make_unique<SplitBackend>(std::move(host), std::move(device), std::move(plan), std::move(shared));
}

}  // namespace moeserve
