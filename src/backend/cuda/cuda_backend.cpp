#include "backend/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/cuda_matmul_kernels.h"
#include "backend/cuda/cuda_memory.h"
#include "backend/cuda/cuda_ops.h"
#include "gguf/gguf_file.h"
#include "memory/kv_cache.h"

namespace moeserve {
namespace {

// The batch inputs of the current forward pass, on the device. Ops receive
// the host spans; a span whose data pointer is the staged one maps to its
// device copy, anything else (the output rows, a test calling an op
// directly) is uploaded when the op runs.
struct StagedBatch {
    const int32_t* tokens_host = nullptr;
    const int32_t* positions_host = nullptr;
    const int32_t* seq_ids_host = nullptr;
    const int32_t* cells_host = nullptr;
    const int32_t* const* rows_host = nullptr;
    int32_t* tokens = nullptr;
    int32_t* positions = nullptr;
    int32_t* seq_ids = nullptr;
    int32_t* cells = nullptr;
    cuda::AttentionCells rows;
};

// The ops' tags in a pass's recorded words (cuda_graph.h).
enum class Op : uint64_t {
    copy_rows = 1,
    gather_rows,
    fill,
    read,
    embed,
    rms_norm,
    matmul,
    rope,
    add,
    add_row_broadcast,
    store_kv,
    attention,
    matmul_heads,
    attention_mla,
    moe_ffn,
    dense_ffn,
    ssm_conv,
    ssm_scan,
    gated_group_norm,
    matmul_shared_input,
    add_rms_norm,
    rms_norm_rope,
    rms_norm_rope_qk,
};

// Batches up to this many tokens run as graphs: their products are
// matrix-vector kernels with no host round trip (larger MoE batches wait for
// the per-expert counts).
constexpr int64_t kGraphMaxTokens = cuda::kMatvecMaxTokens;
// Norms of up to this many rows write their output's int8 forms in the same
// launch (decode steps; the routed experts take up to 32 tokens as
// matrix-vector products, which read them).
constexpr int64_t kNormRoundingMaxRows = 32;
// A batch size captured this many times in a row without a replay in
// between runs op by op for the next kRestPasses passes (capturing every
// step costs more than it saves).
constexpr int kCapturesBeforeRest = 3;
constexpr int kRestPasses = 64;
// After a pass that could not be captured (it allocated memory, say): op by
// op for this many passes, then try again.
constexpr int kRestAfterNotCapturable = 2;

// MOESERVE_CUDA_GRAPHS=0 (or off/false) runs every pass op by op.
bool graphs_enabled_by_environment() {
    const char* v = std::getenv("MOESERVE_CUDA_GRAPHS");
    if (!v) return true;
    const std::string s(v);
    return !(s == "0" || s == "off" || s == "false" || s == "no");
}

class CudaBackend final : public Backend {
  public:
    explicit CudaBackend(int device) : memory_(device), graphs_on_(graphs_enabled_by_environment()) {
        ctx_.device = device;
        MOESERVE_CUDA_CHECK(cudaSetDevice(device));
        cudaDeviceProp prop{};
        MOESERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        ctx_.sm_count = prop.multiProcessorCount;
        ctx_.shared_mem_per_block_optin = prop.sharedMemPerBlockOptin;
        ctx_.stream = memory_.stream();
        MOESERVE_CUBLAS_CHECK(cublasCreate(&ctx_.cublas));
        MOESERVE_CUBLAS_CHECK(cublasSetStream(ctx_.cublas, ctx_.stream));
        scratch_ = std::make_unique<cuda::Scratch>(ctx_.stream);
        ctx_.scratch = scratch_.get();
        description_ = cuda::device_description(device);
    }
    ~CudaBackend() override {
        if (ctx_.stream) cudaStreamSynchronize(ctx_.stream);
        for (auto& [n, g] : graphs_) cuda::destroy_graph(g);
        if (weights_) cudaFree(weights_);
        if (ctx_.cublas) cublasDestroy(ctx_.cublas);
    }

    std::string name() const override { return "cuda (" + description_ + ")"; }
    int n_threads() const override { return 1; }
    DeviceMemory& memory() override { return memory_; }
    const cuda::GraphStats& graph_stats() const { return stats_; }
    std::string pass_summary() override {
        return fmt::format("cuda graphs{}: {} passes captured, {} replayed, {} op by op ({} could not be captured)",
                           graphs_on_ ? "" : " (off)", stats_.captured, stats_.replayed, stats_.eager,
                           stats_.not_capturable);
    }
    void set_graphs(bool on) { graphs_on_ = on; }

    // Uploads the tensors `upload` accepts (all without a filter) into one
    // allocation, packed in file order; a weight's device address is its
    // host address plus its run's offset (dev()).
    void load_weights(const GgufFile& file, const TensorFilter& upload) override {
        struct Piece {
            const uint8_t* host;
            size_t bytes;
        };
        std::vector<Piece> pieces;
        for (const auto& t : file.tensors())
            if (!upload || upload(t.name)) pieces.push_back({file.tensor_data(t), static_cast<size_t>(t.nbytes)});
        if (pieces.empty()) return;
        std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.host < b.host; });
        // Runs of adjacent tensors (all of them, without a filter) go up as one copy each.
        // A run starts at the same address modulo 256 as in the mapped file
        // (cudaMalloc aligns to 256), so every tensor keeps the file's
        // alignment (GGUF's 32 bytes), which the kernels' 16-byte loads need.
        runs_.clear();
        size_t bytes = 0;
        for (const Piece& p : pieces) {
            if (!runs_.empty() && runs_.back().host_end == p.host) {
                runs_.back().host_end += p.bytes;
            } else {
                const size_t phase = reinterpret_cast<uintptr_t>(p.host) % kRunAlign;
                bytes = (bytes + kRunAlign - 1) / kRunAlign * kRunAlign + phase;
                runs_.push_back({p.host, p.host + p.bytes, bytes});
            }
            bytes += p.bytes;
        }
        size_t free_before = 0, total = 0;
        MOESERVE_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
        if (bytes > free_before)
            throw std::runtime_error(
                fmt::format("the model's weights need {:.2f} GiB of GPU memory, {:.2f} GiB are free on {} "
                            "(--cpu-moe or --n-cpu-moe N keep routed experts in host memory, -ngl N below the layer "
                            "count keeps the first layers on the CPU)",
                            bytes / double(1 << 30), free_before / double(1 << 30), description_));
        MOESERVE_CUDA_CHECK(cudaMalloc(&weights_, bytes));
        // Chunks through pageable memory: the mapped file pages in as it goes.
        constexpr size_t kChunk = size_t{64} << 20;
        int last_percent = -1;
        size_t done = 0;
        for (const Run& r : runs_) {
            const size_t run_bytes = static_cast<size_t>(r.host_end - r.host_begin);
            for (size_t off = 0; off < run_bytes; off += kChunk) {
                const size_t n = std::min(kChunk, run_bytes - off);
                MOESERVE_CUDA_CHECK(
                    cudaMemcpy(weights_ + r.device_offset + off, r.host_begin + off, n, cudaMemcpyHostToDevice));
                done += n;
                const int percent = static_cast<int>(100.0 * done / bytes);
                if (bytes > (size_t{256} << 20) && percent / 10 != last_percent / 10) {
                    std::fprintf(stderr, "\rload_tensors: uploading %.2f GiB of weights to %s: %3d%%",
                                 bytes / double(1 << 30), description_.c_str(), percent);
                    last_percent = percent;
                }
            }
        }
        if (last_percent >= 0) std::fprintf(stderr, "\n");
    }

    // The inputs go up through the upload arena in one asynchronous copy,
    // each at an address that depends only on the sizes before it (which a
    // replayed graph relies on).
    void begin_batch(const BatchInputs& in) override {
        // The previous pass ended with its outputs read back: the stream is
        // idle, so the arena and the scratch may be reused (or regrown).
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        scratch_->reset();
        norm_rows_ = {};
        const RowLists lists = flatten_rows(in.rows);
        const size_t n = in.tokens.size();
        const size_t need = 8 * 256 + 4 * n * sizeof(int32_t) + lists.span * sizeof(int32_t) +
                            n * (sizeof(int64_t) + sizeof(int32_t)) + in_pass_room_;
        arena_.reserve(need);
        arena_.rewind(0);
        StagedBatch& s = staged_;
        s = StagedBatch{};
        s.tokens_host = in.tokens.data();
        s.positions_host = in.positions.data();
        s.seq_ids_host = in.seq_ids.data();
        s.cells_host = in.cells.data();
        s.rows_host = in.rows.cells.data();
        s.tokens = stage(in.tokens);
        s.positions = stage(in.positions);
        s.seq_ids = stage(in.seq_ids);
        s.cells = stage(in.cells);
        s.rows = put_rows(lists, in.rows.n_cells, /*staged=*/true);
        if (arena_.used())
            MOESERVE_CUDA_CHECK(
                cudaMemcpyAsync(arena_.device(0), arena_.host(0), arena_.used(), cudaMemcpyHostToDevice, ctx_.stream));
        pass_mark_ = arena_.used();
    }

    void end_batch() override {}
    void synchronize() override {
        if (rec_.mode() != cuda::OpRecorder::Mode::off) throw cuda::NotCapturable("an op waits for the GPU");
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    // A pass of a small batch runs as a CUDA graph (cuda_graph.h): checked
    // against the graph captured for its batch size and replayed, or
    // captured anew, or (when it cannot be captured) run op by op.
    void run_pass(const BatchInputs& in, const std::function<void()>& pass) override {
        begin_batch(in);
        const auto n = static_cast<int64_t>(in.tokens.size());
        if (!graphs_on_ || n > kGraphMaxTokens) return run_eager(pass);
        // Room for 16 rows of a 262,144-token vocabulary, so that a model's
        // first capture does not stop at its read-back.
        if (readback_.capacity() == 0) readback_.reserve(size_t{16} << 20);
        forget_stale_graphs();
        cuda::CachedGraph& g = graphs_[n];
        if (g.eager_passes_left > 0) {
            --g.eager_passes_left;
            return run_eager(pass);
        }
        if (g.exec) {
            switch (check_pass(g, pass)) {
                case Check::same:
                    ++g.replays;
                    ++stats_.replayed;
                    return launch(g);
                case Check::differs:
                    break;
                case Check::not_capturable:
                    g.eager_passes_left = kRestAfterNotCapturable;
                    return run_eager(pass);
            }
        }
        capture_pass(g, pass);
    }

    // ---- data movement -----------------------------------------------------

    void copy_rows(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t width) override {
        if (recorded(Op::copy_rows, dst, dst_stride, src, src_stride, n_rows, width)) return;
        cuda::copy_rows(ctx_, dst, dst_stride, src, src_stride, n_rows, width);
    }
    void gather_rows(float* dst, const float* src, int64_t width, std::span<const int64_t> rows) override {
        const int64_t* d_rows = upload(rows);
        const auto n = static_cast<int64_t>(rows.size());
        if (recorded(Op::gather_rows, dst, src, width, d_rows, n)) return;
        cuda::gather_rows(ctx_, dst, src, width, d_rows, n);
    }
    void fill(float* y, float value, int64_t n) override {
        if (recorded(Op::fill, y, value, n)) return;
        cuda::fill(ctx_, y, value, n);
        wrote(y, n);
    }
    // Op by op a plain copy. In a graph the copy goes to pinned memory and
    // reaches host_dst after the graph has run.
    void read(float* host_dst, const float* src, int64_t n) override {
        if (rec_.mode() == cuda::OpRecorder::Mode::off) {
            memory_.download(host_dst, src, n * sizeof(float));
            return;
        }
        rec_.op(static_cast<uint64_t>(Op::read), src, n);
        const size_t bytes = static_cast<size_t>(n) * sizeof(float);
        const size_t offset = (readback_used_ + 255) / 256 * 256;
        if (offset + bytes > readback_.capacity()) {
            readback_wanted_ = std::max(readback_wanted_, offset + bytes);
            throw cuda::NotCapturable("the readback buffer is too small");
        }
        if (!rec_.checking())
            MOESERVE_CUDA_CHECK(
                cudaMemcpyAsync(readback_.data() + offset, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
        pending_reads_.push_back({host_dst, offset, bytes});
        readback_used_ = offset + bytes;
    }

    // ---- ops -----------------------------------------------------------------

    void embed(const Weight& table, std::span<const int32_t> tokens, float* out) override {
        const int32_t* d_tokens = tokens.data() == staged_.tokens_host ? staged_.tokens : upload(tokens);
        const Weight w = dev(table);
        const auto n = static_cast<int64_t>(tokens.size());
        if (recorded(Op::embed, w, d_tokens, n, out)) return;
        cuda::embed(ctx_, w, d_tokens, n, out);
    }
    void rms_norm(const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) override {
        const float* dw = dev(w);
        if (recorded(Op::rms_norm, x, dw, eps, n_rows, n, out)) return;
        if (rounds_norms(n_rows))  // x is only read without a residual
            norm_rows_ = cuda::rms_norm_rounded(ctx_, const_cast<float*>(x), nullptr, dw, eps, n_rows, n, out);
        else
            cuda::rms_norm(ctx_, x, dw, eps, n_rows, n, out);
    }
    void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert) override {
        const Weight dw = dev(w);
        if (recorded(Op::matmul, dw, x, n_tokens, y, expert)) return;
        cuda::matmul(ctx_, dw, x, n_tokens, y, expert, &norm_rows_);
        wrote(y, n_tokens * dw.ne[1]);
    }
    void matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) override {
        projections_.clear();  // a member: its storage is reused from call to call
        for (const Projection& p : projections) {
            projections_.push_back({dev(*p.w), p.y});
            recorded(Op::matmul_shared_input, projections_.back().w, x, n_tokens, p.y);
        }
        if (rec_.checking()) return;
        cuda::matmul_shared_input(ctx_, x, n_tokens, projections_, &norm_rows_);
        for (const cuda::DeviceProjection& p : projections_) wrote(p.y, n_tokens * p.w.ne[1]);
    }
    void rope(float* x, int64_t n_tokens, int n_head, int head_dim, std::span<const int32_t> positions,
              const RopeParams& p) override {
        RopeParams dp = p;
        dp.freq_factors = dev(p.freq_factors);
        const int32_t* d_pos = positions.data() == staged_.positions_host ? staged_.positions : upload(positions);
        if (recorded(Op::rope, x, n_tokens, n_head, head_dim, d_pos, dp)) return;
        cuda::rope(ctx_, x, n_tokens, n_head, head_dim, d_pos, dp);
    }
    void rms_norm_rope(float* x, const float* w, float eps, int64_t n_tokens, int n_head, int head_dim,
                       std::span<const int32_t> positions, const RopeParams& p) override {
        const float* dw = dev(w);
        RopeParams dp = p;
        dp.freq_factors = dev(p.freq_factors);
        const int32_t* d_pos = positions.data() == staged_.positions_host ? staged_.positions : upload(positions);
        if (recorded(Op::rms_norm_rope, x, dw, eps, n_tokens, n_head, head_dim, d_pos, dp)) return;
        cuda::rms_norm_rope(ctx_, x, dw, eps, n_tokens, n_head, head_dim, d_pos, dp);
    }
    void rms_norm_rope_qk(float* q, const float* wq, int n_head_q, float* k, const float* wk, int n_head_k, float eps,
                          int64_t n_tokens, int head_dim, std::span<const int32_t> positions,
                          const RopeParams& p) override {
        const float* dwq = dev(wq);
        const float* dwk = dev(wk);
        RopeParams dp = p;
        dp.freq_factors = dev(p.freq_factors);
        const int32_t* d_pos = positions.data() == staged_.positions_host ? staged_.positions : upload(positions);
        if (recorded(Op::rms_norm_rope_qk, q, dwq, n_head_q, k, dwk, n_head_k, eps, n_tokens, head_dim, d_pos, dp))
            return;
        cuda::rms_norm_rope_qk(ctx_, q, dwq, n_head_q, k, dwk, n_head_k, eps, n_tokens, head_dim, d_pos, dp);
    }
    void add(float* y, const float* x, int64_t n) override {
        if (recorded(Op::add, y, x, n)) return;
        cuda::add(ctx_, y, x, n);
    }
    void add_rms_norm(float* x, const float* y, const float* w, float eps, int64_t n_rows, int64_t n,
                      float* out) override {
        const float* dw = dev(w);
        if (recorded(Op::add_rms_norm, x, y, dw, eps, n_rows, n, out)) return;
        if (rounds_norms(n_rows))
            norm_rows_ = cuda::rms_norm_rounded(ctx_, x, y, dw, eps, n_rows, n, out);
        else
            cuda::add_rms_norm(ctx_, x, y, dw, eps, n_rows, n, out);
    }
    void add_row_broadcast(float* y, const float* b, int64_t n_rows, int64_t n) override {
        const float* db = dev(b);
        if (recorded(Op::add_row_broadcast, y, db, n_rows, n)) return;
        cuda::add_row_broadcast(ctx_, y, db, n_rows, n);
    }

    void shift_keys(KvCache&, int, std::span<const int32_t>, int, int, int32_t, const RopeParams&) override {
        throw std::runtime_error("context shift runs on the CPU backend only (start without --context-shift on a GPU)");
    }
    void store_kv(KvCache& cache, int layer, const float* k, const float* v, std::span<const int32_t> cells) override {
        const int32_t* d_cells = cells.data() == staged_.cells_host ? staged_.cells : upload(cells);
        const cuda::KvLayer l = kv_layer(cache, layer);
        const auto n = static_cast<int64_t>(cells.size());
        if (recorded(Op::store_kv, l, k, v, d_cells, n)) return;
        cuda::store_kv(ctx_, l, k, v, d_cells, n);
    }
    void attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                   const AttentionRows& rows, float scale, float* out) override {
        const KvCacheConfig& cfg = cache.config();
        const int n_head_kv = static_cast<int>(cfg.n_embd_k[layer] / cfg.head_dim_k);
        const cuda::KvLayer l = kv_layer(cache, layer);
        const cuda::AttentionCells c = cells_of(rows);
        if (recorded(Op::attention, l, q, n_tokens, n_head, n_head_kv, cfg.head_dim_k, cfg.head_dim_v, c, scale, out))
            return;
        cuda::attention(ctx_, l, q, n_tokens, n_head, n_head_kv, cfg.head_dim_k, cfg.head_dim_v, c, scale, out);
    }
    void matmul_heads(const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride, int64_t x_head_stride,
                      float* y) override {
        const Weight dw = dev(w);
        if (recorded(Op::matmul_heads, dw, x, n_tokens, x_token_stride, x_head_stride, y)) return;
        cuda::matmul_heads(ctx_, dw, x, n_tokens, x_token_stride, x_head_stride, y);
    }
    void attention_mla(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head, int n_latent,
                       const AttentionRows& rows, float scale, float* out) override {
        const cuda::KvLayer l = kv_layer(cache, layer);
        const cuda::AttentionCells c = cells_of(rows);
        if (recorded(Op::attention_mla, l, q, n_tokens, n_head, n_latent, c, scale, out)) return;
        cuda::attention_mla(ctx_, l, q, n_tokens, n_head, n_latent, c, scale, out);
    }
    void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                 const Weight& down_exps, const MoeParams& p, float* out) override {
        MoeParams dp = p;
        dp.selection_bias = dev(p.selection_bias);
        const Weight r = dev(router), g = dev(gate_exps), u = dev(up_exps), d = dev(down_exps);
        if (recorded(Op::moe_ffn, x, n_tokens, r, g, u, d, dp, out)) return;
        cuda::moe_ffn(ctx_, x, n_tokens, r, g, u, d, dp, out, &norm_rows_);
        wrote(out, n_tokens * d.ne[1]);
    }
    void dense_ffn(const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
                   ExpertActivation act, float* out) override {
        const Weight g = dev(gate), u = dev(up), d = dev(down);
        if (recorded(Op::dense_ffn, x, n_tokens, g, u, d, act, out)) return;
        cuda::dense_ffn(ctx_, x, n_tokens, g, u, d, act, out, &norm_rows_);
        wrote(out, n_tokens * d.ne[1]);
    }
    void ssm_conv(KvCache& cache, int layer, const float* x, int64_t x_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const Weight& conv, const Weight& bias, float* out) override {
        const cuda::RecurrentLayer st = recurrent_layer(cache, layer);
        const int32_t* ids = seq_ids_of(seq_ids);
        const Weight c = dev(conv), b = dev(bias);
        if (recorded(Op::ssm_conv, st, x, x_stride, n_tokens, ids, c, b, out)) return;
        cuda::ssm_conv(ctx_, st, x, x_stride, n_tokens, ids, c, b, out);
    }
    void ssm_scan(KvCache& cache, int layer, const float* xbc, const float* dt, int64_t dt_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const SsmParams& p, float* y) override {
        SsmParams dp = p;
        dp.dt_bias = dev(p.dt_bias);
        dp.a = dev(p.a);
        dp.d = dev(p.d);
        const cuda::RecurrentLayer st = recurrent_layer(cache, layer);
        const int32_t* ids = seq_ids_of(seq_ids);
        if (recorded(Op::ssm_scan, st, xbc, dt, dt_stride, n_tokens, ids, dp, y)) return;
        cuda::ssm_scan(ctx_, st, xbc, dt, dt_stride, n_tokens, ids, dp, y);
    }
    void gated_group_norm(float* y, const float* z, int64_t z_stride, const float* w, float eps, int64_t n_rows,
                          int64_t n, int n_group) override {
        const float* dw = dev(w);
        if (recorded(Op::gated_group_norm, y, z, z_stride, dw, eps, n_rows, n, n_group)) return;
        cuda::gated_group_norm(ctx_, y, z, z_stride, dw, eps, n_rows, n, n_group);
    }

  private:
    // ---- graphs --------------------------------------------------------------

    // Records (capturing) or checks (replaying) an op's arguments; true when
    // the op must not launch anything (checking).
    template <class... Args>
    bool recorded(Op op, const Args&... args) {
        rec_.op(static_cast<uint64_t>(op), args...);
        // A norm's int8 forms go on only to the ops that read its rows (the
        // products, which end them only where they write over the rows, and
        // fill, whose one output is known); any other op may rewrite them.
        if (op != Op::matmul && op != Op::matmul_shared_input && op != Op::moe_ffn && op != Op::dense_ffn &&
            op != Op::fill)
            norm_rows_ = {};
        return rec_.checking();
    }
    // An op wrote the n floats at p: the norm's int8 forms end if those were its rows.
    void wrote(const float* p, int64_t n) {
        const float* rows = norm_rows_.rows;
        if (rows && p < rows + norm_rows_.n_rows * norm_rows_.width && rows < p + n) norm_rows_ = {};
    }

    // Whether a norm of n_rows rows also writes its output's int8 forms
    // (decode-sized batches, as the routed experts' matrix-vector path takes
    // them; MOESERVE_CUDA_FUSE=0 turns it off with the other fusions).
    static bool rounds_norms(int64_t n_rows) { return n_rows <= kNormRoundingMaxRows && cuda::decode_fusions(); }

    // Every pass that may become a graph starts from the same arena offset,
    // with no reads pending and the scratch empty (nothing queued uses it:
    // a check launches nothing and an abandoned capture never ran).
    void restart_pass() {
        norm_rows_ = {};
        arena_.rewind(pass_mark_);
        pending_reads_.clear();
        readback_used_ = 0;
        scratch_->reset();
    }

    void run_eager(const std::function<void()>& pass) {
        rec_.stop();
        restart_pass();
        ++stats_.eager;
        pass();
    }

    enum class Check { same, differs, not_capturable };
    Check check_pass(const cuda::CachedGraph& g, const std::function<void()>& pass) {
        restart_pass();
        rec_.check(&g.words);
        try {
            pass();
        } catch (const cuda::SignatureMismatch&) {
            rec_.stop();
            return Check::differs;
        } catch (const cuda::NotCapturable&) {
            rec_.stop();
            grow_after_not_capturable();
            return Check::not_capturable;
        } catch (...) {
            rec_.stop();
            throw;
        }
        rec_.stop();
        return rec_.check_complete() ? Check::same : Check::differs;
    }

    // Captures the pass into g and launches it. Whatever stops the capture
    // on the way (an allocation, a wait, a failed instantiation, or a real
    // error, which the op-by-op run raises again), nothing of the pass has
    // run yet: it runs op by op instead.
    void capture_pass(cuda::CachedGraph& g, const std::function<void()>& pass) {
        restart_pass();
        if (cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeRelaxed) != cudaSuccess)
            return abandon_capture(g, nullptr, pass);
        rec_.record();
        try {
            pass();
        } catch (...) {
            return abandon_capture(g, nullptr, pass);
        }
        rec_.stop();
        cudaGraph_t graph = nullptr;
        if (cudaStreamEndCapture(ctx_.stream, &graph) != cudaSuccess || !graph) return abandon_capture(g, graph, pass);
        try {
            cuda::install_graph(g, graph);
        } catch (...) {
            cuda::destroy_graph(g);
            return abandon_capture(g, graph, pass);
        }
        cudaGraphDestroy(graph);
        g.words = rec_.take_words();
        g.captures_in_a_row = g.replays > 0 ? 1 : g.captures_in_a_row + 1;
        g.replays = 0;
        if (g.captures_in_a_row >= kCapturesBeforeRest) {  // this batch size changes every step
            g.captures_in_a_row = 0;
            g.eager_passes_left = kRestPasses;
        }
        ++stats_.captured;
        launch(g);
    }

    void abandon_capture(cuda::CachedGraph& g, cudaGraph_t graph, const std::function<void()>& pass) {
        rec_.stop();
        if (cuda::stream_is_capturing(ctx_.stream)) {
            cudaGraph_t partial = nullptr;
            if (cudaStreamEndCapture(ctx_.stream, &partial) == cudaSuccess && partial) cudaGraphDestroy(partial);
        }
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // capture errors are not sticky; clear the last one
        ++stats_.not_capturable;
        g.eager_passes_left = kRestAfterNotCapturable;
        grow_after_not_capturable();
        run_eager(pass);
    }

    // Runs the graph, then hands the pass's reads to their host buffers.
    void launch(const cuda::CachedGraph& g) {
        MOESERVE_CUDA_CHECK(cudaGraphLaunch(g.exec, ctx_.stream));
        if (pending_reads_.empty()) return;
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        for (const PendingRead& r : pending_reads_) std::memcpy(r.host_dst, readback_.data() + r.offset, r.bytes);
        pending_reads_.clear();
    }

    // A pass that outgrew the readback buffer or the arena's room for
    // uploads made while it runs gets more next time (the stream holds no
    // copy into either: the capture was abandoned).
    void grow_after_not_capturable() {
        if (readback_wanted_ > readback_.capacity()) readback_.reserve(readback_wanted_);
    }

    // Graphs hold addresses in the scratch, the arena and the readback
    // buffer; when any of them was reallocated, the graphs go.
    void forget_stale_graphs() {
        const auto generation = std::tuple(scratch_->generation(), arena_.generation(), readback_.generation());
        if (generation == graphs_generation_) return;
        for (auto& [n, g] : graphs_) cuda::destroy_graph(g);
        graphs_.clear();
        graphs_generation_ = generation;
    }

    // ---- addresses -------------------------------------------------------------

    // A host address inside an uploaded tensor maps to its device copy;
    // anything else (activations, null) is already a device pointer.
    template <class T>
    const T* dev(const T* p) const {
        const auto* b = reinterpret_cast<const uint8_t*>(p);
        if (!p || runs_.empty()) return p;
        auto it = std::upper_bound(runs_.begin(), runs_.end(), b,
                                   [](const uint8_t* x, const Run& r) { return x < r.host_begin; });
        if (it == runs_.begin()) return p;
        --it;
        if (b >= it->host_end) return p;
        return reinterpret_cast<const T*>(weights_ + it->device_offset + (b - it->host_begin));
    }
    Weight dev(const Weight& w) const {
        Weight d = w;
        d.data = dev(w.data);
        return d;
    }

    // An input of begin_batch: into the arena, copied with the rest at its end.
    template <class T>
    T* stage(std::span<const T> host, size_t span_elems = 0) {
        if (host.empty()) return nullptr;
        const auto offset = arena_.put(host.data(), host.size_bytes(), std::max(span_elems, host.size()) * sizeof(T));
        if (!offset) throw std::logic_error("cuda backend: the upload arena was sized too small");
        return reinterpret_cast<T*>(arena_.device(*offset));
    }

    // An array an op was given that begin_batch did not stage: into the
    // arena with its own copy (a node of the graph when capturing; the
    // graph's copy when checking). When the arena is full: op by op it goes
    // through scratch and waits for the copy, and the next pass reserves
    // more room; in a graph it cannot.
    template <class T>
    const T* upload(std::span<const T> host, size_t span_elems = 0) {
        if (host.empty()) return nullptr;
        const size_t bytes = host.size_bytes();
        if (const auto offset = arena_.put(host.data(), bytes, std::max(span_elems, host.size()) * sizeof(T))) {
            if (!rec_.checking())
                MOESERVE_CUDA_CHECK(cudaMemcpyAsync(arena_.device(*offset), arena_.host(*offset), bytes,
                                                    cudaMemcpyHostToDevice, ctx_.stream));
            return reinterpret_cast<const T*>(arena_.device(*offset));
        }
        const size_t span_bytes = std::max(span_elems, host.size()) * sizeof(T);
        in_pass_room_ = std::max(in_pass_room_, 2 * (arena_.used() - pass_mark_ + span_bytes + 256));
        if (rec_.mode() != cuda::OpRecorder::Mode::off) throw cuda::NotCapturable("the upload arena is full");
        T* d = scratch_->take_n<T>(host.size());
        MOESERVE_CUDA_CHECK(cudaMemcpyAsync(d, host.data(), bytes, cudaMemcpyHostToDevice, ctx_.stream));
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        return d;
    }

    // Per token, its cells in key order. Tokens of one sequence share one
    // cell list (a prefix of it each), so each distinct list goes up once,
    // as long as its longest use. The lists' room and the largest count are
    // padded (graph_cell_padding) so that a growing context keeps the
    // arena's layout and the attention's launch shape for many steps.
    struct RowLists {
        std::vector<int32_t> flat;
        std::vector<int64_t> offset;
        int32_t max_cells = 0;
        int32_t max_run = 0;  // the longest run of consecutive tokens sharing a list
        size_t span = 0;      // room for flat, in cells
    };
    static RowLists flatten_rows(const AttentionRows& rows) {
        RowLists r;
        const size_t n = rows.cells.size();
        if (n == 0) return r;
        std::map<const int32_t*, int32_t> longest;
        for (size_t t = 0; t < n; ++t) {
            int32_t& m = longest[rows.cells[t]];
            m = std::max(m, rows.n_cells[t]);
        }
        std::map<const int32_t*, int64_t> start;
        for (const auto& [list, len] : longest) {
            start[list] = static_cast<int64_t>(r.flat.size());
            r.flat.insert(r.flat.end(), list, list + len);
        }
        r.offset.resize(n);
        int32_t run = 0;
        for (size_t t = 0; t < n; ++t) {
            r.offset[t] = start[rows.cells[t]];
            r.max_cells = std::max(r.max_cells, rows.n_cells[t]);
            run = t > 0 && rows.cells[t] == rows.cells[t - 1] ? run + 1 : 1;
            r.max_run = std::max(r.max_run, run);
        }
        r.span = static_cast<size_t>(cuda::graph_cell_padding(static_cast<int64_t>(r.flat.size())));
        return r;
    }
    cuda::AttentionCells put_rows(const RowLists& lists, std::span<const int32_t> n_cells, bool staged) {
        if (lists.offset.empty()) return {};
        cuda::AttentionCells c;
        const std::span<const int32_t> flat(lists.flat);
        const std::span<const int64_t> offset(lists.offset);
        // Staged lists are padded (begin_batch copies their whole current
        // length outside any graph). A list uploaded inside a pass is not: a
        // graph's copy would keep the length it was captured with, and the
        // next uploads' addresses are what tell a longer list apart.
        c.cells = staged ? stage(flat, lists.span) : upload(flat);
        c.offset = staged ? stage(offset) : upload(offset);
        c.n_cells = staged ? stage(n_cells) : upload(n_cells);
        c.max_cells = static_cast<int32_t>(
            std::min<int64_t>(cuda::graph_cell_padding(lists.max_cells), std::numeric_limits<int32_t>::max()));
        c.max_run = lists.max_run;
        return c;
    }
    cuda::AttentionCells cells_of(const AttentionRows& rows) {
        if (rows.cells.data() == staged_.rows_host) return staged_.rows;
        return put_rows(flatten_rows(rows), rows.n_cells, /*staged=*/false);
    }
    const int32_t* seq_ids_of(std::span<const int32_t> seq_ids) {
        return seq_ids.data() == staged_.seq_ids_host ? staged_.seq_ids : upload(seq_ids);
    }

    static cuda::KvLayer kv_layer(const KvCache& cache, int layer) {
        KvCache& c = const_cast<KvCache&>(cache);  // the views write only in store_kv
        cuda::KvLayer l;
        l.k = c.k_data(layer);
        l.v = c.v_data(layer);
        l.k_row_bytes = cache.k_row_bytes(layer);
        l.v_row_bytes = cache.v_row_bytes(layer);
        l.type_k = cache.type_k();
        l.type_v = cache.type_v();
        l.n_embd_k = cache.config().n_embd_k[layer];
        l.n_embd_v = cache.config().n_embd_v[layer];
        l.k_rot_chunk = cache.k_rotation_chunk();
        l.v_rot_chunk = cache.v_rotation_chunk();
        return l;
    }
    static cuda::RecurrentLayer recurrent_layer(KvCache& cache, int layer) {
        return {cache.conv_states(layer), cache.ssm_states(layer), cache.recurrent_seq_stride()};
    }

    cuda::CudaMemory memory_;
    cuda::Context ctx_;
    std::unique_ptr<cuda::Scratch> scratch_;
    std::string description_;
    // The uploaded tensors: runs of adjacent host bytes, sorted, and where each starts in weights_.
    std::vector<cuda::DeviceProjection> projections_;  // matmul_shared_input's device copies
    static constexpr size_t kRunAlign = 256;
    struct Run {
        const uint8_t* host_begin;
        const uint8_t* host_end;
        size_t device_offset;
    };
    std::vector<Run> runs_;
    uint8_t* weights_ = nullptr;

    StagedBatch staged_;
    cuda::UploadArena arena_;
    size_t pass_mark_ = 0;                   // where a pass's own uploads start in the arena
    size_t in_pass_room_ = size_t{1} << 20;  // arena room kept for them

    bool graphs_on_;
    cuda::OpRecorder rec_;
    // The int8 forms of the rows the last norm wrote (scratch of this pass),
    // until an op other than a product runs (recorded()).
    cuda::NormRows norm_rows_;
    std::map<int64_t, cuda::CachedGraph> graphs_;  // by batch size
    std::tuple<uint64_t, uint64_t, uint64_t> graphs_generation_{~0ull, ~0ull, ~0ull};
    cuda::ReadbackBuffer readback_;
    size_t readback_used_ = 0;
    size_t readback_wanted_ = 0;
    struct PendingRead {
        float* host_dst;
        size_t offset;
        size_t bytes;
    };
    std::vector<PendingRead> pending_reads_;
    cuda::GraphStats stats_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) {
    const int n = cuda::device_count();
    if (n == 0) throw std::runtime_error("no CUDA device found (is the NVIDIA driver loaded?)");
    if (device < 0 || device >= n)
        throw std::runtime_error(fmt::format("CUDA device {} does not exist ({} found)", device, n));
    return std::make_unique<CudaBackend>(device);
}

std::unique_ptr<DeviceMemory> make_cuda_managed_memory(int device) {
    return std::make_unique<cuda::ManagedMemory>(device);
}

cuda::GraphStats cuda_graph_stats(Backend& backend) {
    if (auto* cuda = dynamic_cast<CudaBackend*>(&backend)) return cuda->graph_stats();
    return {};
}

void set_cuda_graphs(Backend& backend, bool on) {
    if (auto* cuda = dynamic_cast<CudaBackend*>(&backend)) cuda->set_graphs(on);
}

}  // namespace moeserve
