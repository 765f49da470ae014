// Decoded tokens deep in a context: their cells split into fixed chunks.
//
// A decoded token's GQA attention has one KV head's worth of work per head
// (4 for Qwen3, 2 for Nemotron), so split by heads it keeps at most that
// many threads busy while the context, the bulk of a deep token's bytes,
// waits. Here each token's cells go in chunks of kSplitChunk, one work item
// per chunk for all KV heads (a cell's heads lie side by side, read in runs
// of kStreamingChunk cells), each with its own softmax state per query row:
// its maximum score m, Σ exp(s - m) and the V rows summed with those weights.
// The chunks' states are then merged in chunk order: M = max m, scale each
// by exp(m - M), divide by the summed weights. The chunks depend only on the
// token's cell count, never on the threads or the batch, so a token gets the
// same bits on any machine and beside any other requests; against the
// unsplit op (one softmax over all cells, then the V sum) the float order
// differs, within rounding. Every cache type: the group kernels where the
// build has them, the general path's per-row loops otherwise.
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

void CpuBackend::attention_split_cells(const KvCache& cache, int layer, const float* q, int n_head,
                                       const AttentionRows& rows, float scale, float* out,
                                       std::span<const int64_t> tokens) {
    const KvCacheConfig& cfg = cache.config();
    const int dk = cfg.head_dim_k, dv = cfg.head_dim_v;
    const int n_head_kv = static_cast<int>(cfg.n_embd_k[layer] / dk);
    const int group = n_head / n_head_kv;
    const GgmlType type_k = cache.type_k(), type_v = cache.type_v();
    const bool float_k = is_float_type(type_k);
    const GgmlType qtype = vec_dot_type(type_k);
    const size_t q_row_bytes = float_k ? dk * sizeof(float) : ggml_row_bytes(qtype, dk);
    const size_t k_head_bytes = ggml_row_bytes(type_k, dk), v_head_bytes = ggml_row_bytes(type_v, dv);
    const int k_chunk = cache.k_rotation_chunk(), v_chunk = cache.v_rotation_chunk();
    const int64_t chunk = attention_split_chunk_;  // kSplitChunk but in tests
    // The group kernels where this build has them for the cache's types, else
    // the general path's per-row loops (cpu_attention.cpp): the same numbers
    // in either, as there.
    const bool group_k = has_group_scores(type_k, dk), group_v = has_group_values(type_v, dv);
    const size_t packed_bytes = group_k ? group_query_bytes(type_k, group, dk) : 0;
    const VecDotFn dot = vec_dot_kernel(type_k);
    const VecDot4Fn dot4 = vec_dot4_kernel(type_k);
    constexpr int64_t kValueChunk = 64;    // V rows converted at a time on the general path
    constexpr int64_t kPrefetchAhead = 8;  // cached rows ahead of the one in use, on the general path

    // Work items (token i, chunk): token i's are [first[i], first[i + 1]).
    std::vector<int64_t> first(tokens.size() + 1, 0);
    for (size_t i = 0; i < tokens.size(); ++i) first[i + 1] = first[i] + (rows.n_cells[tokens[i]] + chunk - 1) / chunk;
    const int64_t n_items = first.back();
    // Per item, KV head and query row: (m, Σ weights), and the weighted V sum.
    const size_t rows_per_item = static_cast<size_t>(n_head_kv) * group;
    split_.ms.resize(static_cast<size_t>(n_items) * rows_per_item * 2);
    split_.acc.resize(static_cast<size_t>(n_items) * rows_per_item * dv);

    pool_.parallel_for(n_items, [&](int64_t b, int64_t e) {
        // Query rows r = g * group + j (KV head g, its query head j), as f32 and as K's dot partner.
        CacheLineVector<float> qf(rows_per_item * dk), scores(rows_per_item * chunk);
        CacheLineVector<float> kbuf(dk), vchunk(static_cast<size_t>(kValueChunk) * dv);
        CacheLineVector<uint8_t> qq(float_k ? 0 : rows_per_item * q_row_bytes), packed(n_head_kv * packed_bytes);
        std::vector<const uint8_t*> row_ptrs(kStreamingChunk);
        int64_t prepared_token = -1;
        for (int64_t item = b; item < e; ++item) {
            const size_t i =
                static_cast<size_t>(std::upper_bound(first.begin(), first.end(), item) - first.begin() - 1);
            const int64_t t = tokens[i];
            const int32_t* cells = rows.cells[t];
            const int64_t c0 = (item - first[i]) * chunk;
            const int64_t nc = std::min<int64_t>(chunk, rows.n_cells[t] - c0);
            if (prepared_token != t) {  // the token's queries, as the unsplit op prepares them
                for (size_t r = 0; r < rows_per_item; ++r) {
                    const float* qh = q + (t * n_head + static_cast<int64_t>(r)) * dk;
                    float* qr = qf.data() + r * dk;
                    std::copy(qh, qh + dk, qr);
                    if (k_chunk) rotate_chunks(qr, dk, k_chunk);
                    if (!float_k) quantize_row_activation(qtype, qr, qq.data() + r * q_row_bytes, dk);
                }
                if (group_k)
                    for (int g = 0; g < n_head_kv; ++g)
                        pack_group_queries(type_k,
                                           float_k ? static_cast<const void*>(qf.data() + g * group * dk)
                                                   : qq.data() + g * group * q_row_bytes,
                                           q_row_bytes, group, dk, packed.data() + g * packed_bytes);
                prepared_token = t;
            }
            // Scores [head][row][nc], a run of cells at a time for every head.
            for (int64_t s0 = 0; s0 < nc; s0 += kStreamingChunk) {
                const int64_t ns = std::min<int64_t>(kStreamingChunk, nc - s0);
                for (int g = 0; g < n_head_kv; ++g) {
                    float* sg = scores.data() + g * group * nc + s0;
                    if (group_k) {
                        for (int64_t c = 0; c < ns; ++c)
                            row_ptrs[c] = cache.k_row(layer, cells[c0 + s0 + c]) + g * k_head_bytes;
                        score_group_rows(type_k, row_ptrs.data(), ns, packed.data() + g * packed_bytes, group, dk,
                                         scale, sg, nc);
                        continue;
                    }
                    for (int64_t c = 0; c < ns; ++c) {
                        const uint8_t* kr = cache.k_row(layer, cells[c0 + s0 + c]) + g * k_head_bytes;
                        if (s0 + c + kPrefetchAhead < nc)  // rows are strided by all KV heads: help the prefetcher
                            prefetch_bytes(cache.k_row(layer, cells[c0 + s0 + c + kPrefetchAhead]) + g * k_head_bytes,
                                           k_head_bytes);
                        const float* kf = float_k ? row_as_f32(type_k, kr, kbuf.data(), dk) : nullptr;
                        int j = 0;
                        if (!float_k && dot4)  // four query heads per pass over the K row
                            for (; j + 4 <= group; j += 4) {
                                const void* a[4];
                                for (int x = 0; x < 4; ++x) a[x] = qq.data() + (g * group + j + x) * q_row_bytes;
                                float o[4];
                                dot4(kr, a, o, dk);
                                for (int x = 0; x < 4; ++x) sg[(j + x) * nc + c] = o[x] * scale;
                            }
                        for (; j < group; ++j) {
                            const size_t r = static_cast<size_t>(g) * group + j;
                            sg[j * nc + c] = (float_k ? dot_f32(qf.data() + r * dk, kf, dk)
                                                      : dot(kr, qq.data() + r * q_row_bytes, dk)) *
                                             scale;
                        }
                    }
                }
            }
            // The chunk's softmax state: scores become exp(s - m).
            float* ms = split_.ms.data() + item * rows_per_item * 2;
            float* acc = split_.acc.data() + item * rows_per_item * dv;
            for (size_t r = 0; r < rows_per_item; ++r) {
                float* sr = scores.data() + r * nc;
                ms[2 * r] = max_of(sr, nc);
                ms[2 * r + 1] = exp_shifted_sum(sr, nc, ms[2 * r]);
            }
            std::fill(acc, acc + rows_per_item * dv, 0.0f);
            const int64_t v_run = group_v ? kStreamingChunk : kValueChunk;
            for (int64_t s0 = 0; s0 < nc; s0 += v_run) {
                const int64_t ns = std::min<int64_t>(v_run, nc - s0);
                for (int g = 0; g < n_head_kv; ++g) {
                    const float* pg = scores.data() + g * group * nc + s0;
                    float* ag = acc + static_cast<size_t>(g) * group * dv;
                    if (group_v) {
                        for (int64_t c = 0; c < ns; ++c)
                            row_ptrs[c] = cache.v_row(layer, cells[c0 + s0 + c]) + g * v_head_bytes;
                        accumulate_group_rows(type_v, row_ptrs.data(), ns, pg, nc, group, dv, ag);
                        continue;
                    }
                    for (int64_t c = 0; c < ns; ++c) {  // the rows as f32, kept in L1 while every query row sums them
                        if (s0 + c + kPrefetchAhead < nc)
                            prefetch_bytes(cache.v_row(layer, cells[c0 + s0 + c + kPrefetchAhead]) + g * v_head_bytes,
                                           v_head_bytes);
                        float* dst = vchunk.data() + c * dv;
                        const float* vf =
                            row_as_f32(type_v, cache.v_row(layer, cells[c0 + s0 + c]) + g * v_head_bytes, dst, dv);
                        if (vf != dst) std::copy(vf, vf + dv, dst);
                    }
                    for (int j = 0; j < group; ++j) accumulate_rows(ag + j * dv, pg + j * nc, vchunk.data(), ns, dv);
                }
            }
        }
    });

    // Merge each token's chunks per query row, in chunk order.
    pool_.parallel_for(static_cast<int64_t>(tokens.size() * rows_per_item), [&](int64_t b, int64_t e) {
        for (int64_t x = b; x < e; ++x) {
            const size_t i = static_cast<size_t>(x) / rows_per_item, r = static_cast<size_t>(x) % rows_per_item;
            const int64_t t = tokens[i];
            float m = -INFINITY;
            for (int64_t c = first[i]; c < first[i + 1]; ++c) m = std::max(m, split_.ms[(c * rows_per_item + r) * 2]);
            float* o = out + (t * n_head + static_cast<int64_t>(r)) * dv;  // row r = head g * group + j
            std::fill(o, o + dv, 0.0f);
            float sum = 0.0f;
            for (int64_t c = first[i]; c < first[i + 1]; ++c) {
                const size_t at = c * rows_per_item + r;
                const float f = std::exp(split_.ms[at * 2] - m);
                sum += split_.ms[at * 2 + 1] * f;
                const float* a = split_.acc.data() + at * dv;
                for (int k = 0; k < dv; ++k) o[k] += a[k] * f;
            }
            const float inv = sum > 0 ? 1.0f / sum : 0.0f;
            for (int k = 0; k < dv; ++k) o[k] *= inv;
            if (v_chunk) rotate_chunks(o, dv, v_chunk);  // H·H = I undoes the V rotation
        }
    });
}

}  // namespace moeserve
