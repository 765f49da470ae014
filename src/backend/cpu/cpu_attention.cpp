// Writing the KV cache and attending over it.
//
// Numerics follow llama.cpp's CPU flash-attention path: K and V are rounded
// to the cache type when stored; for each query, q is converted to K's dot
// partner type (f16 for an f16 cache, Q8_0/Q8_1 for quantized ones) and
// scored with the same vec_dot kernels as the matmuls; softmax and the V sum
// are f32. With a quantized cache, Q/K (and V) are multiplied by a
// Walsh-Hadamard matrix as llama.cpp does, which spreads outliers before
// quantization and leaves the exact scores unchanged.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/x86_intrinsics.h"

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cache_line_vector.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/vec_math.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {

void CpuBackend::store_kv(KvCache& cache, int layer, const float* k, const float* v, std::span<const int32_t> cells) {
    const int64_t n_k = cache.config().n_embd_k[layer];
    const int64_t n_v = cache.config().n_embd_v[layer];
    const int k_chunk = cache.k_rotation_chunk(), v_chunk = cache.v_rotation_chunk();
    pool_.parallel_for(static_cast<int64_t>(cells.size()), [&](int64_t b, int64_t e) {
        std::vector<float> tmp(std::max(n_k, n_v));
        for (int64_t t = b; t < e; ++t) {
            const float* kt = k + t * n_k;
            if (k_chunk) {
                std::copy(kt, kt + n_k, tmp.begin());
                rotate_chunks(tmp.data(), n_k, k_chunk);
                kt = tmp.data();
            }
            quantize_row_activation(cache.type_k(), kt, cache.k_row(layer, cells[t]), n_k);
            if (n_v == 0) continue;
            const float* vt = v + t * n_v;
            if (v_chunk) {
                std::copy(vt, vt + n_v, tmp.begin());
                rotate_chunks(tmp.data(), n_v, v_chunk);
                vt = tmp.data();
            }
            quantize_row_activation(cache.type_v(), vt, cache.v_row(layer, cells[t]), n_v);
        }
    });
}

void CpuBackend::shift_keys(KvCache& cache, int layer, std::span<const int32_t> cells, int n_head_kv, int head_dim,
                            int32_t delta, const RopeParams& p) {
    const int64_t n_k = cache.config().n_embd_k[layer];
    const int k_chunk = cache.k_rotation_chunk();
    // Rows as f32 (a quantized cache's Hadamard rotation undone: H is its own
    // inverse), rotated by delta, written back as store_kv writes keys.
    constexpr int64_t kBlock = 256;
    std::vector<float> rows(static_cast<size_t>(kBlock * n_k));
    const std::vector<int32_t> positions(kBlock, delta);
    for (size_t c0 = 0; c0 < cells.size(); c0 += kBlock) {
        const int64_t n = std::min<int64_t>(kBlock, static_cast<int64_t>(cells.size() - c0));
        for (int64_t t = 0; t < n; ++t) {
            float* row = rows.data() + t * n_k;
            dequantize_row(cache.type_k(), cache.k_row(layer, cells[c0 + t]), row, n_k);
            if (k_chunk) rotate_chunks(row, n_k, k_chunk);
        }
        rope(rows.data(), n, n_head_kv, head_dim, std::span<const int32_t>(positions.data(), n), p);
        for (int64_t t = 0; t < n; ++t) {
            float* row = rows.data() + t * n_k;
            if (k_chunk) rotate_chunks(row, n_k, k_chunk);
            quantize_row_activation(cache.type_k(), row, cache.k_row(layer, cells[c0 + t]), n_k);
        }
    }
}

void CpuBackend::attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                           const AttentionRows& rows, float scale, float* out) {
    const KvCacheConfig& cfg = cache.config();
    const int64_t n_embd_k = cfg.n_embd_k[layer], n_embd_v = cfg.n_embd_v[layer];
    const int dk = cfg.head_dim_k, dv = cfg.head_dim_v;
    const int n_head_kv = static_cast<int>(n_embd_k / dk);
    const int group = n_head / n_head_kv;  // query heads per KV head
    const GgmlType qtype = vec_dot_type(cache.type_k());
    const VecDotFn dot = vec_dot_kernel(cache.type_k());
    const VecDot4Fn dot4 = vec_dot4_kernel(cache.type_k());
    const size_t q_head_bytes = ggml_row_bytes(qtype, dk);
    const size_t k_head_bytes = ggml_row_bytes(cache.type_k(), dk);
    const size_t v_head_bytes = ggml_row_bytes(cache.type_v(), dv);
    const int k_chunk = cache.k_rotation_chunk(), v_chunk = cache.v_rotation_chunk();

    // Float caches (f32/f16/bf16): scores in f32 against K rows converted to
    // f32, as llama.cpp's tiled prompt path does. Quantized caches: q is
    // quantized to K's dot partner and scored with vec_dot, as llama.cpp's
    // one-query path does.
    const bool float_k = is_float_type(cache.type_k());
    // The group kernels (attention_kernels.h) score each K row against all
    // query rows of an item and sum each V row into all of their accumulators
    // in one pass, with the same results as the loops below.
    const bool group_k = has_group_scores(cache.type_k(), dk);
    const bool group_v = has_group_values(cache.type_v(), dv);

    // Query blocks: runs of up to kQueryBlock consecutive tokens of one
    // sequence (a prompt chunk), so each K and V row is loaded and converted
    // once for the whole block rather than once per token. Decode tokens are
    // blocks of one.
    constexpr int kQueryBlock = 8;
    constexpr int64_t kValueChunk = 64;           // V rows converted at a time (64 x 128 f32 = 32 KiB)
    constexpr int64_t kPrefetchAhead = 8;         // cached rows ahead of the one in use
    std::vector<std::pair<int64_t, int>> blocks;  // (first token, length)
    for (int64_t t = 0; t < n_tokens; ++t) {
        if (!blocks.empty()) {
            auto& [b0, len] = blocks.back();
            const int64_t last = b0 + len - 1;
            // A block's tokens are all below the split's depth or all at it or past it.
            const bool same_side =
                (rows.n_cells[t] >= attention_split_from_) == (rows.n_cells[last] >= attention_split_from_);
            if (len < kQueryBlock && rows.cells[t] == rows.cells[last] && rows.n_cells[t] == rows.n_cells[last] + 1 &&
                same_side) {
                ++len;
                continue;
            }
        }
        blocks.emplace_back(t, 1);
    }
    // Blocks deep in the context take their cells in chunks, each with its
    // own softmax state (cpu_attention_split.cpp); the others go below.
    {
        std::vector<std::pair<int64_t, int>> split_blocks;
        std::erase_if(blocks, [&](const std::pair<int64_t, int>& blk) {
            const bool split = rows.n_cells[blk.first] >= attention_split_from_;
            if (split) split_blocks.push_back(blk);
            return split;
        });
        if (!split_blocks.empty()) attention_split_cells(cache, layer, q, n_head, rows, scale, out, split_blocks);
        if (blocks.empty()) return;
    }

    // One work item = one query block and one KV head with its group of query
    // heads, so each K and V row is read once for all of them. A thread runs
    // its items of one block together, a chunk of cells at a time for all of
    // their KV heads: a cell's K (and V) rows of every head lie side by side
    // in the cache, so the thread reads its heads' part of each cell in one
    // run instead of one strided pass over the whole context per head (at
    // 32K cells the strided passes ran at a third of the read bandwidth).
    // Each score and each accumulator sees the same operations in the same
    // order as one head at a time would give it. Measured (bench/README.md,
    // "Reading a cell's KV heads together"): from 8K cells on, where the rows
    // come from memory; below it one head after another stays faster. Only
    // one-token blocks (decoding): a prompt block's 8 tokens do 8 times the
    // arithmetic per row read, and its heads' scores side by side would hold
    // 8 x cells x group floats each (the memory plan sizes them, but at 512K
    // cells that is over 100 MiB a head and thread).
    const int64_t n_items = static_cast<int64_t>(blocks.size()) * n_head_kv;
    pool_.parallel_for(n_items, [&](int64_t b, int64_t e) {
        const size_t n_q = static_cast<size_t>(kQueryBlock) * group;  // query rows of an item
        // The KV heads worked on together: this thread's heads of a block when
        // it streams, else one. Their queries, scores and sums; buffers for as
        // many heads and scores as the thread's largest block needs, sized up
        // front (growing them block by block held old and new at once).
        struct Head {
            CacheLineVector<float> qf, acc;
            float* scores = nullptr;  // its rows of the thread's score buffer
            CacheLineVector<uint8_t> qq, packed;
        };
        const auto streams = [&](int len, int64_t n_max) { return len == 1 && n_max >= attention_streaming_from_; };
        size_t most_heads = 1, most_scores = 0, most_cells = 0;
        for (int64_t i0 = b; i0 < e;) {
            const int64_t bi = i0 / n_head_kv, i1 = std::min<int64_t>(e, (bi + 1) * n_head_kv);
            const auto [t0, len] = blocks[bi];
            const int64_t n_max = rows.n_cells[t0 + len - 1];
            const bool streaming = streams(len, n_max);
            const size_t active = streaming ? static_cast<size_t>(i1 - i0) : 1;
            most_heads = std::max(most_heads, active);
            most_scores = std::max(most_scores, active * static_cast<size_t>(n_max * len * group));
            most_cells = std::max(most_cells, static_cast<size_t>(streaming ? kStreamingChunk : n_max));
            i0 = i1;
        }
        std::vector<Head> heads(most_heads);
        for (Head& h : heads) {
            h.qf.resize(n_q * dk);
            h.acc.resize(n_q * dv);
            h.qq.resize(q_head_bytes * n_q);
            h.packed.resize(group_k ? group_query_bytes(cache.type_k(), static_cast<int>(n_q), dk) : 0);
        }
        CacheLineVector<float> kbuf(dk), vchunk(static_cast<size_t>(kValueChunk) * dv), scores;
        scores.reserve(most_scores);
        std::vector<const uint8_t*> row_ptrs;  // a chunk's K (then V) rows of one head, for the group kernels
        if (group_k || group_v) row_ptrs.reserve(most_cells);
        for (int64_t i0 = b; i0 < e;) {
            const int64_t bi = i0 / n_head_kv;
            const int64_t i1 = std::min<int64_t>(e, (bi + 1) * n_head_kv);  // this thread's items of block bi
            const int g0 = static_cast<int>(i0 % n_head_kv), n_g = static_cast<int>(i1 - i0);
            i0 = i1;
            // (Named, not a structured binding: run_heads below captures them, which clang 14 refuses.)
            const int64_t t0 = blocks[bi].first;
            const int len = blocks[bi].second;
            const int32_t* cells = rows.cells[t0];
            // row_ptrs := the K (or V) rows of head g for cells [c0, c0 + nc) of the block.
            const auto chunk_rows = [&](bool values, int64_t c0, int64_t nc, int g) {
                row_ptrs.resize(static_cast<size_t>(nc));
                for (int64_t c = 0; c < nc; ++c)
                    row_ptrs[c] = values ? cache.v_row(layer, cells[c0 + c]) + g * v_head_bytes
                                         : cache.k_row(layer, cells[c0 + c]) + g * k_head_bytes;
            };
            const int64_t n_max = rows.n_cells[t0 + len - 1];  // the last token sees the most cells
            const int n_rows = len * group;
            const bool streaming = streams(len, n_max);
            const int64_t cell_chunk = streaming ? kStreamingChunk : n_max;
            const size_t head_scores = static_cast<size_t>(n_max) * n_rows;  // [len * group, n_max] a head
            scores.resize(head_scores * (streaming ? n_g : 1));
            // All phases for heads [k0, k1) of the block: together while streaming,
            // one head after another otherwise (as the kernels were tuned for).
            auto run_heads = [&](int k0, int k1) {
                for (int k = k0; k < k1; ++k) heads[k - k0].scores = scores.data() + head_scores * (k - k0);
                for (int k = k0; k < k1; ++k) {
                    Head& h = heads[k - k0];
                    const int g = g0 + k;
                    // Query row r = l * group + j: token t0 + l, head g * group + j.
                    for (int l = 0; l < len; ++l)
                        for (int j = 0; j < group; ++j) {
                            const int r = l * group + j;
                            const float* qh = q + ((t0 + l) * n_head + g * group + j) * dk;
                            float* qr = h.qf.data() + r * dk;
                            std::copy(qh, qh + dk, qr);
                            if (k_chunk) rotate_chunks(qr, dk, k_chunk);
                            if (!float_k) quantize_row_activation(qtype, qr, h.qq.data() + r * q_head_bytes, dk);
                        }
                    // scores: [len * group, n_max]; row r covers the cells its token sees.
                    if (group_k) {
                        if (float_k)
                            pack_group_queries(cache.type_k(), h.qf.data(), dk * sizeof(float), n_rows, dk,
                                               h.packed.data());
                        else
                            pack_group_queries(cache.type_k(), h.qq.data(), q_head_bytes, n_rows, dk, h.packed.data());
                    }
                }
                if (group_k) {
                    // Every row is scored against all n_max cells; a row's cells past its own count are not read.
                    for (int64_t c0 = 0; c0 < n_max; c0 += cell_chunk) {
                        const int64_t nc = std::min(cell_chunk, n_max - c0);
                        for (int k = k0; k < k1; ++k) {
                            chunk_rows(/*values=*/false, c0, nc, g0 + k);
                            score_group_rows(cache.type_k(), row_ptrs.data(), nc, heads[k - k0].packed.data(), n_rows,
                                             dk, scale, heads[k - k0].scores + c0, n_max);
                        }
                    }
                } else {
                    for (int k = k0; k < k1; ++k) {
                        Head& h = heads[k - k0];
                        const int g = g0 + k;
                        for (int64_t c = 0; c < n_max; ++c) {
                            const uint8_t* kr = cache.k_row(layer, cells[c]) + g * k_head_bytes;
                            if (c + kPrefetchAhead < n_max)  // rows are strided by all KV heads: help the prefetcher
                                prefetch_bytes(cache.k_row(layer, cells[c + kPrefetchAhead]) + g * k_head_bytes,
                                               k_head_bytes);
                            const float* kf = float_k ? row_as_f32(cache.type_k(), kr, kbuf.data(), dk) : nullptr;
                            // Causal: token l sees n_cells[t0] + l cells, so cell c is seen from l_begin on.
                            const int l_begin = static_cast<int>(std::max<int64_t>(0, c - rows.n_cells[t0] + 1));
                            for (int l = l_begin; l < len; ++l) {
                                int j = 0;
                                if (!float_k && dot4) {  // four query heads per pass over the K row
                                    for (; j + 4 <= group; j += 4) {
                                        const int r = l * group + j;
                                        const void* a[4];
                                        for (int x = 0; x < 4; ++x) a[x] = h.qq.data() + (r + x) * q_head_bytes;
                                        float o[4];
                                        dot4(kr, a, o, dk);
                                        for (int x = 0; x < 4; ++x) h.scores[(r + x) * n_max + c] = o[x] * scale;
                                    }
                                }
                                for (; j < group; ++j) {
                                    const int r = l * group + j;
                                    h.scores[r * n_max + c] = (float_k ? dot_f32(h.qf.data() + r * dk, kf, dk)
                                                                       : dot(kr, h.qq.data() + r * q_head_bytes, dk)) *
                                                              scale;
                                }
                            }
                        }
                    }
                }
                for (int k = k0; k < k1; ++k) {
                    Head& h = heads[k - k0];
                    for (int r = 0; r < n_rows; ++r)
                        softmax_inplace(h.scores + r * n_max, rows.n_cells[t0 + r / group]);
                    std::fill(h.acc.begin(), h.acc.begin() + static_cast<size_t>(n_rows) * dv, 0.0f);
                    if (group_v)  // weights of cells past a row's count are 0 (adding 0 * v leaves each sum as it is)
                        for (int r = 0; r < n_rows; ++r) {
                            float* p = h.scores + r * n_max;
                            std::fill(p + rows.n_cells[t0 + r / group], p + n_max, 0.0f);
                        }
                }
                // acc[r] = Σ_c p[r][c] · V[c], cell after cell.
                if (group_v) {
                    for (int64_t c0 = 0; c0 < n_max; c0 += cell_chunk) {
                        const int64_t nc = std::min(cell_chunk, n_max - c0);
                        for (int k = k0; k < k1; ++k) {
                            chunk_rows(/*values=*/true, c0, nc, g0 + k);
                            accumulate_group_rows(cache.type_v(), row_ptrs.data(), nc, heads[k - k0].scores + c0, n_max,
                                                  n_rows, dv, heads[k - k0].acc.data());
                        }
                    }
                } else {
                    // Over chunks of V rows converted to f32 once and kept in L1 while
                    // every query row of the item sums them.
                    for (int k = k0; k < k1; ++k) {
                        Head& h = heads[k - k0];
                        const int g = g0 + k;
                        for (int64_t c0 = 0; c0 < n_max; c0 += kValueChunk) {
                            const int64_t c1 = std::min<int64_t>(n_max, c0 + kValueChunk);
                            for (int64_t c = c0; c < c1; ++c) {
                                const uint8_t* vr = cache.v_row(layer, cells[c]) + g * v_head_bytes;
                                if (c + kPrefetchAhead < n_max)
                                    prefetch_bytes(cache.v_row(layer, cells[c + kPrefetchAhead]) + g * v_head_bytes,
                                                   v_head_bytes);
                                float* dst = vchunk.data() + (c - c0) * dv;
                                const float* vf = row_as_f32(cache.type_v(), vr, dst, dv);
                                if (vf != dst) std::copy(vf, vf + dv, dst);
                            }
                            for (int r = 0; r < n_rows; ++r) {
                                const int64_t end = std::min<int64_t>(c1, rows.n_cells[t0 + r / group]);
                                if (end > c0)
                                    accumulate_rows(h.acc.data() + r * dv, h.scores + r * n_max + c0, vchunk.data(),
                                                    end - c0, dv);
                            }
                        }
                    }
                }
                for (int k = k0; k < k1; ++k)
                    for (int l = 0; l < len; ++l)
                        for (int j = 0; j < group; ++j) {
                            const int r = l * group + j;
                            float* o = out + ((t0 + l) * n_head + (g0 + k) * group + j) * dv;
                            std::copy(heads[k - k0].acc.begin() + r * dv, heads[k - k0].acc.begin() + (r + 1) * dv, o);
                            if (v_chunk) rotate_chunks(o, dv, v_chunk);  // H·H = I undoes the V rotation
                        }
            };
            if (streaming)
                run_heads(0, n_g);
            else
                for (int k = 0; k < n_g; ++k) run_heads(k, k + 1);
        }
    });
    (void)n_embd_v;
}

}  // namespace moeserve
