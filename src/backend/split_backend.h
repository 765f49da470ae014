// The layer split of -ngl N below the layer count (llama.cpp's meaning):
// the last N layers run on the device backend (the GPU), the token
// embedding, the first layers and the output head on the host backend (the
// CPU), so a model larger than the card still runs. Each backend keeps its
// layers' weights (the device uploads only those); activations, the KV cache
// and recurrent states live in one memory both backends address (CUDA
// managed memory for a GPU), so the residual stream crosses the split with
// no copies in the model code. The model announces each layer with
// begin_layer; ops follow it, and cache ops go by the layer they name.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace moeserve {

// Layers [first_device_layer, n_layer) on `device`, everything else on
// `host`; `shared` is the memory both use (null: host memory, for two
// host-memory backends). Throws std::invalid_argument for a split point
// outside [0, n_layer].
std::unique_ptr<Backend> make_split_backend(std::shared_ptr<Backend> host, std::shared_ptr<Backend> device,
                                            int first_device_layer, int n_layer,
                                            std::unique_ptr<DeviceMemory> shared = nullptr);

// Whether a tensor belongs to a layer at or past `first_layer` ("blk.N.*"
// with N >= first_layer); the embedding, output norm and output are not.
bool is_tensor_of_layers_from(const std::string& name, int first_layer);

}  // namespace moeserve
