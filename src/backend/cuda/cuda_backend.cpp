#include "backend/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "backend/cuda/cuda_memory.h"
#include "backend/cuda/cuda_ops.h"
#include "gguf/gguf_file.h"
#include "memory/kv_cache.h"

namespace moeserve {
namespace {

// The batch inputs of the current forward pass, on the device. Ops receive
// the host spans; a span whose data pointer is the staged one maps to its
// device copy, anything else (a test calling an op directly) is uploaded on
// the fly into scratch.
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

class CudaBackend final : public Backend {
  public:
    explicit CudaBackend(int device) : memory_(device) {
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
        if (staging_) cudaFreeHost(staging_);
        if (weights_) cudaFree(weights_);
        if (ctx_.cublas) cublasDestroy(ctx_.cublas);
    }

    std::string name() const override { return "cuda (" + description_ + ")"; }
    int n_threads() const override { return 1; }
    DeviceMemory& memory() override { return memory_; }

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
        runs_.clear();
        size_t bytes = 0;
        for (const Piece& p : pieces) {
            if (!runs_.empty() && runs_.back().host_end == p.host) {
                runs_.back().host_end += p.bytes;
            } else {
                runs_.push_back({p.host, p.host + p.bytes, bytes});
            }
            bytes += p.bytes;
        }
        size_t free_before = 0, total = 0;
        MOESERVE_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
        if (bytes > free_before)
            throw std::runtime_error(
                fmt::format("the model's weights need {:.2f} GiB of GPU memory, {:.2f} GiB are free "
                            "on {}{}",
                            bytes / double(1 << 30), free_before / double(1 << 30), description_,
                            upload ? "" : " (-ngl N below the layer count keeps the first layers on the CPU)"));
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

    void begin_batch(const BatchInputs& in) override {
        // The previous pass ended with its outputs read back, so the stream
        // is idle and the pinned staging buffer free: the inputs go up with
        // asynchronous copies and no further waits.
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        scratch_->reset();
        staging_used_ = 0;
        staging_ok_ = true;
        StagedBatch& s = staged_;
        s = StagedBatch{};
        s.tokens_host = in.tokens.data();
        s.positions_host = in.positions.data();
        s.seq_ids_host = in.seq_ids.data();
        s.cells_host = in.cells.data();
        s.tokens = upload(in.tokens);
        s.positions = upload(in.positions);
        s.seq_ids = upload(in.seq_ids);
        s.cells = upload(in.cells);
        s.rows_host = in.rows.cells.data();
        s.rows = upload_rows(in.rows);
        staging_ok_ = false;
    }

    void end_batch() override {}
    void synchronize() override { MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }

    // ---- data movement -----------------------------------------------------

    void copy_rows(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t width) override {
        cuda::copy_rows(ctx_, dst, dst_stride, src, src_stride, n_rows, width);
    }
    void gather_rows(float* dst, const float* src, int64_t width, std::span<const int64_t> rows) override {
        cuda::gather_rows(ctx_, dst, src, width, upload(rows), static_cast<int64_t>(rows.size()));
    }
    void fill(float* y, float value, int64_t n) override { cuda::fill(ctx_, y, value, n); }
    void read(float* host_dst, const float* src, int64_t n) override {
        memory_.download(host_dst, src, n * sizeof(float));
    }

    // ---- ops -----------------------------------------------------------------

    void embed(const Weight& table, std::span<const int32_t> tokens, float* out) override {
        const int32_t* d_tokens = tokens.data() == staged_.tokens_host ? staged_.tokens : upload(tokens);
        cuda::embed(ctx_, dev(table), d_tokens, static_cast<int64_t>(tokens.size()), out);
    }
    void rms_norm(const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) override {
        cuda::rms_norm(ctx_, x, dev(w), eps, n_rows, n, out);
    }
    void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert) override {
        cuda::matmul(ctx_, dev(w), x, n_tokens, y, expert);
    }
    void matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) override {
        for (const Projection& p : projections) cuda::matmul(ctx_, dev(*p.w), x, n_tokens, p.y, 0);
    }
    void rope(float* x, int64_t n_tokens, int n_head, int head_dim, std::span<const int32_t> positions,
              const RopeParams& p) override {
        RopeParams dp = p;
        dp.freq_factors = dev(p.freq_factors);
        const int32_t* d_pos = positions.data() == staged_.positions_host ? staged_.positions : upload(positions);
        cuda::rope(ctx_, x, n_tokens, n_head, head_dim, d_pos, dp);
    }
    void add(float* y, const float* x, int64_t n) override { cuda::add(ctx_, y, x, n); }
    void add_row_broadcast(float* y, const float* b, int64_t n_rows, int64_t n) override {
        cuda::add_row_broadcast(ctx_, y, dev(b), n_rows, n);
    }

    void shift_keys(KvCache&, int, std::span<const int32_t>, int, int, int32_t, const RopeParams&) override {
        throw std::runtime_error("context shift runs on the CPU backend only (start without --context-shift on a GPU)");
    }
    void store_kv(KvCache& cache, int layer, const float* k, const float* v, std::span<const int32_t> cells) override {
        const int32_t* d_cells = cells.data() == staged_.cells_host ? staged_.cells : upload(cells);
        cuda::store_kv(ctx_, kv_layer(cache, layer), k, v, d_cells, static_cast<int64_t>(cells.size()));
    }
    void attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                   const AttentionRows& rows, float scale, float* out) override {
        const KvCacheConfig& cfg = cache.config();
        const int n_head_kv = static_cast<int>(cfg.n_embd_k[layer] / cfg.head_dim_k);
        cuda::attention(ctx_, kv_layer(cache, layer), q, n_tokens, n_head, n_head_kv, cfg.head_dim_k, cfg.head_dim_v,
                        cells_of(rows), scale, out);
    }
    void matmul_heads(const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride, int64_t x_head_stride,
                      float* y) override {
        cuda::matmul_heads(ctx_, dev(w), x, n_tokens, x_token_stride, x_head_stride, y);
    }
    void attention_mla(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head, int n_latent,
                       const AttentionRows& rows, float scale, float* out) override {
        cuda::attention_mla(ctx_, kv_layer(cache, layer), q, n_tokens, n_head, n_latent, cells_of(rows), scale, out);
    }
    void moe_ffn(const float* x, int64_t n_tokens, const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                 const Weight& down_exps, const MoeParams& p, float* out) override {
        MoeParams dp = p;
        dp.selection_bias = dev(p.selection_bias);
        cuda::moe_ffn(ctx_, x, n_tokens, dev(router), dev(gate_exps), dev(up_exps), dev(down_exps), dp, out);
    }
    void dense_ffn(const float* x, int64_t n_tokens, const Weight& gate, const Weight& up, const Weight& down,
                   ExpertActivation act, float* out) override {
        cuda::dense_ffn(ctx_, x, n_tokens, dev(gate), dev(up), dev(down), act, out);
    }
    void ssm_conv(KvCache& cache, int layer, const float* x, int64_t x_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const Weight& conv, const Weight& bias, float* out) override {
        cuda::ssm_conv(ctx_, recurrent_layer(cache, layer), x, x_stride, n_tokens, seq_ids_of(seq_ids), dev(conv),
                       dev(bias), out);
    }
    void ssm_scan(KvCache& cache, int layer, const float* xbc, const float* dt, int64_t dt_stride, int64_t n_tokens,
                  std::span<const int32_t> seq_ids, const SsmParams& p, float* y) override {
        SsmParams dp = p;
        dp.dt_bias = dev(p.dt_bias);
        dp.a = dev(p.a);
        dp.d = dev(p.d);
        cuda::ssm_scan(ctx_, recurrent_layer(cache, layer), xbc, dt, dt_stride, n_tokens, seq_ids_of(seq_ids), dp, y);
    }
    void gated_group_norm(float* y, const float* z, int64_t z_stride, const float* w, float eps, int64_t n_rows,
                          int64_t n, int n_group) override {
        cuda::gated_group_norm(ctx_, y, z, z_stride, dev(w), eps, n_rows, n, n_group);
    }

  private:
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

    // Copies host values into scratch. In begin_batch through the pinned
    // staging buffer without waiting; elsewhere (an op given arrays that
    // were not staged) synchronously, since the host array may change as
    // soon as the op returns.
    template <class T>
    T* upload(std::span<const T> host) {
        if (host.empty()) return nullptr;
        T* d = scratch_->take_n<T>(host.size());
        const size_t bytes = host.size_bytes();
        if (staging_ok_ && stage_room(bytes)) {
            uint8_t* pinned = staging_ + staging_used_;
            staging_used_ += (bytes + 255) / 256 * 256;
            std::memcpy(pinned, host.data(), bytes);
            MOESERVE_CUDA_CHECK(cudaMemcpyAsync(d, pinned, bytes, cudaMemcpyHostToDevice, ctx_.stream));
            return d;
        }
        MOESERVE_CUDA_CHECK(cudaMemcpyAsync(d, host.data(), bytes, cudaMemcpyHostToDevice, ctx_.stream));
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        return d;
    }
    // Makes room for `bytes` more in the pinned staging buffer, growing it
    // (after the copies already queued from it have finished).
    bool stage_room(size_t bytes) {
        const size_t need = staging_used_ + (bytes + 255) / 256 * 256;
        if (need <= staging_capacity_) return true;
        if (staging_used_ != 0) {
            // Copies from the current buffer may be in flight: wait, then grow.
            MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        }
        const size_t grown = std::max(need, staging_capacity_ * 2);
        uint8_t* fresh = nullptr;
        MOESERVE_CUDA_CHECK(cudaMallocHost(&fresh, grown));
        if (staging_used_) std::memcpy(fresh, staging_, staging_used_);
        if (staging_) cudaFreeHost(staging_);
        staging_ = fresh;
        staging_capacity_ = grown;
        return true;
    }

    // Per token, its cells in key order. Tokens of one sequence share one
    // cell list (a prefix of it each), so each distinct list is uploaded
    // once, as long as its longest use.
    cuda::AttentionCells upload_rows(const AttentionRows& rows) {
        const size_t n = rows.cells.size();
        if (n == 0) return {};
        std::map<const int32_t*, int32_t> longest;
        for (size_t t = 0; t < n; ++t) {
            int32_t& m = longest[rows.cells[t]];
            m = std::max(m, rows.n_cells[t]);
        }
        std::vector<int32_t> flat;
        std::map<const int32_t*, int64_t> start;
        for (const auto& [list, len] : longest) {
            start[list] = static_cast<int64_t>(flat.size());
            flat.insert(flat.end(), list, list + len);
        }
        std::vector<int64_t> offset(n);
        int32_t max_cells = 0;
        for (size_t t = 0; t < n; ++t) {
            offset[t] = start[rows.cells[t]];
            max_cells = std::max(max_cells, rows.n_cells[t]);
        }
        cuda::AttentionCells c;
        c.cells = upload(std::span<const int32_t>(flat));
        c.offset = upload(std::span<const int64_t>(offset));
        c.n_cells = upload(rows.n_cells);
        c.max_cells = max_cells;
        return c;
    }
    cuda::AttentionCells cells_of(const AttentionRows& rows) {
        if (rows.cells.data() == staged_.rows_host) return staged_.rows;
        return upload_rows(rows);
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
    struct Run {
        const uint8_t* host_begin;
        const uint8_t* host_end;
        size_t device_offset;
    };
    std::vector<Run> runs_;
    uint8_t* weights_ = nullptr;
    StagedBatch staged_;
    uint8_t* staging_ = nullptr;  // pinned host memory for begin_batch's uploads
    size_t staging_capacity_ = 0;
    size_t staging_used_ = 0;
    bool staging_ok_ = false;
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

}  // namespace moeserve
