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
    // nemotron_h_moe / nemotron_h only: one letter per layer, M = Mamba2,
    // * = attention, E = MoE, - = dense ReLU² MLP of width n_ff (nemotron_h)
    // (n_layer is its length); the Mamba2 shape; the shared expert.
    std::string layer_pattern;
    int ssm_n_head = 0;    // H
    int ssm_head_dim = 0;  // P; d_inner = H*P
    int ssm_d_state = 0;   // N
    int ssm_n_group = 0;   // G
    int ssm_d_conv = 4;
    int n_ff_shexp = 0;
    float expert_weights_scale = 2.5f;
    // deepseek2 (GLM-4.7-Flash layout, MLA) only: the first n_layer_dense_lead
    // layers have a dense FFN of width n_ff; the others n_expert routed experts
    // and n_expert_shared shared experts of width n_ff_exp.
    int n_ff = 0;
    int n_layer_dense_lead = 0;
    int n_expert_shared = 0;
    int q_lora_rank = 0;
    int kv_lora_rank = 0;
    int qk_nope_head_dim = 0;
    int qk_rope_head_dim = 0;
    int v_head_dim = 0;
};

// The built-in demo model: tiny, F16, written by `moeserve demo`.
SynthSpec demo_spec();
// The benchmark model of the engine issue: qwen3moe layer width (hidden
// 2048, 32 query / 4 KV heads of 128, 128 experts top-8, expert FFN 768),
// 4 layers, a vocabulary of 704 tokens.
SynthSpec bench_spec(FileMix mix);
// The benchmark model of the nemotron_h_moe issue: the layers MEM*E of
// Nemotron-3-Nano-30B-A3B at full width (hidden 2688; Mamba2 64 heads × 64,
// state 128, 8 groups; attention 32 / 2 KV heads × 128; 128 experts top-6 of
// 1856 and a 3712-wide shared expert), a vocabulary of 704 tokens.
SynthSpec nemotron_bench_spec(FileMix mix);

void write_synth_model(const std::string& path, const SynthSpec& spec);
// The deepseek2 writer (synth_deepseek2.cpp), which write_synth_model calls.
void write_synth_deepseek2(const std::string& path, const SynthSpec& spec);

}  // namespace moeserve
