// The KV cache: per layer, K and V rows for a pool of cells in the cache's
// element types (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl; K and
// V chosen independently). Each cell belongs to one sequence at one
// position; a sequence's cells are kept in position order (its page table,
// with pages of one cell), so sequences can grow, be truncated or removed
// independently and share one pool.
//
// Hybrid models (Mamba2 + attention) also keep a recurrent state per
// sequence here (memory/recurrent_state.h), so the cache stays the one
// memory object models and the server see. A recurrent state cannot be
// rewound: truncating such a sequence to 0 < n < length needs a snapshot
// taken at exactly n (see snapshot, can_truncate).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "memory/device_memory.h"
#include "memory/page_buffer.h"
#include "memory/recurrent_state.h"
#include "quant/ggml_type.h"

namespace moeserve {

struct KvCacheConfig {
    int64_t n_cells = 0;  // total cells (tokens) over all sequences
    int n_seq_max = 1;    // sequence ids 0 .. n_seq_max-1
    GgmlType type_k = GgmlType::F16;
    GgmlType type_v = GgmlType::F16;
    std::vector<int64_t> n_embd_k;  // per layer: K row width (n_head_kv*head_dim); 0 = layer has no cache
    std::vector<int64_t> n_embd_v;  // per layer: V row width; 0 = no V (MLA)
    int head_dim_k = 0;             // shared head sizes, for the Hadamard rule
    int head_dim_v = 0;
    bool allow_rotation = true;  // llama.cpp's LLAMA_ATTN_ROT_DISABLE turns it off
    // Recurrent layers (hybrid models); both empty, or one entry per layer.
    std::vector<int64_t> n_embd_r;  // per layer: conv-state floats per sequence; 0 = not recurrent
    std::vector<int64_t> n_embd_s;  // per layer: SSM-state floats per sequence
    int n_rs_snapshots = 32;        // recurrent-state snapshots kept per sequence (recurrent_state.h)
    // Speculative decoding on a hybrid model: a copy of each sequence's
    // recurrent state to roll back to when guesses are rejected.
    bool rs_rollback = false;
};

// What a sequence holds, as host bytes: the K and V rows of its tokens in
// every layer (per layer: the K rows in token order, then the V rows) and,
// for hybrid models, the recurrent state after its last token. What the
// server's RAM prompt cache keeps of a slot (spec server-behaviour §6.2).
struct SequenceState {
    int64_t n_tokens = 0;
    PageBuffer rows;
    std::vector<float> recurrent;  // empty without recurrent layers
    size_t bytes() const { return rows.size() + recurrent.size() * sizeof(float); }
};

class KvCache {
  public:
    // The cells and recurrent states live in `memory` (the backend's: host
    // memory for the CPU, GPU memory for CUDA); the bookkeeping on the host.
    explicit KvCache(const KvCacheConfig& config, DeviceMemory& memory = host_memory());

    const KvCacheConfig& config() const { return config_; }
    GgmlType type_k() const { return config_.type_k; }
    GgmlType type_v() const { return config_.type_v; }
    int n_layer() const { return static_cast<int>(config_.n_embd_k.size()); }
    int64_t n_cells() const { return config_.n_cells; }
    int64_t n_free() const { return static_cast<int64_t>(free_.size()); }
    size_t bytes() const;

    // llama.cpp multiplies Q and K (V) by a Walsh-Hadamard matrix in chunks
    // before quantizing them into the cache; 0 when not rotated.
    int k_rotation_chunk() const { return k_rot_chunk_; }
    int v_rotation_chunk() const { return v_rot_chunk_; }

    // Appends n positions to a sequence and returns their cells; throws
    // std::runtime_error when the pool has fewer than n free cells.
    std::vector<int32_t> append(int seq, int64_t n);
    // Keeps positions [0, n_keep) of a sequence and frees the rest. With
    // recurrent layers, n_keep <= 0 zeroes the sequence's state, and
    // 0 < n_keep < length restores the snapshot taken at n_keep or throws
    // std::runtime_error (the prefix must then be re-evaluated).
    void truncate(int seq, int64_t n_keep);
    void remove(int seq) { truncate(seq, 0); }
    void clear();
    // Whether truncate(seq, n_keep) will succeed.
    bool can_truncate(int seq, int64_t n_keep) const;

    // Speculative decoding: whether guessed tokens can be dropped again (always
    // for attention caches; a recurrent state needs config().rs_rollback).
    // begin_guesses() before a step evaluates guesses after the sequence's
    // tokens; end_guesses() after it, with the tokens kept: drops the cells of
    // the others and returns the first position to evaluate again to rebuild
    // what was kept (n_keep itself for attention caches and when nothing was
    // dropped; the position at begin_guesses() for a recurrent state, rolled
    // back there with its cells).
    bool can_drop_guesses() const { return !has_recurrent() || recurrent_.has_rollback(); }
    void begin_guesses(int seq);
    int64_t end_guesses(int seq, int64_t n_keep);

    // Drops n tokens of a sequence from position `first` on (context shift):
    // their cells are freed and the later tokens move up n positions (the
    // caller re-rotates their keys). Throws for a cache with recurrent layers,
    // whose state cannot forget tokens, and when any token from `first` on is
    // shared with another sequence (re-rotating it would change theirs).
    void discard(int seq, int64_t first, int64_t n);

    // Prefix sharing: sequence dst's contents become the first n tokens of
    // src, in the same cells (counted references: a cell is freed when the
    // last sequence holding it lets go), so a prompt that begins as another
    // slot's does is neither evaluated nor stored twice. Cells are never
    // written after their token is stored, so sharing needs no copies. With
    // recurrent layers, src's state after n tokens is copied: its live state
    // (n = its length) or its snapshot at n. Throws when that is not possible.
    bool can_share_prefix(int src, int dst, int64_t n) const;
    void share_prefix(int src, int dst, int64_t n);
    // Cells of the sequence that another sequence holds too; whether a cell is one.
    int64_t shared_cells(int seq) const;
    bool is_shared(int32_t cell) const { return refs_[cell] > 1; }
    // Whether any of the sequence's tokens from position `first` on is in a shared
    // cell (such tokens cannot be moved: discard and shift_context refuse them).
    bool shares_from(int seq, int64_t first) const;

    // Copies out what the sequence holds.
    SequenceState save_sequence(int seq) const;
    // Replaces the sequence's contents with the first n tokens of a saved
    // state (all of them when the cache has recurrent layers, whose state
    // is that after the last token). Throws when the cache lacks free cells.
    void load_sequence(int seq, const SequenceState& state, int64_t n);

    // Recurrent state (hybrid models). conv_state: [C][K-1], ssm_state:
    // [H][P][N] f32 of one layer and sequence.
    bool has_recurrent() const { return !recurrent_.empty(); }
    int64_t n_embd_r(int layer) const { return recurrent_.n_embd_r(layer); }
    int64_t n_embd_s(int layer) const { return recurrent_.n_embd_s(layer); }
    float* conv_state(int layer, int seq) { return recurrent_.conv(layer, seq); }
    float* ssm_state(int layer, int seq) { return recurrent_.ssm(layer, seq); }
    const float* conv_state(int layer, int seq) const { return recurrent_.conv(layer, seq); }
    const float* ssm_state(int layer, int seq) const { return recurrent_.ssm(layer, seq); }
    // Saves the sequence's recurrent state at its current length, so a later
    // truncate to that length can restore it; keeps config().n_rs_snapshots
    // per sequence, dropping the oldest of the kind (recurrent_state.h).
    // No-op without recurrent layers.
    void snapshot(int seq, SnapshotKind kind = SnapshotKind::prompt_end);
    // Positions with a snapshot, newest first; how many of a kind a sequence keeps.
    std::vector<int64_t> snapshot_positions(int seq) const { return recurrent_.snapshot_positions(seq); }
    std::vector<int64_t> snapshot_positions(int seq, SnapshotKind kind) const {
        return recurrent_.snapshot_positions(seq, kind);
    }
    // Host RAM the message-start snapshots hold now (not in bytes()).
    size_t snapshot_host_bytes() const { return recurrent_.host_bytes(); }
    int snapshot_capacity(SnapshotKind kind) const { return recurrent_.capacity(kind); }

    int64_t seq_length(int seq) const { return static_cast<int64_t>(seq_cells_.at(seq).size()); }
    // cells[p] holds position p of the sequence.
    std::span<const int32_t> seq_cells(int seq) const { return seq_cells_.at(seq); }

    size_t k_row_bytes(int layer) const { return k_row_bytes_[layer]; }
    size_t v_row_bytes(int layer) const { return v_row_bytes_[layer]; }
    // Row `cell` of a layer's K or V (in the cache's memory: host-readable
    // only when memory().is_host()).
    uint8_t* k_row(int layer, int32_t cell) { return k_data(layer) + cell * k_row_bytes_[layer]; }
    uint8_t* v_row(int layer, int32_t cell) { return v_data(layer) + cell * v_row_bytes_[layer]; }
    const uint8_t* k_row(int layer, int32_t cell) const { return k_data(layer) + cell * k_row_bytes_[layer]; }
    const uint8_t* v_row(int layer, int32_t cell) const { return v_data(layer) + cell * v_row_bytes_[layer]; }
    uint8_t* k_data(int layer) { return static_cast<uint8_t*>(k_[layer].data()); }
    uint8_t* v_data(int layer) { return static_cast<uint8_t*>(v_[layer].data()); }
    const uint8_t* k_data(int layer) const { return static_cast<const uint8_t*>(k_[layer].data()); }
    const uint8_t* v_data(int layer) const { return static_cast<const uint8_t*>(v_[layer].data()); }
    DeviceMemory& memory() const { return *memory_; }
    // A recurrent layer's states for all sequences (see RecurrentState).
    float* conv_states(int layer) { return recurrent_.conv(layer, 0); }
    float* ssm_states(int layer) { return recurrent_.ssm(layer, 0); }
    int64_t recurrent_seq_stride() const { return recurrent_.seq_stride(); }

  private:
    void release(int32_t cell);  // one holder fewer; free at none

    KvCacheConfig config_;
    DeviceMemory* memory_;
    int k_rot_chunk_ = 0;
    int v_rot_chunk_ = 0;
    std::vector<size_t> k_row_bytes_, v_row_bytes_;
    std::vector<DeviceBuffer> k_, v_;
    std::vector<std::vector<int32_t>> seq_cells_;
    std::vector<int64_t> guess_from_;  // per sequence: its length at begin_guesses() (-1: none)
    std::vector<int32_t> free_;        // a stack; lowest cell ids on top
    std::vector<uint16_t> refs_;       // per cell: the sequences holding it (at most n_seq_max)
    RecurrentState recurrent_;
};

// Whether a type may be used for the KV cache.
bool is_kv_cache_type(GgmlType type);

}  // namespace moeserve
