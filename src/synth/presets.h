// Named shapes for `moeserve synth`: the three target models at full size
// (real widths, layer counts and vocabulary sizes; placeholder token
// strings) and tiny models of the same layouts for tests and demos (the
// shapes of the llama.cpp fixture models).
//
//   qwen3-coder-30b-a3b      qwen3moe        48 layers, 30.53 B parameters
//   nemotron-3-nano-30b-a3b  nemotron_h_moe  52 layers, 31.58 B parameters
//   glm-4.7-flash            deepseek2       47 layers, 29.94 B parameters
//   tiny-qwen3moe, tiny-nemotron-h-moe, tiny-glm47flash
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "synth/synth_model.h"

namespace moeserve {

struct SynthPreset {
    const char* name;
    const char* description;
};

const std::vector<SynthPreset>& synth_presets();

// The spec of a preset with the given weight mix, or nullopt for an unknown name.
std::optional<SynthSpec> synth_preset(const std::string& name, FileMix mix);

// Keeps the first n_layer layers (for CPU benchmarks of full-width layers).
// Throws std::invalid_argument when n_layer is not between 1 and the
// preset's layer count.
void cut_layers(SynthSpec& spec, int n_layer);

// Layers the spec will write (nemotron_h_moe: its pattern's length).
int synth_layer_count(const SynthSpec& spec);

}  // namespace moeserve
