// How -c and -np turn into KV cells and a per-slot context, as llama-server
// computes it (spec server-behaviour §2):
//
//   n_ctx = align_up(c, 256)                         c = -c, or the training context when 0
//   unified:      n_ctx_seq = n_ctx                  one pool, any slot may grow to all of it
//   non-unified:  n_ctx_seq = align_up(n_ctx / np, 256), n_ctx = n_ctx_seq * np
//   n_ctx_slot = min(n_ctx_seq, n_ctx_train)         what a slot may hold
#pragma once

#include <cstdint>

namespace moeserve {

struct SlotLayout {
    int n_slots = 1;
    bool unified = false;
    int64_t n_cells = 0;     // KV cells allocated over all slots
    int64_t n_ctx_seq = 0;   // cells one slot may use before the training-context cap
    int64_t n_ctx_slot = 0;  // tokens a slot may hold (prompt + generated)
};

// c <= 0 means the training context. Throws std::invalid_argument for
// n_slots < 1 or n_ctx_train < 1.
SlotLayout compute_slot_layout(int64_t c, int64_t n_ctx_train, int n_slots, bool unified);

}  // namespace moeserve
