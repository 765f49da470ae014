// A loaded model: one architecture's forward pass over batches of tokens
// from one or more sequences, with a KV cache.
//
// Architectures register a loader by their general.architecture name; a
// file of any other architecture is refused by name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "memory/kv_cache.h"
#include "model/model_params.h"

namespace moeserve {

// Tokens to evaluate. Each sequence's tokens must continue it: a token of
// sequence s has position seq_length(s) + (its index among s's tokens in
// this batch). Logits come back for the tokens with want_logits set, in
// batch order.
struct Batch {
    std::vector<int32_t> tokens;
    std::vector<int32_t> positions;
    std::vector<int32_t> seq_ids;
    std::vector<uint8_t> want_logits;

    void add(int32_t token, int32_t pos, int32_t seq, bool logits) {
        tokens.push_back(token);
        positions.push_back(pos);
        seq_ids.push_back(seq);
        want_logits.push_back(logits ? 1 : 0);
    }
    size_t size() const { return tokens.size(); }
    void clear() { *this = Batch{}; }
};

// What a forward pass returns for each wanted token.
enum class ForwardOutput {
    logits,      // n_vocab values
    embeddings,  // n_embd values: the final hidden state after the output norm (the vocabulary projection's input)
};

// What a forward pass sees of the batch once its cells are allocated.
struct BatchView {
    std::span<const int32_t> tokens;
    std::span<const int32_t> positions;
    std::span<const int32_t> seq_ids;  // the sequence of each token (its recurrent state, if any)
    std::span<const int32_t> cells;    // the cache cell each token is written to
    AttentionRows rows;                // the cells each token attends to
    std::vector<int64_t> out_rows;     // indices of the tokens whose logits are wanted
    ForwardOutput output = ForwardOutput::logits;
};

class Model {
  public:
    virtual ~Model() = default;

    const ModelParams& params() const { return params_; }
    const GgufFile& file() const { return *file_; }
    Backend& backend() { return *backend_; }

    // KV cache layout for this model: n_cells cells shared by n_seq sequences.
    virtual KvCacheConfig kv_cache_config(int64_t n_cells, int n_seq, GgmlType type_k, GgmlType type_v) const;

    // Evaluates a batch and returns n_vocab logits (or, for embeddings,
    // n_embd hidden-state values) per wanted token, row-major. Checks tokens
    // and positions and allocates cache cells; on an error nothing is
    // written to the cache.
    std::vector<float> forward(const Batch& batch, KvCache& cache, ForwardOutput output = ForwardOutput::logits);

    // Context shift (llama-server's --context-shift): empty when this model
    // can drop tokens from the middle of a sequence, else why it cannot.
    virtual std::string context_shift_refusal() const;
    // Drops n tokens of a sequence from position `first` on; the later ones
    // move up n positions and their cached keys are rotated to match.
    void shift_context(KvCache& cache, int seq, int64_t first, int64_t n);

  protected:
    // What the architectures whose every attention layer caches RoPE-rotated
    // keys (and nothing else position-dependent) return from
    // context_shift_refusal(): empty unless YaRN scaling is on, whose
    // magnitude factor a second rotation would apply twice.
    std::string rope_keys_shift_refusal() const;

    Model(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend, ModelParams params)
        : file_(std::move(file)), backend_(std::move(backend)), params_(std::move(params)) {}

    // The architecture's forward pass; writes logits [out_rows, n_vocab]
    // (or [out_rows, n_embd] for batch.output == embeddings).
    virtual void forward_batch(const BatchView& batch, KvCache& cache, float* logits) = 0;

    // Where activations live: the backend's memory (members are declared
    // `Activations x_{mem()}`).
    DeviceMemory& mem() const { return backend_->memory(); }

    std::shared_ptr<const GgufFile> file_;
    std::shared_ptr<Backend> backend_;
    ModelParams params_;
};

using ModelLoader = std::function<std::unique_ptr<Model>(std::shared_ptr<const GgufFile>, std::shared_ptr<Backend>,
                                                         const RopeOverrides&)>;

bool register_architecture(const std::string& arch, ModelLoader loader);
std::vector<std::string> supported_architectures();

// Opens the model in a GGUF file, with RoPE settings from the command line
// over the file's. Throws GgufError for a file it refuses.
std::unique_ptr<Model> load_model(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                  const RopeOverrides& rope = {});

}  // namespace moeserve

#define MOESERVE_ARCHITECTURE(name, loader)                                \
    static const bool moeserve_arch_registered_##loader [[maybe_unused]] = \
        ::moeserve::register_architecture(name, loader)
