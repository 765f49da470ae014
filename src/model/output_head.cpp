#include "model/output_head.h"

#include "model/weight_binder.h"

namespace moeserve {

OutputHead bind_output_head(WeightBinder& bind, const ModelParams& p, const Weight& token_embd) {
    OutputHead h;
    h.norm = bind.require("output_norm.weight", {p.n_embd});
    h.output = bind.optional("output.weight", {p.n_embd, p.n_vocab});
    if (!h.output) h.output = token_embd;
    return h;
}

void output_head_forward(Backend& be, const OutputHead& head, const ModelParams& p, const BatchView& batch,
                         const float* x, Activations& scratch, float* out) {
    be.begin_layer(p.n_layer);
    const int64_t n_out = static_cast<int64_t>(batch.out_rows.size());
    if (n_out == 0) return;
    const bool embeddings = batch.output == ForwardOutput::embeddings;
    const int64_t width = embeddings ? p.n_embd : p.n_vocab;
    // Backend memory the host can read is written in place; otherwise the
    // result is computed after the normed rows in scratch and read back.
    const bool in_place = be.memory().is_host();
    scratch.resize(n_out * p.n_embd + (in_place ? 0 : n_out * width));
    float* normed = scratch.data();
    float* result = in_place ? out : normed + n_out * p.n_embd;
    be.gather_rows(normed, x, p.n_embd, batch.out_rows);
    if (embeddings) {  // the normed hidden states are the answer
        be.rms_norm(normed, head.norm.f32(), p.rms_eps, n_out, p.n_embd, result);
    } else {
        be.rms_norm(normed, head.norm.f32(), p.rms_eps, n_out, p.n_embd, normed);
        be.matmul(head.output, normed, n_out, result);
    }
    if (!in_place) be.read(out, result, n_out * width);
}

}  // namespace moeserve
