// A model split between the host (the CPU) and a device (the GPU):
// - the layer split of -ngl N up to the layer count (llama.cpp's count, the
//   output head being one more layer): the head and the last N-1 layers
//   run on the device, the token embedding and the first layers on the
//   host, so a model larger than the card still runs;
// - the routed experts of chosen layers kept in host memory (--cpu-moe,
//   --n-cpu-moe, -ot; expert_placement.h): those layers' expert FFNs run on
//   the host, the rest of each layer on the device.
// Each backend keeps its part's weights (the device uploads only those);
// activations, the KV cache and recurrent states live in one memory both
// backends address (CUDA managed memory for a GPU), so the residual stream
// crosses the split with no copies in the model code. The model announces
// each layer with begin_layer; ops follow it, and cache ops go by the layer
// they name. The host waits for the device wherever it reads what the
// device wrote.
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"

namespace moeserve {

struct SplitPlan {
    int n_layer = 0;
    int first_device_layer = 0;      // layers [first_device_layer, n_layer) run on the device
    bool head_on_device = false;     // the output norm and head (and the embedding, when layer 0 is there)
    std::vector<bool> host_experts;  // per layer (empty: none): its routed-expert FFN runs on the host
};

// `shared` is the memory both use (null: host memory, for two host-memory
// backends). Throws std::invalid_argument for a split point outside
// [0, n_layer] or host_experts of another length than n_layer.
std::unique_ptr<Backend> make_split_backend(std::shared_ptr<Backend> host, std::shared_ptr<Backend> device,
                                            SplitPlan plan, std::unique_ptr<DeviceMemory> shared = nullptr);

// Whether a model's head reads the token embedding (no output.weight).
bool ties_output_to_embedding(const GgufFile& file);

// Whether the device of a split holds (uploads) a tensor: its layer's,
// unless the layer's routed experts stay on the host; the output norm and
// head with the head; the token embedding where the lookup runs, or with a
// head that reads it (tied_output: the file has no output.weight).
bool split_device_holds(const SplitPlan& plan, const std::string& name, bool tied_output);

// Whether a tensor belongs to a layer at or past `first_layer` ("blk.N.*"
// with N >= first_layer); the embedding, output norm and output are not.
bool is_tensor_of_layers_from(const std::string& name, int first_layer);

}  // namespace moeserve
