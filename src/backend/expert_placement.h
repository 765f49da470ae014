// Where a GPU run keeps the routed experts: llama.cpp's --cpu-moe,
// --n-cpu-moe N and -ot REGEX=BUFTYPE, resolved against a model's tensor
// names into the layers whose experts stay in host memory. Those layers'
// routed-expert FFNs then run on the CPU, everything else on the GPU (the
// split backend, split_backend.h): the usual way to serve a 30B-A3B model
// with a long context on a card that cannot hold the experts and the cache.
//
// moeserve moves a layer's routed experts as a whole, with the router that
// picks them (the expert FFN is one op); other tensors stay where their
// layer runs. A pattern that would put anything else in host memory is
// reported (HostPlacement::other_host_tensors) and refused on a GPU run; a
// CPU run has everything in host memory already.
#pragma once

#include <span>
#include <string>
#include <vector>

namespace moeserve {

class GgufFile;

struct ExpertPlacementFlags {
    bool cpu_moe = false;                      // --cpu-moe: every layer's experts
    int n_cpu_moe = 0;                         // --n-cpu-moe N: the experts of layers 0..N-1
    std::vector<std::string> override_tensor;  // -ot: REGEX=BUFTYPE rules, in command-line order

    bool any() const { return cpu_moe || n_cpu_moe > 0 || !override_tensor.empty(); }
};

struct HostPlacement {
    std::vector<bool> host_experts;               // per layer: its routed experts stay in host memory
    std::vector<std::string> other_host_tensors;  // tensors a rule puts in host memory that are not experts
    std::vector<std::string> notes;               // layers moved whole because a rule matched part of them

    bool any_host_experts() const;
};

// The layer N of a "blk.N.*" tensor; -1 for the others (the embedding,
// the output norm and head).
int tensor_layer(const std::string& name);

// The layer of a routed-expert tensor ("blk.N.ffn_{gate,up,down,gate_up}_exps.*",
// also llama.cpp's "_chexps"), or -1.
int routed_expert_layer(const std::string& name);

// The layer of a tensor the expert FFN op reads: a routed expert, the
// router (ffn_gate_inp) or its selection bias (exp_probs_b); else -1.
int expert_ffn_layer(const std::string& name);

// Resolves the flags over a model's tensor names, as llama.cpp places
// tensors: per tensor, the first -ot rule whose regex is found in the name
// decides (CPU or CUDA_Host: host memory; CUDA0: the GPU), then --cpu-moe
// and --n-cpu-moe (llama.cpp's expert patterns). Throws
// std::invalid_argument for a malformed rule, a regex that does not
// compile, or an unknown buffer type, naming it.
HostPlacement resolve_expert_placement(std::span<const std::string> tensor_names, int n_layer,
                                       const ExpertPlacementFlags& flags);
// The same over a model file's tensors.
HostPlacement resolve_expert_placement(const GgufFile& file, int n_layer, const ExpertPlacementFlags& flags);

// "0-9, 20, 22-23": the layers whose flag is set.
std::string describe_layers(const std::vector<bool>& layers);

}  // namespace moeserve
