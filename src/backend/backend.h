// The backend interface: the small set of ops a forward pass needs. It is
// the only thing the CPU and CUDA code share. Architecture files call these
// ops in order; they never see threads, SIMD or devices.
//
// Conventions: activations are row-major f32, one row per token
// ([n_tokens, width]), in the backend's memory (memory(): host memory for
// the CPU, GPU memory for CUDA) — models allocate them there (Activations)
// and never read them on the host. Weights are model tensors in their GGUF
// type, read in place; a weight {in, out} is `out` rows of `in` elements and
// y = W·x is one dot product per row. Weight::data and the parameter arrays
// in RopeParams/MoeParams/SsmParams are host addresses in the mapped file; a
// GPU backend maps them to its uploaded copy (load_weights). Index arrays
// (tokens, positions, cells) are host spans, given once per forward pass to
// begin_batch.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "memory/device_memory.h"
#include "quant/ggml_type.h"

namespace moeserve {

class GgufFile;
class KvCache;

// A model tensor, read in place from the mapped file.
struct Weight {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::array<int64_t, 4> ne{1, 1, 1, 1};
    size_t row_bytes = 0;     // bytes of one row of ne[0] elements
    size_t matrix_bytes = 0;  // bytes of one ne[0] x ne[1] matrix (one expert)
    const uint8_t* data = nullptr;

    explicit operator bool() const { return data != nullptr; }
    int64_t in() const { return ne[0]; }
    int64_t out() const { return ne[1]; }
    // The f32 values of a 1-D F32 tensor (norm weights, biases).
    const float* f32() const { return reinterpret_cast<const float*>(data); }
};

enum class RopeMode { Normal, Neox };

struct RopeParams {
    RopeMode mode = RopeMode::Neox;
    int n_rot = 0;  // dims rotated per head, from the start
    float freq_base = 10000.0f;
    float freq_scale = 1.0f;
    float ext_factor = 0.0f;  // YaRN mix, 0 = off
    float attn_factor = 1.0f;
    float beta_fast = 32.0f;
    float beta_slow = 1.0f;
    int n_ctx_orig = 0;
    const float* freq_factors = nullptr;  // per-pair divisors, or null
};

enum class GatingFunc { Softmax, Sigmoid };
enum class ExpertActivation { SwiGlu, ReluSquared };

struct MoeParams {
    int n_expert = 0;
    int n_expert_used = 0;
    GatingFunc gating = GatingFunc::Softmax;
    const float* selection_bias = nullptr;  // exp_probs_b: chooses experts, never weights them
    bool normalize_weights = true;
    float weights_scale = 0.0f;  // 0 or 1: no scaling
    ExpertActivation activation = ExpertActivation::SwiGlu;
    // Latent MoE (Nemotron-3-Super): the experts read this [n_tokens,
    // up_exps.in()] instead of x, which then only feeds the router; the
    // output has the experts' width. Null: the experts read x.
    const float* expert_input = nullptr;
};

// A Mamba2 mixer's shape and per-head parameters (spec architectures §6.7).
// C = H*P + 2*G*N conv channels: x [H][P], then B [G][N], then C [G][N].
struct SsmParams {
    int n_head = 0;                  // H
    int head_dim = 0;                // P
    int d_state = 0;                 // N
    int n_group = 0;                 // G; head h uses group h / (H/G)
    const float* dt_bias = nullptr;  // {H}
    const float* a = nullptr;        // {H}, already -exp(A_log)
    const float* d = nullptr;        // {H}, the skip
};

// Which cached cells each token of a batch attends to.
struct AttentionRows {
    std::span<const int32_t* const> cells;  // per token: cell indices in key order
    std::span<const int32_t> n_cells;       // per token: how many
};

// The host-side inputs of one forward pass, as its ops will see them.
struct BatchInputs {
    std::span<const int32_t> tokens;
    std::span<const int32_t> positions;
    std::span<const int32_t> seq_ids;
    std::span<const int32_t> cells;  // the cache cell each token is written to
    AttentionRows rows;
};

// Which tensors (by GGUF name) a backend copies into its own memory at load;
// empty: all of them.
using TensorFilter = std::function<bool(const std::string& name)>;

class Backend {
  public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    virtual int n_threads() const = 0;

    // Where activations, the KV cache and recurrent states are allocated.
    virtual DeviceMemory& memory() = 0;
    // Whether every op runs on the host (the CPU backend); false when any
    // layer runs on a GPU, split or not.
    virtual bool runs_on_host() { return memory().is_host(); }
    // Called once when a model has bound its weights (a GPU backend uploads
    // the file's tensor data here, with progress on stderr): the tensors
    // `upload` accepts, or all of them.
    virtual void load_weights(const GgufFile& file, const TensorFilter& upload) {}
    // Called before each forward pass; the spans given to this pass's ops
    // are these (a GPU backend uploads them once here). They stay valid
    // until the pass ends.
    virtual void begin_batch(const BatchInputs& inputs) {}
    // Called when the pass has written its outputs (a GPU backend may wait
    // for the device here).
    virtual void end_batch() {}
    // Runs one forward pass: `pass` calls the ops, reading the outputs back
    // at its end. The CUDA backend may run `pass` more than once (to check a
    // captured graph against it, to capture it, or op by op after all), so
    // it must change nothing outside the backend's ops and its outputs.
    virtual void run_pass(const BatchInputs& inputs, const std::function<void()>& pass) {
        begin_batch(inputs);
        pass();
        end_batch();
    }
    // Called by a model before the ops of layer `layer` (0-based) and, with
    // the layer count, before its output head; the embedding lookup comes
    // first, as layer 0's. A backend that splits a model between devices
    // (split_backend.h) routes the ops that follow by it.
    virtual void begin_layer(int layer) {}
    // Waits until every op queued so far has finished (a GPU backend's
    // stream), so the host may read what they wrote.
    virtual void synchronize() {}
    // One line on how the backend ran its passes so far, for benchmarks
    // (the CUDA backend: graphs captured and replayed); empty when there is
    // nothing to say.
    virtual std::string pass_summary() { return {}; }

    // Data movement within the backend's memory.
    // dst row r (stride dst_stride floats) = src row r (stride src_stride), `width` values each.
    virtual void copy_rows(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
                           int64_t width) = 0;
    // dst row i = src row rows[i], `width` values each.
    virtual void gather_rows(float* dst, const float* src, int64_t width, std::span<const int64_t> rows) = 0;
    virtual void fill(float* y, float value, int64_t n) = 0;
    // Copies n floats of backend memory to host memory.
    virtual void read(float* host_dst, const float* src, int64_t n) {
        memory().download(host_dst, src, n * sizeof(float));
    }

    // out[t] = dequantized row tokens[t] of table {width, n_rows}.
    virtual void embed(const Weight& table, std::span<const int32_t> tokens, float* out) = 0;

    // out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of width n.
    // out may equal x.
    virtual void rms_norm(const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) = 0;

    // y[t] = W·x[t] for t < n_tokens: x is [n_tokens, in], y is [n_tokens, out].
    // expert selects matrix `expert` of a stacked {in, out, n_expert} weight.
    virtual void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert = 0) = 0;

    // Several products over the same input x ([n_tokens, in]) at once, e.g.
    // the Q, K and V projections: one pass of work for all of them.
    struct Projection {
        const Weight* w;
        float* y;  // [n_tokens, w->out()]
    };
    virtual void matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) = 0;

    // Rotates the first n_rot dims of each head in place. x is
    // [n_tokens, n_head, head_dim]; positions has n_tokens entries.
    virtual void rope(float* x, int64_t n_tokens, int n_head, int head_dim, std::span<const int32_t> positions,
                      const RopeParams& p) = 0;

    // Per-head RMSNorm (weight w of head_dim values, the same for every
    // head) and then RoPE, in place over x [n_tokens, n_head, head_dim]: a
    // QK-norm followed by the rotation. One op so that a backend can do both
    // in one pass; the same results as rms_norm then rope, up to the order of
    // the norm's additions.
    virtual void rms_norm_rope(float* x, const float* w, float eps, int64_t n_tokens, int n_head, int head_dim,
                               std::span<const int32_t> positions, const RopeParams& p) {
        rms_norm(x, w, eps, n_tokens * n_head, head_dim, x);
        rope(x, n_tokens, n_head, head_dim, positions, p);
    }

    // The QK-norm and RoPE of both q [n_tokens, n_head_q, head_dim] and k
    // [n_tokens, n_head_k, head_dim] (weights wq, wk): rms_norm_rope of each,
    // one op so that a backend can do both in one pass.
    virtual void rms_norm_rope_qk(float* q, const float* wq, int n_head_q, float* k, const float* wk, int n_head_k,
                                  float eps, int64_t n_tokens, int head_dim, std::span<const int32_t> positions,
                                  const RopeParams& p) {
        rms_norm_rope(q, wq, eps, n_tokens, n_head_q, head_dim, positions, p);
        rms_norm_rope(k, wk, eps, n_tokens, n_head_k, head_dim, positions, p);
    }

    // y += x, elementwise over n values.
    virtual void add(float* y, const float* x, int64_t n) = 0;
    // The residual add and the norm after it: x += y over n_rows rows of
    // width n, then out = rms_norm(x, w). One op so that a backend can do
    // both in one pass (the CUDA backend: one launch); the same results as
    // add then rms_norm.
    virtual void add_rms_norm(float* x, const float* y, const float* w, float eps, int64_t n_rows, int64_t n,
                              float* out) {
        add(x, y, n_rows * n);
        rms_norm(x, w, eps, n_rows, n, out);
    }
    // y[r] += b for each of n_rows rows of width n (a bias).
    virtual void add_row_broadcast(float* y, const float* b, int64_t n_rows, int64_t n) = 0;

    // Writes K and V rows ([n_tokens, n_head_kv * head_dim]) of one layer
    // into the cache at the given cells, converting to the cache types.
    virtual void store_kv(KvCache& cache, int layer, const float* k, const float* v,
                          std::span<const int32_t> cells) = 0;

    // Context shift: rotates the cached keys of one layer at `cells` by
    // `delta` positions (RoPE composes: rope(p) then rope(delta) is
    // rope(p + delta)), through the cache's rounding and rotation rules as
    // store_kv writes them. The first n_rot dims of each of n_head_kv heads.
    virtual void shift_keys(KvCache& cache, int layer, std::span<const int32_t> cells, int n_head_kv, int head_dim,
                            int32_t delta, const RopeParams& p) = 0;

    // Scaled-dot-product attention of q ([n_tokens, n_head, head_dim_k])
    // over each token's cells of one layer; out is [n_tokens, n_head, head_dim_v].
    virtual void attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                           const AttentionRows& rows, float scale, float* out) = 0;

    // Per-head products with a stacked {in, out, n_head} weight, one matrix
    // per head: y[t][h] = W_h · x[t][h], where x[t][h] is the `in` values at
    // x + t*x_token_stride + h*x_head_stride; y is [n_tokens, n_head, out].
    // All heads run in one parallel pass.
    virtual void matmul_heads(const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride,
                              int64_t x_head_stride, float* y) = 0;

    // Multi-head latent attention (MLA, absorbed form) over a K-only cache
    // whose row per token is [latent (n_latent) | RoPE part], shared by all
    // heads; V is the first n_latent values of that row. q is [n_tokens,
    // n_head, row width] (absorbed query first, RoPE part last); out is
    // [n_tokens, n_head, n_latent], the attention-weighted latent per head.
    virtual void attention_mla(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                               int n_latent, const AttentionRows& rows, float scale, float* out) = 0;

    // The whole routed-expert FFN: router logits = W_r·x, gating, top-k,
    // weights, expert FFNs (read once per batch for all their tokens), and
    // the weighted sum, added into out ([n_tokens, n_embd]).
    virtual void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps,
                         const Weight& up_exps, const Weight& down_exps, const MoeParams& p, float* out) = 0;

    // Dense FFN: out = W_down · act(W_gate·x, W_up·x); gate may be empty for
    // a non-gated activation. Overwrites out ([n_tokens, n_embd]).
    virtual void dense_ffn(const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
                           ExpertActivation act, float* out) = 0;

    // Mamba2 ops. Each token continues its sequence's recurrent state in the
    // cache (seq_ids[t]); a sequence's tokens come in position order, and
    // sequences may interleave within the batch.

    // Causal depthwise conv1d with kernel conv {K, C} over each sequence's
    // raw inputs (row t: the C values at x + t*x_stride), continuing from and
    // updating the sequence's conv state (its last K-1 inputs), then + bias
    // (may be empty) and SiLU. out is [n_tokens, C].
    virtual void ssm_conv(KvCache& cache, int layer, const float* x, int64_t x_stride, int64_t n_tokens,
                          std::span<const int32_t> seq_ids, const Weight& conv, const Weight& bias, float* out) = 0;

    // The selective scan, token by token per sequence and head h (group g):
    // dt = softplus(dt_raw[h] + dt_bias[h]), S_h = S_h*exp(dt*A[h]) + B_g ⊗ (x_h*dt),
    // y_h = S_h·C_g + D[h]*x_h. xbc is [n_tokens, C] (x | B | C, after the
    // conv); dt_raw row t is the H values at dt + t*dt_stride; y is
    // [n_tokens, H*P]. Updates the sequences' SSM states [H][P][N].
    virtual void ssm_scan(KvCache& cache, int layer, const float* xbc, const float* dt, int64_t dt_stride,
                          int64_t n_tokens, std::span<const int32_t> seq_ids, const SsmParams& p, float* y) = 0;

    // Gated grouped RMSNorm: y := RMSNorm(y ⊙ silu(z)) * w, normalized over
    // each of n_group contiguous groups of a row. y is [n_rows, n]; z row t
    // is at z + t*z_stride; w is {n}.
    virtual void gated_group_norm(float* y, const float* z, int64_t z_stride, const float* w, float eps, int64_t n_rows,
                                  int64_t n, int n_group) = 0;
};

// The CPU backend with n_threads threads (the caller's thread included).
std::unique_ptr<Backend> make_cpu_backend(int n_threads);

}  // namespace moeserve
