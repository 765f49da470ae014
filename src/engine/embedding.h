// Embeddings (llama-server --embeddings): the final hidden state of the
// prompt's tokens after the output norm, the input of the vocabulary
// projection, as llama.cpp returns it for a causal LM; pooled over the
// prompt and normalized as llama-server does (spec server-behaviour §5.13).
//
// The scheduler gets the hidden states through HiddenStateSource, so it
// depends on no more of the model than a function over a batch.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "memory/kv_cache.h"
#include "model/model.h"

namespace moeserve {

// Evaluates a batch as Model::forward does (same checks, same cache
// effects) and returns, for every token with want_logits set, in batch
// order, its hidden state after the output norm: [n_out, n_embd] row-major.
using HiddenStateSource = std::function<std::vector<float>(const Batch&, KvCache&)>;

// The model's hidden-state output.
HiddenStateSource model_hidden_states(Model& model);

// llama.cpp's pooling types (LLAMA_POOLING_TYPE_*; rank is reranking, which
// moeserve does not have).
enum class Pooling { none, mean, cls, last };

const char* pooling_name(Pooling p);
// "none", "mean", "cls" or "last"; nullopt for anything else.
std::optional<Pooling> parse_pooling(const std::string& name);
// The GGUF's {arch}.pooling_type value (0 none, 1 mean, 2 cls, 3 last, 4 rank).
std::optional<Pooling> pooling_from_gguf(uint32_t value);

// Scales v in place as llama.cpp's common_embd_normalize: -1 leaves it,
// 0 scales the largest magnitude to 32760 (int16 range), 2 to unit
// Euclidean length, any other p to unit p-norm (1 = taxicab). An all-zero
// vector stays zero.
void normalize_embedding(std::span<float> v, int embd_normalize);

// Collects the hidden states of one prompt, chunk by chunk, and pools them.
class EmbeddingPooler {
  public:
    EmbeddingPooler() = default;
    EmbeddingPooler(Pooling pooling, int64_t n_prompt, int64_t n_embd);

    // Whether the hidden state of prompt token i is needed.
    bool wants(int64_t i) const;
    // The hidden state of the next wanted token, in prompt order.
    void add(std::span<const float> row);
    // One pooled vector, normalized; or with Pooling::none one unnormalized
    // vector per token (as llama-server answers).
    std::vector<std::vector<float>> result(int embd_normalize) const;

  private:
    Pooling pooling_ = Pooling::none;
    int64_t n_prompt_ = 0;
    int64_t n_embd_ = 0;
    int64_t n_added_ = 0;
    std::vector<double> sum_;               // mean: running sum; cls/last: the chosen row
    std::vector<std::vector<float>> rows_;  // none: every token's row
};

}  // namespace moeserve
