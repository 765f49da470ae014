// A backend that runs every op on another backend chosen per op: the base of
// the layer split (split_backend.h), which picks the CPU or the GPU by layer.
// Ops that name a layer (the cache and recurrent-state ops) ask route(layer);
// the others ask route(kCurrentLayer), meaning the layer the model last
// announced with begin_layer.
#pragma once

#include "backend/backend.h"

namespace moeserve {

class ForwardingBackend : public Backend {
  public:
    static constexpr int kCurrentLayer = -1;

    void copy_rows(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t width) override {
        route(kCurrentLayer).copy_rows(dst, dst_stride, src, src_stride, n_rows, width);
    }
    void gather_rows(float* dst, const float* src, int64_t width, std::span<const int64_t> rows) override {
        route(kCurrentLayer).gather_rows(dst, src, width, rows);
    }
    void fill(float* y, float value, int64_t n) override { route(kCurrentLayer).fill(y, value, n); }
    void read(float* host_dst, const float* src, int64_t n) override { route(kCurrentLayer).read(host_dst, src, n); }
    void embed(const Weight& table, std::span<const int32_t> tokens, float* out) override {
        route(kCurrentLayer).embed(table, tokens, out);
    }
    void rms_norm(const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) override {
        route(kCurrentLayer).rms_norm(x, w, eps, n_rows, n, out);
    }
    void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert = 0) override {
        route(kCurrentLayer).matmul(w, x, n_tokens, y, expert);
    }
    void matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) override {
        route(kCurrentLayer).matmul_shared_input(x, n_tokens, projections);
    }
    void rope(float* x, int64_t n_tokens, int n_head, int head_dim, std::span<const int32_t> positions,
              const RopeParams& p) override {
        route(kCurrentLayer).rope(x, n_tokens, n_head, head_dim, positions, p);
    }
    void add(float* y, const float* x, int64_t n) override { route(kCurrentLayer).add(y, x, n); }
    void rms_norm_rope(float* x, const float* w, float eps, int64_t n_tokens, int n_head, int head_dim,
                       std::span<const int32_t> positions, const RopeParams& p) override {
        route(kCurrentLayer).rms_norm_rope(x, w, eps, n_tokens, n_head, head_dim, positions, p);
    }
    void rms_norm_rope_qk(float* q, const float* wq, int n_head_q, float* k, const float* wk, int n_head_k, float eps,
                          int64_t n_tokens, int head_dim, std::span<const int32_t> positions,
                          const RopeParams& p) override {
        route(kCurrentLayer).rms_norm_rope_qk(q, wq, n_head_q, k, wk, n_head_k, eps, n_tokens, head_dim, positions, p);
    }
    void add_rms_norm(float* x, const float* y, const float* w, float eps, int64_t n_rows, int64_t n,
                      float* out) override {
        route(kCurrentLayer).add_rms_norm(x, y, w, eps, n_rows, n, out);
    }
    void add_row_broadcast(float* y, const float* b, int64_t n_rows, int64_t n) override {
        route(kCurrentLayer).add_row_broadcast(y, b, n_rows, n);
    }
    void store_kv(KvCache& cache, int layer, const float* k, const float* v, std::span<const int32_t> cells) override {
        route(layer).store_kv(cache, layer, k, v, cells);
    }
    void shift_keys(KvCache& cache, int layer, std::span<const int32_t> cells, int n_head_kv, int head_dim,
                    int32_t delta, const RopeParams& p) override {
        route(layer).shift_keys(cache, layer, cells, n_head_kv, head_dim, delta, p);
    }
    void attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                   const AttentionRows& rows, float scale, float* out) override {
        route(layer).attention(cache, layer, q, n_tokens, n_head, rows, scale, out);
    }
    void matmul_heads(const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride, int64_t x_head_stride,
                      float* y) override {
        route(kCurrentLayer).matmul_heads(w, x, n_tokens, x_token_stride, x_head_stride, y);
    }
    void attention_mla(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head, int n_latent,
                       const AttentionRows& rows, float scale, float* out) override {
        route(layer).attention_mla(cache, layer, q, n_tokens, n_head, n_latent, rows, scale, out);
    }
    void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                 const Weight& down_exps, const MoeParams& p, float* out) override {
        route(kCurrentLayer).moe_ffn(x, n_tokens, router, gate_exps, up_exps, down_exps, p, out);
    }
    void dense_ffn(const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
                   ExpertActivation act, float* out) override {
        route(kCurrentLayer).dense_ffn(x, n_tokens, gate, up, down, act, out);
    }
    void ssm_conv(KvCache& cache, int layer, const float* x, int64_t x_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const Weight& conv, const Weight& bias, float* out) override {
        route(layer).ssm_conv(cache, layer, x, x_stride, n_tokens, seq_ids, conv, bias, out);
    }
    void ssm_scan(KvCache& cache, int layer, const float* xbc, const float* dt, int64_t dt_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const SsmParams& p, float* y) override {
        route(layer).ssm_scan(cache, layer, xbc, dt, dt_stride, n_tokens, seq_ids, p, y);
    }
    void gated_group_norm(float* y, const float* z, int64_t z_stride, const float* w, float eps, int64_t n_rows,
                          int64_t n, int n_group) override {
        route(kCurrentLayer).gated_group_norm(y, z, z_stride, w, eps, n_rows, n, n_group);
    }

  protected:
    // The backend that runs an op of `layer` (kCurrentLayer: of the current layer).
    virtual Backend& route(int layer) = 0;
};

}  // namespace moeserve
