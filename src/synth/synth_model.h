// Synthetic models: real shapes and tensor types, random weights. They let
// benchmarks, the demo and memory planning run full-size layer widths with
// no download. Weights are random blocks with sane scales (finite, no NaN),
// the vocabulary is byte-level BPE (every byte a token) plus filler tokens.
#pragma once

#include <cstdint>
#include <string>

#include "synth/quant_mix.h"

namespace moeserve {

struct SynthSpec {
    std::string arch = "qwen3moe";
    std::string name = "moeserve-synth";
    int n_layer = 2;
    int n_embd = 128;
    int n_head = 4;
    int n_head_kv = 2;
    int head_dim = 64;
    int n_expert = 8;
    int n_expert_used = 2;
    int n_ff_exp = 128;
    int n_vocab = 259;  // at least 256 bytes + 3 specials
    int n_ctx_train = 4096;
    float rope_freq_base = 1000000.0f;
    FileMix mix = FileMix::F16;
    uint64_t seed = 42;
    bool header_only = false;  // tensor infos only (for inspect and plan)
};

// The built-in demo model: tiny, F16, written by `moeserve demo`.
SynthSpec demo_spec();
// The benchmark model of the engine issue: qwen3moe layer width (hidden
// 2048, 32 query / 4 KV heads of 128, 128 experts top-8, expert FFN 768),
// 4 layers, a vocabulary of 704 tokens.
SynthSpec bench_spec(FileMix mix);

void write_synth_model(const std::string& path, const SynthSpec& spec);

}  // namespace moeserve
