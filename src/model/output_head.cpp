#include "model/output_head.h"

#include <algorithm>

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
                         const float* x, std::vector<float>& scratch, float* logits) {
    const int64_t n_out = static_cast<int64_t>(batch.out_rows.size());
    if (n_out == 0) return;
    scratch.resize(n_out * p.n_embd);
    for (int64_t i = 0; i < n_out; ++i)
        std::copy(x + batch.out_rows[i] * p.n_embd, x + (batch.out_rows[i] + 1) * p.n_embd,
                  scratch.begin() + i * p.n_embd);
    be.rms_norm(scratch.data(), head.norm.f32(), p.rms_eps, n_out, p.n_embd, scratch.data());
    be.matmul(head.output, scratch.data(), n_out, logits);
}

}  // namespace moeserve
