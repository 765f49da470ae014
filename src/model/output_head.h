// The end of every forward pass: the final RMSNorm and the vocabulary
// projection, computed only for the tokens whose logits are wanted.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "model/model.h"
#include "model/weight_binder.h"

namespace moeserve {

struct OutputHead {
    Weight norm;    // output_norm.weight {n_embd}
    Weight output;  // output.weight {n_embd, n_vocab}, or token_embd.weight when tied
};

// Binds output_norm and output, falling back to token_embd for a tied head.
OutputHead bind_output_head(WeightBinder& bind, const ModelParams& p, const Weight& token_embd);

// logits[i] = W_out · RMSNorm(x[out_rows[i]]); x is [n_tokens, n_embd]. With
// batch.output == embeddings it writes RMSNorm(x[out_rows[i]]) instead
// ([n_out, n_embd]). x is in the backend's memory, out in host memory. It
// runs as layer n_layer (Backend::begin_layer), after the model's layers.
void output_head_forward(Backend& be, const OutputHead& head, const ModelParams& p, const BatchView& batch,
                         const float* x, Activations& scratch, float* out);

}  // namespace moeserve
