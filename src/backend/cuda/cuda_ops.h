// The CUDA kernels behind the backend interface, as host functions that
// queue work on ctx.stream. Every pointer is device memory: activations,
// Weight::data (the CUDA backend hands ops a copy of the Weight whose data
// points into the uploaded weights), the parameter arrays inside
// RopeParams/MoeParams/SsmParams, and every index array. Shapes and meaning
// are those of the same-named op in backend/backend.h; results must agree
// with the CPU backend within float rounding (GPU correctness tests compare
// the two op by op).
#pragma once

#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_q8_rows.h"

namespace moeserve::cuda {

// ---- dense math (cuda_matmul.cu, cuda_moe.cu) ------------------------------

// out[t] = dequantized row tokens[t] of table {width, n_rows}.
void embed(Context& ctx, const Weight& table, const int32_t* tokens, int64_t n_tokens, float* out);

// The decode-path fusions (routing + plan + gather in one launch; gate, up
// and activation in one launch; a norm's int8 forms in the norm's launch),
// on unless MOESERVE_CUDA_FUSE=0: results are the same either way, and the
// switch rules them in or out when a GPU run disagrees with the CPU. Read
// once (cuda_moe.cu).
bool decode_fusions();

// y[t] = W·x[t] (matrix `expert` of a stacked weight). Any weight type of the
// backend interface; small batches as matrix-vector products straight from the
// blocks, large ones through tensor-core GEMMs. The products here and below
// that take `norm` use its int8 forms when x is its rows (the int8 kernels),
// instead of rounding x again.
void matmul(Context& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y, int expert = 0,
            const NormRows* norm = nullptr);

// y_i = W_i·x for several weights that read the same input (backend.h
// matmul_shared_input): x is rounded once per activation type, not per weight.
struct DeviceProjection {
    Weight w;
    float* y = nullptr;
};
void matmul_shared_input(Context& ctx, const float* x, int64_t n_tokens, std::span<const DeviceProjection> ps,
                         const NormRows* norm = nullptr);

// Per-head products with a stacked {in, out, n_head} weight (backend.h).
void matmul_heads(Context& ctx, const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride,
                  int64_t x_head_stride, float* y);

// The routed-expert FFN added into out (backend.h moe_ffn); each routed
// expert's weights are read once per batch for all tokens routed to it.
void moe_ffn(Context& ctx, const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps,
             const Weight& up_exps, const Weight& down_exps, const MoeParams& p, float* out,
             const NormRows* norm = nullptr);

// out = W_down · act(W_gate·x, W_up·x), overwriting out (backend.h dense_ffn).
void dense_ffn(Context& ctx, const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
               ExpertActivation act, float* out, const NormRows* norm = nullptr);

// ---- elementwise and normalization (cuda_elementwise.cu) -------------------

void rms_norm(Context& ctx, const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out);
// x += y, then out = rms_norm(x, w), in one launch: bit for bit add then rms_norm.
void add_rms_norm(Context& ctx, float* x, const float* y, const float* w, float eps, int64_t n_rows, int64_t n,
                  float* out);
// rms_norm (residual null) or add_rms_norm (x += residual first) that also
// writes out's int8 forms, q8_K and q8_0, in the same launch, for the
// products that read out next (scratch; bytes as round_rows_f32 makes
// them). Rows whose width is not a multiple of 256 or over 4096 get the
// plain norm and a NormRows with rows null.
NormRows rms_norm_rounded(Context& ctx, float* x, const float* residual, const float* w, float eps, int64_t n_rows,
                          int64_t n, float* out);
void rope(Context& ctx, float* x, int64_t n_tokens, int n_head, int head_dim, const int32_t* positions,
          const RopeParams& p);
// Per-head RMSNorm then RoPE in place, one launch (backend.h rms_norm_rope).
void rms_norm_rope(Context& ctx, float* x, const float* w, float eps, int64_t n_tokens, int n_head, int head_dim,
                   const int32_t* positions, const RopeParams& p);
// The same for q and k in one launch (backend.h rms_norm_rope_qk).
void rms_norm_rope_qk(Context& ctx, float* q, const float* wq, int n_head_q, float* k, const float* wk, int n_head_k,
                      float eps, int64_t n_tokens, int head_dim, const int32_t* positions, const RopeParams& p);
void add(Context& ctx, float* y, const float* x, int64_t n);
// y[r][0..n) += b[0..n) for every row r.
void add_row_broadcast(Context& ctx, float* y, const float* b, int64_t n_rows, int64_t n);
// dst row r (stride dst_stride floats) = src row r (stride src_stride), width values.
void copy_rows(Context& ctx, float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
               int64_t width);
// dst row i = src row rows[i] (rows: device indices), width values per row.
void gather_rows(Context& ctx, float* dst, const float* src, int64_t width, const int64_t* rows, int64_t n_rows);
void fill(Context& ctx, float* y, float value, int64_t n);
void gated_group_norm(Context& ctx, float* y, const float* z, int64_t z_stride, const float* w, float eps,
                      int64_t n_rows, int64_t n, int n_group);

// ---- KV cache and attention (cuda_attention.cu, cuda_mla.cu) ---------------

// One layer of the KV cache in device memory: row `cell` of K starts at
// k + cell * k_row_bytes (n_embd_k values of type_k), likewise V (v may be
// null: MLA). Rotation chunks as KvCache::k_rotation_chunk() (0 = none).
struct KvLayer {
    uint8_t* k = nullptr;
    uint8_t* v = nullptr;
    size_t k_row_bytes = 0, v_row_bytes = 0;
    GgmlType type_k = GgmlType::F16, type_v = GgmlType::F16;
    int64_t n_embd_k = 0, n_embd_v = 0;
    int k_rot_chunk = 0, v_rot_chunk = 0;
};

// Which cells each token attends to, in key order: token t reads the
// n_cells[t] cell indices at cells + offset[t]. max_cells bounds n_cells
// (for grid sizing); max_run is the longest run of consecutive tokens that
// share one list (a prompt's tokens do, a decode batch's sequences do not),
// 0 when not known.
struct AttentionCells {
    const int32_t* cells = nullptr;
    const int64_t* offset = nullptr;
    const int32_t* n_cells = nullptr;
    int32_t max_cells = 0;
    int32_t max_run = 0;
};

// Writes K and V rows ([n_tokens, n_embd_k/v]) to the given cells with the
// CPU backend's conversion rules (rotation, then f16/bf16/q8_0/q4_0/q4_1/
// q5_0/q5_1/iq4_nl rounding exactly as src/quant/quantize.cpp). v may be null.
void store_kv(Context& ctx, const KvLayer& layer, const float* k, const float* v, const int32_t* cells,
              int64_t n_tokens);

// Flash-style attention (one pass, online softmax, no score matrix) of q
// ([n_tokens, n_head, head_dim_k]) over each token's cells; GQA with
// n_head / n_head_kv query heads per KV head; out [n_tokens, n_head, head_dim_v].
// Rotates q itself when the cache's K is rotated, and un-rotates the output
// when V is (as the CPU backend does).
void attention(Context& ctx, const KvLayer& layer, const float* q, int64_t n_tokens, int n_head, int n_head_kv,
               int head_dim_k, int head_dim_v, const AttentionCells& cells, float scale, float* out);

// MLA absorbed attention over a K-only latent cache (backend.h attention_mla).
void attention_mla(Context& ctx, const KvLayer& layer, const float* q, int64_t n_tokens, int n_head, int n_latent,
                   const AttentionCells& cells, float scale, float* out);

// ---- Mamba2 (cuda_ssm.cu) ----------------------------------------------------

// A recurrent layer's states: sequence s's conv state [C][K-1] is at
// conv + s * seq_stride, its SSM state [H][P][N] at ssm + s * seq_stride
// (floats; both arrays live in one per-sequence block, see recurrent_state.h).
struct RecurrentLayer {
    float* conv = nullptr;
    float* ssm = nullptr;
    int64_t seq_stride = 0;
};

void ssm_conv(Context& ctx, const RecurrentLayer& state, const float* x, int64_t x_stride, int64_t n_tokens,
              const int32_t* seq_ids, const Weight& conv, const Weight& bias, float* out);
// Tokens of one sequence are in position order; sequences may interleave.
// Long runs of one sequence (prefill) use a chunked scan.
void ssm_scan(Context& ctx, const RecurrentLayer& state, const float* xbc, const float* dt, int64_t dt_stride,
              int64_t n_tokens, const int32_t* seq_ids, const SsmParams& p, float* y);

}  // namespace moeserve::cuda
