// The recurrent state of hybrid models (Mamba2 layers): per sequence, per
// recurrent layer, a conv state (the last K-1 raw conv inputs per channel)
// and an SSM state, in f32 — a fixed size whatever the context length
// (spec architectures §6.8, §7.2). Unlike KV cells, a recurrent state cannot
// be rewound: going back to an earlier position needs a snapshot taken at
// exactly that position, so each sequence keeps a few, newest first.
//
// Snapshots are of three kinds, each with its own share, so that one kind
// never evicts another: the prompt's end (the server takes two per request:
// one token before the end, for the same prompt sent again, and the end, for
// the next turn), turn boundaries (the start and end of the conversation's
// last user message, spec server-behaviour §6.6), which must survive the
// requests of an agent's tool loop that follow them, and message starts: a
// ladder of states at the start of the first message and of later ones at
// least --checkpoint-min-step tokens apart, so that a long conversation
// edited or cut far back (or a new one with the same system prompt) resumes
// near where it diverges. The first two kinds live in the backend's memory (at
// most kDeviceSnapshots); the ladder, which can hold dozens of states, lives
// in host RAM (as llama-server keeps all its checkpoints) and is allocated
// only as it is used.
//
// Layout per sequence slot (one contiguous block, so a snapshot is one copy):
// for each layer l, conv [C_l][K_l-1] (time fastest, as llama.cpp stores it)
// then ssm [H_l][P_l][N_l] (state fastest).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "memory/device_memory.h"

namespace moeserve {

// In rising rank: saving a kind at a position that holds a higher one keeps the higher.
enum class SnapshotKind { prompt_end, turn_boundary, message_start };

class RecurrentState {
  public:
    // Of n snapshots per sequence, the prompt ends get up to this many, the turn
    // boundaries the rest up to kDeviceSnapshots (in the backend's memory), the
    // message starts the rest (in host RAM).
    static constexpr int kPromptEndSnapshots = 2;
    static constexpr int kDeviceSnapshots = 4;

    RecurrentState() = default;
    // n_embd_r[l], n_embd_s[l]: floats of layer l's conv and SSM state per
    // sequence (0 for layers without recurrence).
    // The states live in `memory` (the backend's).
    // rollback: one more state per sequence for speculative decoding (below).
    RecurrentState(int n_seq, std::vector<int64_t> n_embd_r, std::vector<int64_t> n_embd_s, int n_snapshots,
                   DeviceMemory& memory = host_memory(), bool rollback = false);

    bool empty() const { return per_seq_ == 0; }
    int n_snapshots() const { return n_snapshots_; }
    int64_t n_embd_r(int layer) const { return layer < static_cast<int>(n_embd_r_.size()) ? n_embd_r_[layer] : 0; }
    int64_t n_embd_s(int layer) const { return layer < static_cast<int>(n_embd_s_.size()) ? n_embd_s_[layer] : 0; }
    // The backend memory held (live states and the device snapshots); the host
    // RAM the message-start snapshots hold now.
    size_t bytes() const { return live_.size() + saved_.size() + rollback_.size(); }
    size_t host_bytes() const;

    // conv: [C][K-1] and ssm: [H][P][N] of one layer and sequence; the next
    // sequence's are seq_stride() floats further.
    float* conv(int layer, int seq) { return live() + seq * per_seq_ + conv_off_[layer]; }
    float* ssm(int layer, int seq) { return live() + seq * per_seq_ + ssm_off_[layer]; }
    const float* conv(int layer, int seq) const { return live() + seq * per_seq_ + conv_off_[layer]; }
    const float* ssm(int layer, int seq) const { return live() + seq * per_seq_ + ssm_off_[layer]; }
    int64_t seq_stride() const { return per_seq_; }

    // Zeroes a sequence's state and forgets its snapshots (a new sequence).
    void reset(int seq);
    // The sequence's live state as seq_stride() host floats, and back (the
    // latter forgets its snapshots, as a state from elsewhere).
    void read(int seq, float* host) const;
    void write(int seq, const float* host);
    void reset_all();

    // Sets dst's live state to src's: its live state (snapshot_pos < 0) or its
    // snapshot at snapshot_pos (which must exist). dst forgets its snapshots.
    void copy_state(int src, int dst, int64_t snapshot_pos);

    // Speculative decoding: a copy of the live state, taken before a step
    // evaluates guessed tokens and put back when the sampler rejects some
    // (the tokens it kept are then evaluated again). Needs `rollback` at
    // construction; a copy in the backend's memory, so a step costs one
    // device copy, not a trip through the host. Snapshots stay as they are.
    bool has_rollback() const { return rollback_.size() > 0; }
    void save_rollback(int seq);
    void restore_rollback(int seq);

    // Saves the sequence's state as the state after `pos` tokens; replaces a
    // snapshot at the same position (keeping the higher kind of the two), else
    // evicts the oldest of the kind when the kind's share is used. A kind
    // without a share (too few snapshots configured) saves nothing.
    void save(int seq, int64_t pos, SnapshotKind kind = SnapshotKind::prompt_end);
    // How many snapshots of the kind a sequence keeps at most.
    int capacity(SnapshotKind kind) const;
    bool has_snapshot(int seq, int64_t pos) const;
    // Restores the snapshot at `pos` (which must exist) and forgets the
    // snapshots after it.
    void restore(int seq, int64_t pos);
    // Forgets the snapshots of positions > pos.
    void drop_after(int seq, int64_t pos);
    // Positions of the sequence's snapshots (of one kind), newest first.
    std::vector<int64_t> snapshot_positions(int seq) const;
    std::vector<int64_t> snapshot_positions(int seq, SnapshotKind kind) const;

  private:
    static bool on_host(SnapshotKind kind) { return kind == SnapshotKind::message_start; }
    // A full ladder of message starts evicts its oldest rung but the lowest one
    // (the end of the system prompt, which other conversations share).
    static bool keeps_lowest(SnapshotKind kind) { return kind == SnapshotKind::message_start; }
    int find(int seq, int64_t pos) const;  // snapshot index, or -1
    int n_device() const { return std::min(n_snapshots_, kDeviceSnapshots); }
    float* saved(int seq, int i) {
        return static_cast<float*>(saved_.data()) + (static_cast<int64_t>(seq) * n_device() + i) * per_seq_;
    }
    // Copies snapshot i of seq into dst's live state.
    void load_snapshot(int seq, int i, int dst);
    // Frees the host buffers no snapshot of seq uses any more.
    void release_host(int seq);
    float* live() { return static_cast<float*>(live_.data()); }
    const float* live() const { return static_cast<const float*>(live_.data()); }

    std::vector<int64_t> n_embd_r_, n_embd_s_, conv_off_, ssm_off_;
    int64_t per_seq_ = 0;  // floats per sequence slot
    int n_snapshots_ = 0;
    DeviceMemory* memory_ = nullptr;
    DeviceBuffer live_;      // f32 [n_seq][per_seq]
    DeviceBuffer saved_;     // f32 [n_seq][n_device][per_seq]
    DeviceBuffer rollback_;  // f32 [n_seq][per_seq], with rollback
    // Per sequence: the message-start snapshots' buffers (null when unused).
    std::vector<std::vector<std::unique_ptr<float[]>>> host_saved_;
    // Per sequence: the position each snapshot buffer holds, newest first
    // (buffer indexes the device buffers, or the host ones for a message start).
    struct Snapshot {
        int64_t pos;
        int buffer;
        SnapshotKind kind;
    };
    std::vector<std::vector<Snapshot>> snaps_;
};

}  // namespace moeserve
