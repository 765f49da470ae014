// Tokens deep in a context: their cells in fixed chunks, each with its own
// softmax state.
//
// From kSplitFrom cells on, a query row's attention is computed a chunk of
// kSplitChunk cells at a time: per chunk its maximum score m, Σ exp(s - m)
// and the V rows summed with those weights; then the chunks' states are
// merged in chunk order (M = max m, each scaled by exp(m - M), divided by the
// summed weights). The chunks depend only on the row's cell count, and every
// score, exponential and sum is the same per row whatever else is computed
// beside it (the group kernels are exact per row, attention_kernels.h), so a
// row gets the same bits alone or in a block of prompt tokens, with any
// threads, beside any batch: a decoded token, the same token verified in a
// speculative step and the same position in a prompt agree bit for bit.
// Against one softmax over all cells (the op below kSplitFrom) the float
// order differs, within rounding.
//
// Two schedules. A decoded token (a block of one) splits its chunks across
// the threads, all KV heads per work item (a cell's heads lie side by side,
// read in runs of kStreamingChunk cells), then merges in a second pass: a
// decode token's attention had only one item per KV head (4 for Qwen3) to
// spread over the cores. A block of prompt tokens keeps one item per block
// and KV head, as there are many, and walks its chunks in order, holding
// their states, then merges.
//
// Every cache type: the group kernels where the build has them, the general
// path's per-row loops (cpu_attention.cpp) otherwise.
#include <algorithm>
#include <cmath>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cache_line_vector.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/vec_math.h"
#include "memory/kv_cache.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

constexpr int64_t kValueChunk = 64;    // V rows converted at a time on the general path
constexpr int64_t kPrefetchAhead = 8;  // cached rows ahead of the one in use, on the general path

// What every chunk of one attention call shares.
struct SplitOp {
    const KvCache& cache;
    int layer;
    const float* q;
    int n_head, n_head_kv, group, dk, dv;
    const AttentionRows& rows;
    float scale;
    int64_t chunk;
    GgmlType type_k, type_v, qtype;
    bool float_k, group_k, group_v;
    size_t q_row_bytes, k_head_bytes, v_head_bytes;
    int k_chunk, v_chunk;
    VecDotFn dot;
    VecDot4Fn dot4;

    SplitOp(const KvCache& c, int l, const float* q_, int n_head_, const AttentionRows& r, float s, int64_t ch)
        : cache(c), layer(l), q(q_), n_head(n_head_), rows(r), scale(s), chunk(ch) {
        const KvCacheConfig& cfg = cache.config();
        dk = cfg.head_dim_k;
        dv = cfg.head_dim_v;
        n_head_kv = static_cast<int>(cfg.n_embd_k[layer] / dk);
        group = n_head / n_head_kv;
        type_k = cache.type_k();
        type_v = cache.type_v();
        float_k = is_float_type(type_k);
        qtype = vec_dot_type(type_k);
        group_k = has_group_scores(type_k, dk);
        group_v = has_group_values(type_v, dv);
        q_row_bytes = float_k ? dk * sizeof(float) : ggml_row_bytes(qtype, dk);
        k_head_bytes = ggml_row_bytes(type_k, dk);
        v_head_bytes = ggml_row_bytes(type_v, dv);
        k_chunk = cache.k_rotation_chunk();
        v_chunk = cache.v_rotation_chunk();
        dot = vec_dot_kernel(type_k);
        dot4 = vec_dot4_kernel(type_k);
    }
};

// One thread's buffers and the queries it prepared last: for KV heads
// [g0, g1) of tokens [t0, t0 + len), rows r = l * group + j per head (token
// l, its query head j of the group), as the block path orders them.
struct ChunkWorker {
    const SplitOp& op;
    int64_t t0 = -1;
    int len = 0, g0 = 0, g1 = 0;
    CacheLineVector<float> qf, scores, kbuf, vchunk;
    CacheLineVector<uint8_t> qq, packed;
    std::vector<const uint8_t*> row_ptrs;
    size_t packed_head = 0;  // packed bytes of one head's rows

    explicit ChunkWorker(const SplitOp& o) : op(o), kbuf(o.dk), vchunk(static_cast<size_t>(kValueChunk) * o.dv) {
        row_ptrs.resize(kStreamingChunk);
    }

    int n_rows() const { return len * op.group; }  // a head's query rows

    void prepare(int64_t t, int n_tok, int h0, int h1) {
        if (t == t0 && n_tok == len && h0 == g0 && h1 == g1) return;
        t0 = t, len = n_tok, g0 = h0, g1 = h1;
        const int rows_h = n_rows(), heads = g1 - g0;
        qf.resize(static_cast<size_t>(heads) * rows_h * op.dk);
        if (!op.float_k) qq.resize(static_cast<size_t>(heads) * rows_h * op.q_row_bytes);
        packed_head = op.group_k ? group_query_bytes(op.type_k, rows_h, op.dk) : 0;
        packed.resize(heads * packed_head);
        for (int g = g0; g < g1; ++g)
            for (int r = 0; r < rows_h; ++r) {
                const int l = r / op.group, j = r % op.group;
                const float* qh = op.q + ((t0 + l) * op.n_head + g * op.group + j) * op.dk;
                const size_t at = static_cast<size_t>(g - g0) * rows_h + r;
                float* qr = qf.data() + at * op.dk;
                std::copy(qh, qh + op.dk, qr);
                if (op.k_chunk) rotate_chunks(qr, op.dk, op.k_chunk);
                if (!op.float_k) quantize_row_activation(op.qtype, qr, qq.data() + at * op.q_row_bytes, op.dk);
            }
        if (op.group_k)
            for (int g = g0; g < g1; ++g) {
                const size_t at = static_cast<size_t>(g - g0) * rows_h;
                pack_group_queries(
                    op.type_k,
                    op.float_k ? static_cast<const void*>(qf.data() + at * op.dk) : qq.data() + at * op.q_row_bytes,
                    op.q_row_bytes, rows_h, op.dk, packed.data() + (g - g0) * packed_head);
            }
    }

    // Cells [c0, c0 + nc) of the prepared rows: per row (head g, row r at
    // index (g - g0) * n_rows + r) its state (m, Σ weights) into ms and its
    // weighted V sum into acc. A row whose token sees fewer cells takes only
    // those (none: m = -inf, sum 0).
    void chunk_states(int64_t c0, int64_t nc, float* ms, float* acc) {
        const int rows_h = n_rows(), heads = g1 - g0;
        const int32_t* cells = op.rows.cells[t0];
        scores.resize(static_cast<size_t>(heads) * rows_h * nc);
        const auto valid = [&](int r) { return std::clamp<int64_t>(op.rows.n_cells[t0 + r / op.group] - c0, 0, nc); };
        for (int64_t s0 = 0; s0 < nc; s0 += kStreamingChunk) {
            const int64_t ns = std::min<int64_t>(kStreamingChunk, nc - s0);
            for (int g = g0; g < g1; ++g) {
                float* sg = scores.data() + static_cast<size_t>(g - g0) * rows_h * nc + s0;
                if (op.group_k) {
                    for (int64_t c = 0; c < ns; ++c)
                        row_ptrs[c] = op.cache.k_row(op.layer, cells[c0 + s0 + c]) + g * op.k_head_bytes;
                    score_group_rows(op.type_k, row_ptrs.data(), ns, packed.data() + (g - g0) * packed_head, rows_h,
                                     op.dk, op.scale, sg, nc);
                    continue;
                }
                for (int64_t c = 0; c < ns; ++c) {
                    const int64_t cell = c0 + s0 + c;
                    const uint8_t* kr = op.cache.k_row(op.layer, cells[cell]) + g * op.k_head_bytes;
                    if (s0 + c + kPrefetchAhead < nc)  // rows are strided by all KV heads: help the prefetcher
                        prefetch_bytes(op.cache.k_row(op.layer, cells[cell + kPrefetchAhead]) + g * op.k_head_bytes,
                                       op.k_head_bytes);
                    const float* kf = op.float_k ? row_as_f32(op.type_k, kr, kbuf.data(), op.dk) : nullptr;
                    for (int l = 0; l < len; ++l) {
                        if (cell >= op.rows.n_cells[t0 + l]) continue;  // beyond this token's cells
                        const size_t base = static_cast<size_t>(g - g0) * rows_h + l * op.group;
                        float* sl = sg + static_cast<int64_t>(l) * op.group * nc;
                        int j = 0;
                        if (!op.float_k && op.dot4)  // four query heads per pass over the K row
                            for (; j + 4 <= op.group; j += 4) {
                                const void* a[4];
                                for (int x = 0; x < 4; ++x) a[x] = qq.data() + (base + j + x) * op.q_row_bytes;
                                float o[4];
                                op.dot4(kr, a, o, op.dk);
                                for (int x = 0; x < 4; ++x) sl[(j + x) * nc + c] = o[x] * op.scale;
                            }
                        for (; j < op.group; ++j)
                            sl[j * nc + c] = (op.float_k ? dot_f32(qf.data() + (base + j) * op.dk, kf, op.dk)
                                                         : op.dot(kr, qq.data() + (base + j) * op.q_row_bytes, op.dk)) *
                                             op.scale;
                    }
                }
            }
        }
        // States; the weights past a row's cells become 0 (adding 0 * v leaves a sum as it is).
        for (int x = 0; x < heads * rows_h; ++x) {
            float* sr = scores.data() + static_cast<size_t>(x) * nc;
            const int64_t n = valid(x % rows_h);
            ms[2 * x] = n > 0 ? max_of(sr, n) : -INFINITY;
            ms[2 * x + 1] = n > 0 ? exp_shifted_sum(sr, n, ms[2 * x]) : 0.0f;
            std::fill(sr + n, sr + nc, 0.0f);
        }
        std::fill(acc, acc + static_cast<size_t>(heads) * rows_h * op.dv, 0.0f);
        const int64_t v_run = op.group_v ? kStreamingChunk : kValueChunk;
        for (int64_t s0 = 0; s0 < nc; s0 += v_run) {
            const int64_t ns = std::min<int64_t>(v_run, nc - s0);
            for (int g = g0; g < g1; ++g) {
                const float* pg = scores.data() + static_cast<size_t>(g - g0) * rows_h * nc + s0;
                float* ag = acc + static_cast<size_t>(g - g0) * rows_h * op.dv;
                if (op.group_v) {
                    for (int64_t c = 0; c < ns; ++c)
                        row_ptrs[c] = op.cache.v_row(op.layer, cells[c0 + s0 + c]) + g * op.v_head_bytes;
                    accumulate_group_rows(op.type_v, row_ptrs.data(), ns, pg, nc, rows_h, op.dv, ag);
                    continue;
                }
                for (int64_t c = 0; c < ns; ++c) {  // the rows as f32, kept in L1 while every query row sums them
                    const int64_t cell = c0 + s0 + c;
                    if (s0 + c + kPrefetchAhead < nc)
                        prefetch_bytes(op.cache.v_row(op.layer, cells[cell + kPrefetchAhead]) + g * op.v_head_bytes,
                                       op.v_head_bytes);
                    float* dst = vchunk.data() + c * op.dv;
                    const float* vf =
                        row_as_f32(op.type_v, op.cache.v_row(op.layer, cells[cell]) + g * op.v_head_bytes, dst, op.dv);
                    if (vf != dst) std::copy(vf, vf + op.dv, dst);
                }
                for (int r = 0; r < rows_h; ++r) {
                    const int64_t n = std::min(ns, valid(r) - s0);
                    if (n > 0) accumulate_rows(ag + r * op.dv, pg + r * nc, vchunk.data(), n, op.dv);
                }
            }
        }
    }
};

// out = the merge of one row's n chunk states (ms: (m, Σ) pairs, acc: dv
// values; successive chunks ms_stride and acc_stride floats apart), in
// chunk order, then the V rotation undone.
void merge_row(const SplitOp& op, const float* ms, size_t ms_stride, const float* acc, size_t acc_stride, int64_t n,
               float* o) {
    float m = -INFINITY;
    for (int64_t c = 0; c < n; ++c) m = std::max(m, ms[c * ms_stride]);
    std::fill(o, o + op.dv, 0.0f);
    float sum = 0.0f;
    for (int64_t c = 0; c < n; ++c) {
        if (ms[c * ms_stride + 1] == 0.0f) continue;  // no cells of this row in the chunk
        const float f = std::exp(ms[c * ms_stride] - m);
        sum += ms[c * ms_stride + 1] * f;
        const float* a = acc + c * acc_stride;
        for (int k = 0; k < op.dv; ++k) o[k] += a[k] * f;
    }
    const float inv = sum > 0 ? 1.0f / sum : 0.0f;
    for (int k = 0; k < op.dv; ++k) o[k] *= inv;
    if (op.v_chunk) rotate_chunks(o, op.dv, op.v_chunk);  // H·H = I undoes the V rotation
}

}  // namespace

void CpuBackend::attention_split_cells(const KvCache& cache, int layer, const float* q, int n_head,
                                       const AttentionRows& rows, float scale, float* out,
                                       std::span<const std::pair<int64_t, int>> blocks) {
    const SplitOp op(cache, layer, q, n_head, rows, scale, attention_split_chunk_);
    const auto n_chunks = [&](int64_t t0, int len) {
        return (rows.n_cells[t0 + len - 1] + op.chunk - 1) / op.chunk;  // the block's last token sees the most
    };
    const size_t dv = static_cast<size_t>(op.dv);

    // Decoded tokens: (token, chunk) items for all heads across the threads, then the merge.
    std::vector<int64_t> tokens;
    for (const auto& [t0, len] : blocks)
        if (len == 1) tokens.push_back(t0);
    if (!tokens.empty()) {
        std::vector<int64_t> first(tokens.size() + 1, 0);  // token i's items: [first[i], first[i + 1])
        for (size_t i = 0; i < tokens.size(); ++i) first[i + 1] = first[i] + n_chunks(tokens[i], 1);
        const int64_t n_items = first.back();
        const size_t rows_per_item = static_cast<size_t>(op.n_head_kv) * op.group;
        split_.ms.resize(static_cast<size_t>(n_items) * rows_per_item * 2);
        split_.acc.resize(static_cast<size_t>(n_items) * rows_per_item * dv);
        pool_.parallel_for(n_items, [&](int64_t b, int64_t e) {
            ChunkWorker w(op);
            for (int64_t item = b; item < e; ++item) {
                const size_t i =
                    static_cast<size_t>(std::upper_bound(first.begin(), first.end(), item) - first.begin() - 1);
                const int64_t c0 = (item - first[i]) * op.chunk;
                w.prepare(tokens[i], 1, 0, op.n_head_kv);
                w.chunk_states(c0, std::min<int64_t>(op.chunk, rows.n_cells[tokens[i]] - c0),
                               split_.ms.data() + item * rows_per_item * 2,
                               split_.acc.data() + item * rows_per_item * dv);
            }
        });
        pool_.parallel_for(static_cast<int64_t>(tokens.size() * rows_per_item), [&](int64_t b, int64_t e) {
            for (int64_t x = b; x < e; ++x) {
                const size_t i = static_cast<size_t>(x) / rows_per_item, r = static_cast<size_t>(x) % rows_per_item;
                const size_t at = first[i] * rows_per_item + r;  // row r = head g * group + j
                merge_row(op, split_.ms.data() + at * 2, rows_per_item * 2, split_.acc.data() + at * dv,
                          rows_per_item * dv, first[i + 1] - first[i], out + (tokens[i] * n_head + r) * dv);
            }
        });
    }

    // Blocks of prompt tokens: one item per block and KV head, its chunks in order.
    std::vector<std::pair<int64_t, int>> prompt;
    for (const auto& blk : blocks)
        if (blk.second > 1) prompt.push_back(blk);
    if (prompt.empty()) return;
    pool_.parallel_for(static_cast<int64_t>(prompt.size()) * op.n_head_kv, [&](int64_t b, int64_t e) {
        ChunkWorker w(op);
        CacheLineVector<float> ms, acc;
        for (int64_t item = b; item < e; ++item) {
            const auto [t0, len] = prompt[item / op.n_head_kv];
            const int g = static_cast<int>(item % op.n_head_kv);
            w.prepare(t0, len, g, g + 1);
            const int n_rows = w.n_rows();
            const int64_t n = n_chunks(t0, len), n_max = rows.n_cells[t0 + len - 1];
            ms.resize(static_cast<size_t>(n) * n_rows * 2);
            acc.resize(static_cast<size_t>(n) * n_rows * dv);
            for (int64_t c = 0; c < n; ++c)
                w.chunk_states(c * op.chunk, std::min<int64_t>(op.chunk, n_max - c * op.chunk),
                               ms.data() + c * n_rows * 2, acc.data() + c * n_rows * dv);
            for (int r = 0; r < n_rows; ++r) {
                const int l = r / op.group, j = r % op.group;
                merge_row(op, ms.data() + r * 2, static_cast<size_t>(n_rows) * 2, acc.data() + r * dv, n_rows * dv, n,
                          out + ((t0 + l) * n_head + g * op.group + j) * dv);
            }
        }
    });
}

}  // namespace moeserve
