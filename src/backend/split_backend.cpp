#include "backend/split_backend.h"

#include <fmt/format.h>

#include <charconv>
#include <stdexcept>

#include "backend/forwarding_backend.h"

namespace moeserve {
namespace {

class SplitBackend final : public ForwardingBackend {
  public:
    SplitBackend(std::shared_ptr<Backend> host, std::shared_ptr<Backend> device, int first_device_layer, int n_layer,
                 std::unique_ptr<DeviceMemory> shared)
        : host_(std::move(host)),
          device_(std::move(device)),
          first_device_layer_(first_device_layer),
          n_layer_(n_layer),
          shared_(std::move(shared)) {}

    std::string name() const override {
        return fmt::format("{} (layers 0-{}) + {} (layers {}-{})", host_->name(), first_device_layer_ - 1,
                           device_->name(), first_device_layer_, n_layer_ - 1);
    }
    int n_threads() const override { return host_->n_threads(); }
    DeviceMemory& memory() override { return shared_ ? *shared_ : host_memory(); }
    bool runs_on_host() override { return host_->runs_on_host() && device_->runs_on_host(); }

    void load_weights(const GgufFile& file, const TensorFilter& upload) override {
        const int first = first_device_layer_;
        host_->load_weights(file, [&](const std::string& name) {
            return !is_tensor_of_layers_from(name, first) && (!upload || upload(name));
        });
        device_->load_weights(file, [&](const std::string& name) {
            return is_tensor_of_layers_from(name, first) && (!upload || upload(name));
        });
    }
    void begin_batch(const BatchInputs& inputs) override {
        host_->begin_batch(inputs);
        device_->begin_batch(inputs);
        current_ = host_.get();  // the embedding lookup: layer 0's, and the input stays on the host
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
        current_->begin_layer(layer);
    }
    void synchronize() override {
        device_->synchronize();
        host_->synchronize();
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
    Backend& on(int layer) const { return layer >= first_device_layer_ && layer < n_layer_ ? *device_ : *host_; }

    std::shared_ptr<Backend> host_, device_;
    int first_device_layer_, n_layer_;
    std::unique_ptr<DeviceMemory> shared_;
    Backend* current_ = nullptr;
};

}  // namespace

bool is_tensor_of_layers_from(const std::string& name, int first_layer) {
    constexpr std::string_view kPrefix = "blk.";
    if (name.compare(0, kPrefix.size(), kPrefix) != 0) return false;
    int layer = -1;
    const char* begin = name.data() + kPrefix.size();
    auto [end, ec] = std::from_chars(begin, name.data() + name.size(), layer);
    return ec == std::errc() && end != begin && *end == '.' && layer >= first_layer;
}

std::unique_ptr<Backend> make_split_backend(std::shared_ptr<Backend> host, std::shared_ptr<Backend> device,
                                            int first_device_layer, int n_layer, std::unique_ptr<DeviceMemory> shared) {
    if (!host || !device) throw std::invalid_argument("make_split_backend: a backend is missing");
    if (first_device_layer < 0 || first_device_layer > n_layer)
        throw std::invalid_argument(
            fmt::format("layer split at layer {} of a {}-layer model", first_device_layer, n_layer));
    return std::make_unique<SplitBackend>(std::move(host), std::move(device), first_device_layer, n_layer,
                                          std::move(shared));
}

}  // namespace moeserve
