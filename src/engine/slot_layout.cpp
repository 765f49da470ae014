#include "engine/slot_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace moeserve {
namespace {

int64_t align_up(int64_t x, int64_t a) {
    return (x + a - 1) / a * a;
}

}  // namespace

SlotLayout compute_slot_layout(int64_t c, int64_t n_ctx_train, int n_slots, bool unified) {
    if (n_slots < 1)
        throw std::invalid_argument(fmt::format("the number of slots must be at least 1, got {}", n_slots));
    if (n_ctx_train < 1) throw std::invalid_argument("the model has no training context length");
    SlotLayout l;
    l.n_slots = n_slots;
    l.unified = unified;
    const int64_t n_ctx = align_up(c > 0 ? c : n_ctx_train, 256);
    if (unified) {
        l.n_ctx_seq = n_ctx;
        l.n_cells = n_ctx;
    } else {
        l.n_ctx_seq = align_up(n_ctx / n_slots, 256);
        l.n_cells = l.n_ctx_seq * n_slots;
    }
    l.n_ctx_slot = std::min(l.n_ctx_seq, n_ctx_train);
    return l;
}

}  // namespace moeserve
