#include "memory/kv_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace moeserve {
namespace {

bool is_quantized(GgmlType t) {
    return t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16;
}

// The chunk size of llama.cpp's K rotation: the largest power of two that is
// a multiple of 64 and divides the head size (spec quant-formats §3.8).
int rotation_chunk(int head_dim) {
    if (head_dim <= 0 || head_dim % 64 != 0) return 0;
    int n = 64;
    while (head_dim % (n * 2) == 0) n *= 2;
    return n;
}

}  // namespace

bool is_kv_cache_type(GgmlType t) {
    switch (t) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::IQ4_NL:
            return true;
        default:
            return false;
    }
}

KvCache::KvCache(const KvCacheConfig& config, DeviceMemory& memory) : config_(config), memory_(&memory) {
    for (GgmlType t : {config.type_k, config.type_v})
        if (!is_kv_cache_type(t))
            throw std::invalid_argument(fmt::format(
                "'{}' cannot be used for the KV cache (allowed: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)",
                ggml_type_name(t)));
    if (config.n_embd_v.size() != config.n_embd_k.size())
        throw std::invalid_argument("KV cache: K and V layer lists differ in length");
    if (config.n_seq_max < 1) throw std::invalid_argument("KV cache: needs at least one sequence");
    if (config.n_cells > INT32_MAX) throw std::invalid_argument("KV cache: too many cells");
    // Quantized blocks must not straddle heads (llama.cpp refuses the same).
    for (auto [type, head_dim, which] :
         {std::tuple{config.type_k, config.head_dim_k, "K"}, std::tuple{config.type_v, config.head_dim_v, "V"}}) {
        const int64_t block = ggml_type_info(type).block_size;
        if (head_dim > 0 && head_dim % block != 0)
            throw std::invalid_argument(
                fmt::format("{} cache type {} needs a head size that is a multiple of {}; this "
                            "model's is {} (use f16, bf16 or f32)",
                            which, ggml_type_name(type), block, head_dim));
    }
    if (config.allow_rotation) {
        if (is_quantized(config.type_k)) k_rot_chunk_ = rotation_chunk(config.head_dim_k);
        if (is_quantized(config.type_v) && config.head_dim_v % 64 == 0 && config.head_dim_v > 0) v_rot_chunk_ = 64;
    }
    const int n_layer = static_cast<int>(config.n_embd_k.size());
    k_row_bytes_.resize(n_layer);
    v_row_bytes_.resize(n_layer);
    k_.resize(n_layer);
    v_.resize(n_layer);
    for (int l = 0; l < n_layer; ++l) {
        k_row_bytes_[l] = config.n_embd_k[l] ? ggml_row_bytes(config.type_k, config.n_embd_k[l]) : 0;
        v_row_bytes_[l] = config.n_embd_v[l] ? ggml_row_bytes(config.type_v, config.n_embd_v[l]) : 0;
        k_[l] = DeviceBuffer(memory, k_row_bytes_[l] * config.n_cells);
        v_[l] = DeviceBuffer(memory, v_row_bytes_[l] * config.n_cells);
    }
    if (!config.n_embd_r.empty() || !config.n_embd_s.empty()) {
        if (config.n_embd_r.size() != config.n_embd_k.size() || config.n_embd_s.size() != config.n_embd_k.size())
            throw std::invalid_argument("KV cache: recurrent layer lists differ in length from the K list");
        recurrent_ = RecurrentState(config.n_seq_max, config.n_embd_r, config.n_embd_s, config.n_rs_snapshots, memory,
                                    config.rs_rollback);
    }
    seq_cells_.resize(config.n_seq_max);
    guess_from_.assign(config.n_seq_max, -1);
    clear();
}

size_t KvCache::bytes() const {
    size_t n = 0;
    for (int l = 0; l < n_layer(); ++l) n += k_[l].size() + v_[l].size();
    return n + recurrent_.bytes();
}

void KvCache::clear() {
    for (auto& cells : seq_cells_) cells.clear();
    refs_.assign(static_cast<size_t>(config_.n_cells), 0);
    free_.clear();
    free_.reserve(config_.n_cells);
    for (int64_t c = config_.n_cells - 1; c >= 0; --c) free_.push_back(static_cast<int32_t>(c));
    recurrent_.reset_all();
}

std::vector<int32_t> KvCache::append(int seq, int64_t n) {
    if (seq < 0 || seq >= config_.n_seq_max)
        throw std::out_of_range(fmt::format("sequence id {} out of range (0..{})", seq, config_.n_seq_max - 1));
    if (n > n_free())
        throw std::runtime_error(
            fmt::format("KV cache is full: {} cells needed, {} free of {}", n, n_free(), config_.n_cells));
    std::vector<int32_t> cells(n);
    for (int64_t i = 0; i < n; ++i) {
        cells[i] = free_.back();
        free_.pop_back();
        refs_[cells[i]] = 1;
        seq_cells_[seq].push_back(cells[i]);
    }
    return cells;
}

bool KvCache::can_truncate(int seq, int64_t n_keep) const {
    const int64_t length = seq_length(seq);
    return !has_recurrent() || n_keep <= 0 || n_keep >= length || recurrent_.has_snapshot(seq, n_keep);
}

void KvCache::discard(int seq, int64_t first, int64_t n) {
    if (has_recurrent()) throw std::runtime_error("a recurrent (Mamba) state cannot forget tokens: no context shift");
    auto& cells = seq_cells_.at(seq);
    if (first < 0 || n < 0 || first + n > static_cast<int64_t>(cells.size()))
        throw std::out_of_range(
            fmt::format("discard: tokens {}..{} of a sequence of {}", first, first + n, cells.size()));
    if (shares_from(seq, first))
        throw std::runtime_error("discard: the tokens are shared with another sequence (no context shift over them)");
    for (int64_t i = first; i < first + n; ++i) release(cells[i]);
    cells.erase(cells.begin() + first, cells.begin() + first + n);
}

void KvCache::release(int32_t cell) {
    if (--refs_[cell] == 0) free_.push_back(cell);
}

bool KvCache::can_share_prefix(int src, int dst, int64_t n) const {
    if (src == dst || n <= 0 || n > seq_length(src)) return false;
    if (dst < 0 || dst >= config_.n_seq_max) return false;
    return !has_recurrent() || n == seq_length(src) || recurrent_.has_snapshot(src, n);
}

void KvCache::share_prefix(int src, int dst, int64_t n) {
    if (!can_share_prefix(src, dst, n))
        throw std::invalid_argument(fmt::format(
            "share_prefix: sequence {} cannot give its first {} tokens to sequence {} (it holds {}{})", src, n, dst,
            seq_length(src), has_recurrent() ? ", and its recurrent state is kept only at its end and snapshots" : ""));
    truncate(dst, 0);
    if (has_recurrent()) recurrent_.copy_state(src, dst, n == seq_length(src) ? -1 : n);
    const auto& from = seq_cells_.at(src);
    auto& to = seq_cells_.at(dst);
    to.assign(from.begin(), from.begin() + n);
    for (int32_t c : to) ++refs_[c];
}

bool KvCache::shares_from(int seq, int64_t first) const {
    const auto& cells = seq_cells_.at(seq);
    first = std::clamp<int64_t>(first, 0, static_cast<int64_t>(cells.size()));
    return std::any_of(cells.begin() + first, cells.end(), [&](int32_t c) { return is_shared(c); });
}

int64_t KvCache::shared_cells(int seq) const {
    const auto& cells = seq_cells_.at(seq);
    return std::count_if(cells.begin(), cells.end(), [&](int32_t c) { return is_shared(c); });
}

SequenceState KvCache::save_sequence(int seq) const {
    const std::span<const int32_t> cells = seq_cells(seq);
    SequenceState st;
    st.n_tokens = static_cast<int64_t>(cells.size());
    size_t total = 0;
    for (int l = 0; l < n_layer(); ++l) total += (k_row_bytes_[l] + v_row_bytes_[l]) * cells.size();
    st.rows.resize(total);
    uint8_t* out = st.rows.data();
    for (int l = 0; l < n_layer(); ++l)
        for (const auto& part : {std::pair{k_row_bytes_[l], k_data(l)}, std::pair{v_row_bytes_[l], v_data(l)}}) {
            const size_t row_bytes = part.first;  // named copies: clang 14 cannot capture structured bindings
            const uint8_t* data = part.second;
            if (!row_bytes) continue;
            memory_->download_rows(out, data, row_bytes, cells);
            out += row_bytes * cells.size();
        }
    if (has_recurrent()) {
        st.recurrent.resize(static_cast<size_t>(recurrent_.seq_stride()));
        recurrent_.read(seq, st.recurrent.data());
    }
    return st;
}

void KvCache::load_sequence(int seq, const SequenceState& state, int64_t n) {
    if (n < 0 || n > state.n_tokens)
        throw std::invalid_argument(fmt::format("load_sequence: {} of {} saved tokens", n, state.n_tokens));
    if (has_recurrent() && n != state.n_tokens)
        throw std::invalid_argument("load_sequence: a recurrent state loads whole, after its last token");
    truncate(seq, 0);
    const std::vector<int32_t> cells = append(seq, n);
    const uint8_t* in = state.rows.data();
    for (int l = 0; l < n_layer(); ++l)
        for (const auto& part : {std::pair{k_row_bytes_[l], k_data(l)}, std::pair{v_row_bytes_[l], v_data(l)}}) {
            const size_t row_bytes = part.first;
            uint8_t* data = part.second;
            if (!row_bytes) continue;
            memory_->upload_rows(data, in, row_bytes, cells);
            in += row_bytes * state.n_tokens;
        }
    if (has_recurrent()) recurrent_.write(seq, state.recurrent.data());
}

void KvCache::snapshot(int seq, SnapshotKind kind) {
    if (seq < 0 || seq >= config_.n_seq_max)
        throw std::out_of_range(fmt::format("sequence id {} out of range (0..{})", seq, config_.n_seq_max - 1));
    recurrent_.save(seq, seq_length(seq), kind);
}

void KvCache::begin_guesses(int seq) {
    guess_from_.at(seq) = seq_length(seq);
    if (has_recurrent()) recurrent_.save_rollback(seq);
}

int64_t KvCache::end_guesses(int seq, int64_t n_keep) {
    auto& cells = seq_cells_.at(seq);
    const int64_t from = std::exchange(guess_from_.at(seq), -1);
    if (n_keep >= static_cast<int64_t>(cells.size())) return n_keep;  // every guess kept
    int64_t cut = n_keep;
    if (has_recurrent()) {
        if (from < 0 || from > n_keep)
            throw std::logic_error(fmt::format("sequence {}: guesses dropped without begin_guesses()", seq));
        // The state went on through every guess: back to where they began.
        recurrent_.restore_rollback(seq);
        recurrent_.drop_after(seq, from);
        cut = from;
    }
    while (static_cast<int64_t>(cells.size()) > cut) {
        release(cells.back());
        cells.pop_back();
    }
    return cut;
}

void KvCache::truncate(int seq, int64_t n_keep) {
    auto& cells = seq_cells_.at(seq);
    if (n_keep < 0) n_keep = 0;
    if (has_recurrent() && n_keep < static_cast<int64_t>(cells.size())) {
        if (n_keep == 0) {
            recurrent_.reset(seq);
        } else if (recurrent_.has_snapshot(seq, n_keep)) {
            recurrent_.restore(seq, n_keep);
        } else {
            throw std::runtime_error(fmt::format(
                "cannot truncate sequence {} to {} of {} tokens: its recurrent (Mamba) state cannot be rewound and "
                "no snapshot was taken at position {}; the prefix must be re-evaluated (truncate to 0)",
                seq, n_keep, cells.size(), n_keep));
        }
    } else if (has_recurrent() && n_keep == 0) {
        recurrent_.reset(seq);  // an empty sequence starts from a zero state
    }
    while (static_cast<int64_t>(cells.size()) > n_keep) {
        release(cells.back());
        cells.pop_back();
    }
}

}  // namespace moeserve
