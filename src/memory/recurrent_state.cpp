#include "memory/recurrent_state.h"

#include <algorithm>
#include <stdexcept>

namespace moeserve {

RecurrentState::RecurrentState(int n_seq, std::vector<int64_t> n_embd_r, std::vector<int64_t> n_embd_s, int n_snapshots,
                               DeviceMemory& memory, bool rollback)
    : n_embd_r_(std::move(n_embd_r)),
      n_embd_s_(std::move(n_embd_s)),
      n_snapshots_(std::max(0, n_snapshots)),
      memory_(&memory) {
    if (n_embd_s_.size() != n_embd_r_.size())
        throw std::invalid_argument("recurrent state: conv and SSM layer lists differ in length");
    conv_off_.resize(n_embd_r_.size());
    ssm_off_.resize(n_embd_r_.size());
    for (size_t l = 0; l < n_embd_r_.size(); ++l) {
        if (n_embd_r_[l] < 0 || n_embd_s_[l] < 0) throw std::invalid_argument("recurrent state: negative size");
        conv_off_[l] = per_seq_;
        per_seq_ += n_embd_r_[l];
        ssm_off_[l] = per_seq_;
        per_seq_ += n_embd_s_[l];
    }
    if (per_seq_ == 0) {
        n_snapshots_ = 0;
        return;
    }
    live_ = DeviceBuffer(memory, static_cast<size_t>(n_seq * per_seq_) * sizeof(float));
    saved_ = DeviceBuffer(memory, static_cast<size_t>(n_seq * n_device() * per_seq_) * sizeof(float));
    if (rollback) rollback_ = DeviceBuffer(memory, static_cast<size_t>(n_seq * per_seq_) * sizeof(float));
    snaps_.resize(n_seq);
    host_saved_.resize(n_seq);
}

void RecurrentState::reset(int seq) {
    if (empty()) return;
    memory_->zero(live() + seq * per_seq_, per_seq_ * sizeof(float));
    snaps_.at(seq).clear();
    release_host(seq);
}

void RecurrentState::read(int seq, float* host) const {
    if (empty()) return;
    memory_->download(host, live() + seq * per_seq_, per_seq_ * sizeof(float));
}

void RecurrentState::write(int seq, const float* host) {
    if (empty()) return;
    memory_->upload(live() + seq * per_seq_, host, per_seq_ * sizeof(float));
    snaps_.at(seq).clear();
    release_host(seq);
}

void RecurrentState::save_rollback(int seq) {
    if (empty()) return;
    if (!has_rollback()) throw std::logic_error("recurrent state: no rollback copies were allocated");
    memory_->copy(static_cast<float*>(rollback_.data()) + seq * per_seq_, live() + seq * per_seq_,
                  per_seq_ * sizeof(float));
}

void RecurrentState::restore_rollback(int seq) {
    if (empty()) return;
    if (!has_rollback()) throw std::logic_error("recurrent state: no rollback copies were allocated");
    memory_->copy(live() + seq * per_seq_, static_cast<const float*>(rollback_.data()) + seq * per_seq_,
                  per_seq_ * sizeof(float));
}

void RecurrentState::reset_all() {
    if (live_.size()) memory_->zero(live_.data(), live_.size());
    for (size_t seq = 0; seq < snaps_.size(); ++seq) {
        snaps_[seq].clear();
        release_host(static_cast<int>(seq));
    }
}

size_t RecurrentState::host_bytes() const {
    size_t n = 0;
    for (const auto& seq : host_saved_)
        for (const auto& b : seq) n += b ? per_seq_ * sizeof(float) : 0;
    return n;
}

void RecurrentState::release_host(int seq) {
    auto& buffers = host_saved_.at(seq);
    const auto& s = snaps_.at(seq);
    for (size_t b = 0; b < buffers.size(); ++b)
        if (!std::any_of(s.begin(), s.end(),
                         [&](const Snapshot& x) { return on_host(x.kind) && x.buffer == static_cast<int>(b); }))
            buffers[b].reset();
}

int RecurrentState::find(int seq, int64_t pos) const {
    const auto& s = snaps_.at(seq);
    for (size_t i = 0; i < s.size(); ++i)
        if (s[i].pos == pos) return static_cast<int>(i);
    return -1;
}

int RecurrentState::capacity(SnapshotKind kind) const {
    const int ends = std::min(n_snapshots_, kPromptEndSnapshots);
    switch (kind) {
        case SnapshotKind::prompt_end:
            return ends;
        case SnapshotKind::turn_boundary:
            return n_device() - ends;
        case SnapshotKind::message_start:
            return n_snapshots_ - n_device();
    }
    return 0;
}

void RecurrentState::save(int seq, int64_t pos, SnapshotKind kind) {
    if (empty() || n_snapshots_ == 0) return;
    auto& s = snaps_.at(seq);
    int buffer = -1;
    if (int i = find(seq, pos); i >= 0 && s[i].kind >= kind) {
        buffer = s[i].buffer;  // the same snapshot again (of the higher kind)
        kind = s[i].kind;
        s.erase(s.begin() + i);
    } else {
        if (capacity(kind) == 0) return;
        if (i >= 0) s.erase(s.begin() + i);  // e.g. a prompt end that is now a turn boundary
        const auto n_kind = std::count_if(s.begin(), s.end(), [&](const Snapshot& x) { return x.kind == kind; });
        if (n_kind >= capacity(kind)) {  // evict the kind's oldest (see keeps_lowest)
            auto oldest = std::find_if(s.rbegin(), s.rend(), [&](const Snapshot& x) { return x.kind == kind; });
            if (keeps_lowest(kind) && n_kind >= 2) {
                auto lowest = std::min_element(s.begin(), s.end(), [&](const Snapshot& a, const Snapshot& b) {
                    return (a.kind == kind ? a.pos : INT64_MAX) < (b.kind == kind ? b.pos : INT64_MAX);
                });
                if (&*oldest == &*lowest)
                    oldest =
                        std::find_if(std::next(oldest), s.rend(), [&](const Snapshot& x) { return x.kind == kind; });
            }
            buffer = oldest->buffer;
            s.erase(std::next(oldest).base());
        } else {  // the first buffer no snapshot of the same memory uses
            buffer = 0;
            while (std::any_of(s.begin(), s.end(), [&](const Snapshot& x) {
                return on_host(x.kind) == on_host(kind) && x.buffer == buffer;
            }))
                ++buffer;
        }
    }
    if (on_host(kind)) {
        auto& buffers = host_saved_.at(seq);
        if (static_cast<int>(buffers.size()) <= buffer) buffers.resize(buffer + 1);
        if (!buffers[buffer]) buffers[buffer].reset(new float[per_seq_]);  // not zeroed: overwritten next
        memory_->download(buffers[buffer].get(), live() + seq * per_seq_, per_seq_ * sizeof(float));
    } else {
        memory_->copy(saved(seq, buffer), live() + seq * per_seq_, per_seq_ * sizeof(float));
    }
    s.insert(s.begin(), Snapshot{pos, buffer, kind});
}

void RecurrentState::load_snapshot(int seq, int i, int dst) {
    const Snapshot& x = snaps_.at(seq).at(i);
    float* to = live() + dst * per_seq_;
    if (on_host(x.kind))
        memory_->upload(to, host_saved_.at(seq).at(x.buffer).get(), per_seq_ * sizeof(float));
    else
        memory_->copy(to, saved(seq, x.buffer), per_seq_ * sizeof(float));
}

void RecurrentState::copy_state(int src, int dst, int64_t snapshot_pos) {
    if (empty()) return;
    if (snapshot_pos >= 0) {
        const int i = find(src, snapshot_pos);
        if (i < 0) throw std::logic_error("recurrent state: no snapshot at that position");
        load_snapshot(src, i, dst);
    } else {
        memory_->copy(live() + dst * per_seq_, live() + src * per_seq_, per_seq_ * sizeof(float));
    }
    snaps_.at(dst).clear();
    release_host(dst);
}

bool RecurrentState::has_snapshot(int seq, int64_t pos) const {
    return !empty() && find(seq, pos) >= 0;
}

void RecurrentState::restore(int seq, int64_t pos) {
    const int i = find(seq, pos);
    if (i < 0) throw std::logic_error("recurrent state: no snapshot at that position");
    load_snapshot(seq, i, seq);
    drop_after(seq, pos);
}

void RecurrentState::drop_after(int seq, int64_t pos) {
    if (empty()) return;
    auto& s = snaps_.at(seq);
    s.erase(std::remove_if(s.begin(), s.end(), [&](const Snapshot& x) { return x.pos > pos; }), s.end());
    release_host(seq);
}

std::vector<int64_t> RecurrentState::snapshot_positions(int seq) const {
    std::vector<int64_t> out;
    if (empty()) return out;
    for (const auto& x : snaps_.at(seq)) out.push_back(x.pos);
    return out;
}

std::vector<int64_t> RecurrentState::snapshot_positions(int seq, SnapshotKind kind) const {
    std::vector<int64_t> out;
    if (empty()) return out;
    for (const auto& x : snaps_.at(seq))
        if (x.kind == kind) out.push_back(x.pos);
    return out;
}

}  // namespace moeserve
