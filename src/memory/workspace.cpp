#include "memory/workspace.h"

#include <algorithm>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/latent_scores.h"
#include "backend/cpu/mla_quantized_layout.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

constexpr uint64_t kF32 = 4;

// The CPU MLA kernel's tiling (backend/cpu/cpu_mla.cpp).
constexpr int64_t kMlaRowBlock = 32, kMlaTileQueries = 64, kMlaMinSplitRows = 256;

// Walks one forward pass over the tensor table, keeping the live heap bytes
// and their peak. Buffer names follow the code that owns them.
class WorkspaceWalk {
  public:
    WorkspaceWalk(const GgufFile& f, const MemoryShape& s, const WorkspaceParams& p) : f_(f), s_(s), p_(p) {}

    Workspace run() {
        const int64_t T = p_.n_tokens;
        // Model::forward: cell, row-table and output-row lists; the batch itself.
        const uint64_t bookkeeping = T * (4 + 8 + 4 + 13) + p_.n_outputs * 8 + 64;
        begin_temp(bookkeeping);
        for (const char* name : {"x", "normed", "sub"}) hold(name, T * s_.n_embd * kF32);
        if (s_.arch == "deepseek2") deepseek2_buffers();
        for (int l = 0; l < s_.n_layer; ++l) layer(l);
        const GgufTensorInfo* out = tensor("output.weight");
        matmul(out ? out : tensor("token_embd.weight"), p_.n_outputs);
        end_temp(bookkeeping);
        Workspace w;
        w.held = live_;
        w.transient = peak_ - live_;
        return w;
    }

  private:
    struct Buffer {
        uint64_t size = 0, cap = 0;
    };

    const GgufTensorInfo* tensor(const std::string& name) const { return f_.find_tensor(name); }
    const GgufTensorInfo* blk(int l, const char* name) const { return tensor("blk." + std::to_string(l) + "." + name); }

    void note_peak(uint64_t extra = 0) { peak_ = std::max(peak_, live_ + extra); }
    void begin_temp(uint64_t bytes) {
        live_ += bytes;
        note_peak();
    }
    void end_temp(uint64_t bytes) { live_ -= bytes; }
    void transient(uint64_t bytes) { note_peak(bytes); }

    // std::vector::resize of a reused buffer: growing past its capacity
    // allocates max(2 × size, n) and frees the old block after moving.
    void hold(const std::string& name, uint64_t n) {
        Buffer& b = held_[name];
        if (n > b.cap) {
            const uint64_t cap = b.size == 0 ? n : std::max(2 * b.size, n);
            note_peak(cap);
            live_ += cap - b.cap;
            b.cap = cap;
        }
        b.size = n;
    }
    // quantize_activations: resizes only when too small.
    void hold_at_least(const std::string& name, uint64_t n) {
        if (n > held_[name].size) hold(name, n);
    }

    // Bytes of n activations converted to the partner type of weight type t.
    static uint64_t act_row(GgmlType t, int64_t n) {
        try {
            const GgmlType a = vec_dot_type(t);
            if (n % ggml_type_info(a).block_size == 0) return ggml_row_bytes(a, n);
        } catch (const std::invalid_argument&) {
        }
        return n * kF32;
    }
    static GgmlType partner(GgmlType t) {
        try {
            return vec_dot_type(t);
        } catch (const std::invalid_argument&) {
            return GgmlType::F32;
        }
    }

    // The packed activation tiles of prompt matmuls (cpu_matmul.cpp): one buffer
    // of the driving thread, sized by the largest call.
    static const VecDotTile* tile_kernel(const GgufTensorInfo* w) {
        return w ? vec_dot_tile_kernel(w->type, w->ne[0]) : nullptr;
    }
    static uint64_t tile_bytes(const GgufTensorInfo* w, int64_t tiles) {
        const VecDotTile* t = tile_kernel(w);
        return t && tiles > 0 ? t->tile_bytes(w->ne[0]) * tiles : 0;
    }
    // The tiles of a product over `rows` activation rows.
    static uint64_t product_tile_bytes(const GgufTensorInfo* w, int64_t rows) {
        const VecDotTile* t = tile_kernel(w);
        return t ? tile_bytes(w, dot_tile_count(*t, rows)) : 0;
    }
    void tiles(uint64_t bytes) {
        if (bytes > 0) hold_at_least("tiles", bytes);
    }

    // y = W·x for `rows` rows: x is quantized into the first activation buffer.
    void matmul(const GgufTensorInfo* w, int64_t rows) {
        if (!w) return;
        hold_at_least("act_a", act_row(w->type, w->ne[0]) * rows);
        tiles(product_tile_bytes(w, rows));
    }

    // Several products over one input: x is quantized once per distinct
    // partner type, all into the second activation buffer.
    void matmul_shared(std::initializer_list<const GgufTensorInfo*> ws, int64_t rows) {
        std::vector<GgmlType> seen;
        // Products of one input share their tiles where the layout and the
        // tile count agree (cpu_matmul.cpp).
        std::vector<std::pair<decltype(VecDotTile::pack), int>> packed;
        uint64_t total = 0, tile_total = 0;
        for (const GgufTensorInfo* w : ws) {
            if (!w) continue;
            if (const VecDotTile* t = tile_kernel(w);
                t && std::find(packed.begin(), packed.end(), std::make_pair(t->pack, t->min_partial)) == packed.end()) {
                packed.emplace_back(t->pack, t->min_partial);
                tile_total += product_tile_bytes(w, rows);
            }
            if (std::find(seen.begin(), seen.end(), partner(w->type)) != seen.end()) continue;
            seen.push_back(partner(w->type));
            total += act_row(w->type, w->ne[0]) * rows;
        }
        hold_at_least("act_b", total);
        tiles(tile_total);
    }

    // One product per head of a stacked {in, out, n_head} weight: the heads'
    // inputs are gathered head-major, then quantized together.
    void matmul_heads(const GgufTensorInfo* w, int64_t rows) {
        if (!w) return;
        const uint64_t gathered = w->ne[2] * rows * w->ne[0] * kF32;
        begin_temp(gathered);
        hold_at_least("act_a", act_row(w->type, w->ne[0]) * w->ne[2] * rows);
        if (const VecDotTile* t = tile_kernel(w))
            tiles(tile_bytes(w, w->ne[2] * dot_tile_count(*t, rows)));  // each head its own tiles
        end_temp(gathered);
    }

    void dense_ffn(const GgufTensorInfo* gate, const GgufTensorInfo* up, const GgufTensorInfo* down, int64_t rows) {
        if (!up || !down) return;
        hold("dense", 2 * rows * up->ne[1] * kF32);  // gate and up outputs [rows, n_ff]
        if (gate)
            matmul_shared({gate, up}, rows);
        else
            matmul(up, rows);
        matmul(down, rows);
    }

    void moe_ffn(int l, const GgufTensorInfo* gate, const GgufTensorInfo* up, const GgufTensorInfo* down) {
        const GgufTensorInfo* router = blk(l, "ffn_gate_inp.weight");
        if (!router || !up || !down) return;
        const int64_t T = p_.n_tokens, X = router->ne[1], E = up->ne[0], F = up->ne[1];
        const int64_t items = T * std::max(1, s_.n_expert_used);  // (token, expert) pairs
        hold("moe_logits", T * X * kF32);
        matmul(router, T);
        const uint64_t routes = items * 8 + (X + 1) * 8 + items * 8;  // routes, expert starts, sorted items
        begin_temp(routes);
        hold("moe_prob", X * kF32);
        hold("moe_order", X * 4);
        transient(X * 8);
        hold("moe_xs", items * E * kF32);  // the routed input rows, later the expert outputs
        hold_at_least("act_a", act_row(up->type, E) * items);
        if (gate && partner(gate->type) != partner(up->type)) hold_at_least("act_b", act_row(gate->type, E) * items);
        hold("moe_g", items * F * kF32);
        hold("moe_u", items * F * kF32);
        transient(4 * X * 56);  // job lists
        hold_at_least("act_b", act_row(down->type, F) * items);
        // Each expert packs its own tiles; however the items fall, there are at
        // most items/16 full ones and a partial one per expert with the
        // kernel's min_partial items or more.
        auto expert_tile_bytes = [&](const GgufTensorInfo* w) -> uint64_t {
            const VecDotTile* t = tile_kernel(w);
            return t ? tile_bytes(w, items / kDotTileRows + std::min<int64_t>(X, items / t->min_partial)) : 0;
        };
        // Gate and up products of an expert share their tiles when their
        // kernels pack the same ones (cpu_matmul.cpp), else both are held.
        const VecDotTile *tg = tile_kernel(gate), *tu = tile_kernel(up);
        const bool gate_shares = !tg || (tu && tg->pack == tu->pack && tg->min_partial == tu->min_partial);
        tiles(std::max(expert_tile_bytes(up) + (gate_shares ? 0 : expert_tile_bytes(gate)), expert_tile_bytes(down)));
        transient(items * 8);  // each item's place in the sorted order
        end_temp(routes);
    }

    // Per thread while attending (backend/cpu/cpu_attention.cpp): each work
    // item is a block of up to 8 consecutive prompt tokens and one KV head
    // with its group of query heads; the scores grow as later blocks see more
    // cells (the batch ends at the last cell). From kSplitFrom cells on, the
    // blocks take their cells in chunks of kSplitChunk
    // (cpu_attention_split.cpp): a decoded token's chunks spread over the
    // threads with their softmax states kept between passes, a prompt block
    // per thread with its chunks' states; per thread one chunk's scores. (The
    // streaming order of cpu_attention.cpp runs only with the split turned
    // off, in benchmarks.) Decode batches are not modelled: their scratch
    // (a chunk's scores per thread, the chunks' states) stays below a prompt
    // batch's at the same depth, which is.
    void gqa_attention_scratch(int n_head, int n_head_kv, int64_t dk, int64_t dv) {
        if (n_head_kv <= 0) return;
        constexpr int64_t kQueryBlock = 8, kValueChunk = 64;
        const int64_t group = std::max(1, n_head / n_head_kv);
        const int64_t n_q = kQueryBlock * group;
        const bool float_k = p_.type_k == GgmlType::F32 || p_.type_k == GgmlType::F16 || p_.type_k == GgmlType::BF16;
        const uint64_t q_head = float_k ? dk * ggml_type_info(p_.type_k).type_size : act_row(p_.type_k, dk);
        const uint64_t shared = (dk + kValueChunk * dv) * kF32;
        uint64_t per_head = (n_q * dk + n_q * dv) * kF32 + n_q * q_head;
        // The group kernels (backend/cpu/attention_kernels.h, where this
        // build has them) add packed queries and one row pointer per cell.
        const bool group_k = has_group_scores(p_.type_k, static_cast<int>(dk));
        const bool group_v = has_group_values(p_.type_v, static_cast<int>(dv));
        if (group_k) per_head += group_query_bytes(p_.type_k, static_cast<int>(n_q), static_cast<int>(dk));
        const int64_t T = p_.n_tokens;
        const int64_t first_cell = std::max<int64_t>(0, p_.n_kv - T);
        // Blocks of up to 8 tokens (cells seen by the last), all below the
        // split's depth or all at it or past it, as the op forms them.
        struct Block {
            int64_t len;
            uint64_t cells;
        };
        std::vector<Block> blocks, split_prompt;
        int64_t n_split_chunks = 0;  // decoded tokens' (token, chunk) items
        const auto deep = [&](int64_t t) { return first_cell + t + 1 >= kSplitFrom; };
        for (int64_t t0 = 0; t0 < T;) {
            int64_t len = 1;
            while (len < kQueryBlock && t0 + len < T && deep(t0 + len) == deep(t0)) ++len;
            const uint64_t cells = std::min(p_.n_kv, first_cell + t0 + len);
            if (!deep(t0))
                blocks.push_back({len, cells});
            else if (len == 1)
                n_split_chunks += (static_cast<int64_t>(cells) + kSplitChunk - 1) / kSplitChunk;
            else
                split_prompt.push_back({len, cells});
            t0 += len;
        }
        // The chunks' workers (cpu_attention_split.cpp): queries, one chunk's
        // scores, the general path's row buffers, row pointers.
        const auto worker = [&](int64_t heads, int64_t rows) {  // rows: a head's query rows
            uint64_t b = (heads * rows * dk + heads * rows * kSplitChunk + dk + kValueChunk * dv) * kF32 +
                         (float_k ? 0 : heads * rows * q_head) + kStreamingChunk * sizeof(void*);
            if (group_k) b += heads * group_query_bytes(p_.type_k, static_cast<int>(rows), static_cast<int>(dk));
            return b;
        };
        uint64_t phase = 0;  // the op's three phases run one after another: the largest counts
        if (n_split_chunks > 0) {
            const int threads = static_cast<int>(std::min<int64_t>(std::max(1, p_.n_threads), n_split_chunks));
            phase = std::max(phase, threads * worker(n_head_kv, group) + T * 16);
        }
        // The decoded tokens' chunk states, kept between passes: this batch's,
        // or every sequence decoding one token deep in the cache (their cells
        // add up to the cache's at most).
        int64_t kept_chunks = n_split_chunks;
        if (p_.n_kv >= kSplitFrom) {
            const int64_t cells = p_.n_cells > 0 ? p_.n_cells : p_.n_kv;
            kept_chunks = std::max(kept_chunks, std::min(p_.n_seq * ((p_.n_kv + kSplitChunk - 1) / kSplitChunk),
                                                         (cells + kSplitChunk - 1) / kSplitChunk + p_.n_seq));
        }
        if (kept_chunks > 0) {
            hold("attn_split_ms", kept_chunks * n_head_kv * group * 2 * kF32);
            hold("attn_split_acc", kept_chunks * n_head_kv * group * dv * kF32);
        }
        if (!split_prompt.empty()) {  // one item per block and KV head, holding its chunks' states
            const int64_t items = static_cast<int64_t>(split_prompt.size()) * n_head_kv;
            const int threads = static_cast<int>(std::min<int64_t>(std::max(1, p_.n_threads), items));
            uint64_t most_rows = 0, most_states = 0;
            for (const Block& blk : split_prompt) {
                const uint64_t rows = blk.len * group;
                most_rows = std::max(most_rows, rows);
                most_states = std::max(most_states, (blk.cells + kSplitChunk - 1) / kSplitChunk * rows * (2 + dv));
            }
            phase = std::max(phase, threads * (worker(1, static_cast<int64_t>(most_rows)) + most_states * kF32));
        }
        uint64_t total = 0;
        const int64_t n_blocks = static_cast<int64_t>(blocks.size());
        const int64_t items = n_blocks * n_head_kv;
        const int threads = static_cast<int>(std::min<int64_t>(std::max(1, p_.n_threads), items));
        for (int i = 0; i < threads; ++i) {
            const int64_t b = items * i / threads, e = items * (i + 1) / threads;
            if (b >= e) continue;
            uint64_t most = 0, most_cells = 0;  // as the op sizes them up front
            for (int64_t blk = b / n_head_kv; blk <= (e - 1) / n_head_kv; ++blk) {
                most = std::max<uint64_t>(most, blocks[blk].cells * blocks[blk].len * group);
                most_cells = std::max<uint64_t>(most_cells, blocks[blk].cells);
            }
            total += shared + per_head + most * kF32 + (group_k || group_v ? most_cells * sizeof(void*) : 0);
        }
        const uint64_t lists = (n_blocks + static_cast<int64_t>(split_prompt.size()) + n_split_chunks) * 16;
        transient(std::max(phase, total) + lists);
    }

    void gqa_attention(int l) {
        const LayerShape& ls = s_.layers[l];
        const int64_t T = p_.n_tokens;
        hold("attn_q", T * ls.n_head * s_.head_dim_k * kF32);
        hold("attn_k", T * ls.n_head_kv * s_.head_dim_k * kF32);
        hold("attn_v", T * ls.n_head_kv * s_.head_dim_v * kF32);
        hold("attn_out", T * ls.n_head * s_.head_dim_v * kF32);
        matmul_shared({blk(l, "attn_q.weight"), blk(l, "attn_k.weight"), blk(l, "attn_v.weight")}, T);
        transient(std::min<int64_t>(p_.n_threads, T) * (ls.n_embd_k + ls.n_embd_v) * kF32);  // cache writes
        gqa_attention_scratch(ls.n_head, ls.n_head_kv, s_.head_dim_k, s_.head_dim_v);
        matmul(blk(l, "attn_output.weight"), T);
    }

    // deepseek2's per-token buffers, sized once per pass (model/deepseek2.cpp).
    void deepseek2_buffers() {
        const int64_t T = p_.n_tokens, H = s_.layers[0].n_head, R = s_.kv_lora_rank, rope = s_.n_rot;
        const int64_t D = R + rope, dk = s_.head_dim_k_mla, dv = s_.head_dim_v_mla;
        hold("ffn", T * s_.n_embd * kF32);
        hold("mla_q", T * H * dk * kF32);
        hold("mla_qa", T * std::max<int64_t>(s_.q_lora_rank, 1) * kF32);
        hold("mla_kv", T * D * kF32);
        hold("mla_krow", T * D * kF32);
        hold("mla_lat", T * R * kF32);
        hold("mla_q_pe", T * H * rope * kF32);
        hold("mla_k_pe", T * rope * kF32);
        hold("mla_q_mla", T * H * D * kF32);
        hold("mla_q_abs", T * H * R * kF32);
        hold("mla_o_lat", T * H * R * kF32);
        hold("mla_o", T * H * dv * kF32);
    }

    // Flash-style MLA over the latent cache: queries in tiles, each tile's
    // cells split into chunks with their own softmax state when there are
    // few tiles; per thread, a block of rows and its scores.
    void mla_attention_scratch(int64_t H) {
        const int64_t T = p_.n_tokens, R = s_.kv_lora_rank, D = R + s_.n_rot;
        const int threads = std::max(1, p_.n_threads);
        if (has_latent_int_scores(p_.type_k, static_cast<int>(D)) && R % MlaQuantizedLayout::kSlice == 0)
            return mla_quantized_scratch(H);
        const int64_t tile_tokens = std::max<int64_t>(1, kMlaTileQueries / H);
        const int64_t n_tiles = (T + tile_tokens - 1) / tile_tokens;
        int64_t n_states = 0;
        for (int64_t i = 0; i < n_tiles; ++i) {
            const int64_t t1 = std::min(T, (i + 1) * tile_tokens), nq = (t1 - i * tile_tokens) * H;
            const int64_t cells = std::min(p_.n_kv, std::max<int64_t>(0, p_.n_kv - T) + t1);
            int64_t split = 1;
            if (t1 - i * tile_tokens == 1)  // a tile of one token: chunks by its row count alone
                split = (cells + mla_decode_chunk_rows(cells) - 1) / mla_decode_chunk_rows(cells);
            else if (n_tiles < 4 * threads)
                split = std::clamp<int64_t>(cells / kMlaMinSplitRows, 1, (4 * threads + n_tiles - 1) / n_tiles);
            n_states += nq * split;
        }
        const bool float_k = p_.type_k == GgmlType::F32 || p_.type_k == GgmlType::F16 || p_.type_k == GgmlType::BF16;
        uint64_t bytes = n_tiles * 24 + (float_k ? 0 : T * H * D * kF32);              // tiles, rounded queries
        bytes += n_states / std::max<int64_t>(1, H) * 32 + n_states * (R + 2) * kF32;  // items, partial states
        bytes += threads * (kMlaRowBlock * D + std::min(tile_tokens, T) * H * kMlaRowBlock) * kF32;
        transient(bytes);
    }

    // The same over a Q4_0/Q8_0 cache (backend/cpu/cpu_mla_quantized.cpp):
    // buffers kept across calls, resized pass by pass (runs of up to
    // block_tokens tokens), so each grows to its largest pass.
    void mla_quantized_scratch(int64_t H) {
        const int64_t T = p_.n_tokens, R = s_.kv_lora_rank, D = R + s_.n_rot;
        const int threads = std::max(1, p_.n_threads);
        const int64_t block = MlaQuantizedLayout::block_tokens(static_cast<int>(H));
        for (int64_t t0 = 0; t0 < T; t0 += block) {
            const int64_t nq = std::min(block, T - t0) * H;
            const MlaQuantizedLayout lay(static_cast<int>(nq), threads);
            hold("mla_queries", nq * (D / MlaQuantizedLayout::kSlice) * sizeof(LatentQueries::Block));
            hold("mla_max", nq * kF32);
            hold("mla_sum", nq * kF32);
            hold("mla_acc", nq * R * kF32);
            hold("mla_scores", nq * lay.chunk * kF32);
            hold("mla_ms", nq * lay.chunk * kF32);
            hold("mla_marks", lay.n_groups * lay.chunk * 2);
            hold("mla_rows", threads * lay.chunk * sizeof(void*));
            hold("mla_values", threads * lay.chunk * MlaQuantizedLayout::kSlice * kF32);
        }
    }

    // Absorbed MLA (spec §5.3, model/deepseek2.cpp).
    void mla_attention(int l) {
        const int64_t T = p_.n_tokens, H = s_.layers[l].n_head;
        if (blk(l, "attn_q.weight")) {
            matmul_shared({blk(l, "attn_q.weight"), blk(l, "attn_kv_a_mqa.weight")}, T);
        } else {
            matmul_shared({blk(l, "attn_q_a.weight"), blk(l, "attn_kv_a_mqa.weight")}, T);
            matmul(blk(l, "attn_q_b.weight"), T);
        }
        transient(std::min<int64_t>(p_.n_threads, T) * (s_.kv_lora_rank + s_.n_rot) * kF32);  // cache writes
        matmul_heads(blk(l, "attn_k_b.weight"), T);
        mla_attention_scratch(H);
        matmul_heads(blk(l, "attn_v_b.weight"), T);
        matmul(blk(l, "attn_output.weight"), T);
    }

    // Mamba2 (spec §6.7, model/nemotron_h_moe.cpp): in_proj [T, z | xBC | dt],
    // the conv output xBC [T, d_inner + 2GN], the scan output y [T, d_inner].
    void mamba2(int l) {
        const int64_t T = p_.n_tokens, d_xbc = s_.ssm_d_inner + 2 * s_.ssm_n_group * s_.ssm_d_state;
        hold("ssm_proj", T * (s_.ssm_d_inner + d_xbc + s_.ssm_n_head) * kF32);
        hold("ssm_xbc", T * d_xbc * kF32);
        hold("ssm_y", T * s_.ssm_d_inner * kF32);
        matmul(blk(l, "ssm_in.weight"), T);
        transient(T * 40);  // tokens grouped by sequence
        matmul(blk(l, "ssm_out.weight"), T);
    }

    void ffn(int l) {
        const int64_t T = p_.n_tokens;
        if (!blk(l, "ffn_gate_inp.weight")) {
            dense_ffn(blk(l, "ffn_gate.weight"), blk(l, "ffn_up.weight"), blk(l, "ffn_down.weight"), T);
            return;
        }
        auto shared = [&] {
            dense_ffn(blk(l, "ffn_gate_shexp.weight"), blk(l, "ffn_up_shexp.weight"), blk(l, "ffn_down_shexp.weight"),
                      T);
        };
        if (s_.arch == "nemotron_h_moe") shared();  // nemotron runs the shared expert first
        moe_ffn(l, blk(l, "ffn_gate_exps.weight"), blk(l, "ffn_up_exps.weight"), blk(l, "ffn_down_exps.weight"));
        if (s_.arch != "nemotron_h_moe") shared();
    }

    void layer(int l) {
        switch (s_.layers[l].kind) {
            case LayerKind::Attention:
                gqa_attention(l);
                if (s_.arch != "nemotron_h_moe") ffn(l);
                break;
            case LayerKind::Mla:
                mla_attention(l);
                ffn(l);
                break;
            case LayerKind::Mamba2:
                mamba2(l);
                break;
            case LayerKind::Ffn:
                ffn(l);
                break;
        }
    }

    const GgufFile& f_;
    const MemoryShape& s_;
    const WorkspaceParams& p_;
    std::map<std::string, Buffer> held_;
    uint64_t live_ = 0, peak_ = 0;
};

}  // namespace

Workspace plan_workspace(const GgufFile& f, const MemoryShape& shape, const WorkspaceParams& p) {
    return WorkspaceWalk(f, shape, p).run();
}

}  // namespace moeserve
