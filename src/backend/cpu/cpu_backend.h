// The CPU backend: ops on host memory, threaded with a ThreadPool, with
// matrix products computed straight from the quantized weight blocks (the
// activations are quantized to each weight type's partner type first, as
// ggml does, so results match llama.cpp's CPU backend closely).
#pragma once

#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cache_line_vector.h"
#include "backend/cpu/latent_scores.h"
#include "backend/cpu/thread_pool.h"

namespace moeserve {

class CpuBackend final : public Backend {
  public:
    explicit CpuBackend(int n_threads) : pool_(n_threads) {}

    std::string name() const override { return "cpu"; }
    int n_threads() const override { return pool_.size(); }
    DeviceMemory& memory() override { return host_memory(); }

    void copy_rows(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t width) override;
    void gather_rows(float* dst, const float* src, int64_t width, std::span<const int64_t> rows) override;
    void fill(float* y, float value, int64_t n) override;
    void read(float* host_dst, const float* src, int64_t n) override;
    void add_row_broadcast(float* y, const float* b, int64_t n_rows, int64_t n) override;

    void embed(const Weight& table, std::span<const int32_t> tokens, float* out) override;
    void rms_norm(const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) override;
    void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert) override;
    void matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) override;
    void rope(float* x, int64_t n_tokens, int n_head, int head_dim, std::span<const int32_t> positions,
              const RopeParams& p) override;
    void add(float* y, const float* x, int64_t n) override;
    void store_kv(KvCache& cache, int layer, const float* k, const float* v, std::span<const int32_t> cells) override;
    void shift_keys(KvCache& cache, int layer, std::span<const int32_t> cells, int n_head_kv, int head_dim,
                    int32_t delta, const RopeParams& p) override;
    void attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                   const AttentionRows& rows, float scale, float* out) override;
    void matmul_heads(const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride, int64_t x_head_stride,
                      float* y) override;
    void attention_mla(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head, int n_latent,
                       const AttentionRows& rows, float scale, float* out) override;
    void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                 const Weight& down_exps, const MoeParams& p, float* out) override;
    void dense_ffn(const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
                   ExpertActivation act, float* out) override;
    // Mamba2 (cpu_ssm.cpp).
    void ssm_conv(KvCache& cache, int layer, const float* x, int64_t x_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const Weight& conv, const Weight& bias, float* out) override;
    void ssm_scan(KvCache& cache, int layer, const float* xbc, const float* dt, int64_t dt_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const SsmParams& p, float* y) override;
    void gated_group_norm(float* y, const float* z, int64_t z_stride, const float* w, float eps, int64_t n_rows,
                          int64_t n, int n_group) override;

    // attention(): from how many cells of context on a thread reads its KV
    // heads a chunk of cells at a time rather than one head's whole context
    // after another (cpu_attention.cpp); the results are the same bits either
    // way. Below it the context's rows are likely still in the cache from the
    // last step, and the kernels' own long passes do better.
    void set_attention_streaming_from(int64_t n_cells) { attention_streaming_from_ = n_cells; }
    // attention(): from how many cells of context on a decoded token's cells
    // are split into chunks, each thread taking some (cpu_attention_split.cpp). Results differ from the unsplit op's by
    // float order, and do not depend on the threads or the batch.
    // (chunk: the cells of a work item; tests take short ones to see many.)
    void set_attention_split(int64_t from, int64_t chunk = kSplitChunk) {
        attention_split_from_ = from;
        attention_split_chunk_ = std::max<int64_t>(1, chunk);
    }

  private:
    // attention() for the blocks of tokens (first token, length; one
    // sequence's consecutive positions) deep enough to take their cells in
    // chunks (cpu_attention_split.cpp).
    void attention_split_cells(const KvCache& cache, int layer, const float* q, int n_head, const AttentionRows& rows,
                               float scale, float* out, std::span<const std::pair<int64_t, int>> blocks);
    // attention_mla over a Q4_0/Q8_0 cache, with llama.cpp's bits (cpu_mla_quantized.cpp).
    void attention_mla_quantized(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                                 int n_latent, const AttentionRows& rows, float scale, float* out);
    // Quantizes n_tokens rows of x (width n) to `type` into dst.
    void quantize_rows(GgmlType type, const float* x, int64_t n_tokens, int64_t n, uint8_t* dst);
    // The same into buf (grown as needed); returns buf's data.
    const uint8_t* quantize_activations(GgmlType type, const float* x, int64_t n_tokens, int64_t n,
                                        CacheLineVector<uint8_t>& buf);
    // One product with activations already quantized to vec_dot_type(w):
    // y[t][r] = W_expert[r] · xq[t] for t < n_tokens.
    struct MatmulJob {
        const Weight* w;
        int expert;
        const uint8_t* xq;
        size_t xq_row_bytes;
        int64_t n_tokens;
        float* y;
        int64_t y_stride;
    };
    // Runs all jobs in one parallel pass, split into blocks of weight rows.
    void run_matmul_jobs(std::span<const MatmulJob> jobs);

    ThreadPool pool_;
    int64_t attention_streaming_from_ = kStreamingFrom;
    int64_t attention_split_from_ = kSplitFrom;
    int64_t attention_split_chunk_ = kSplitChunk;
    // Scratch reused across calls, on cache lines (cache_line_vector.h).
    CacheLineVector<uint8_t> act_buf_;  // quantized activations
    CacheLineVector<uint8_t> act_buf2_;
    CacheLineVector<uint8_t> tile_buf_;  // prompt products' packed activation tiles (cpu_matmul.cpp)
    CacheLineVector<float> scratch_;     // dense FFN intermediates
    struct MoeScratch {
        CacheLineVector<float> logits, xs, g, u;
        std::vector<float> prob;
        std::vector<int> order;
    } moe_;
    struct SplitScratch {                // attention_split_cells: per chunk, KV head and query row
        CacheLineVector<float> ms, acc;  // (max, Σ weights); the weighted V sum
    } split_;
    struct MlaScratch {  // attention_mla_quantized
        LatentQueries queries;
        CacheLineVector<float> scores, ms, acc, values;  // values: per thread, a slice of V as f32
        std::vector<float> m, s;
        std::vector<uint16_t> marks;
        std::vector<const uint8_t*> rows;
    } mla_;
};

// In-place normalized Walsh-Hadamard transform of n = 2^k values:
// x := H x with H[i][j] = (-1)^popcount(i & j) / sqrt(n).
void hadamard_transform(float* x, int n);

// The rows of each chunk a decoded token's MLA attention over a float cache
// takes (cpu_mla.cpp): 1,024, or more to keep at most 256 chunks; a function
// of its row count alone, so the token's output does not depend on the
// threads or the batch.
int64_t mla_decode_chunk_rows(int64_t n_cells);

}  // namespace moeserve
