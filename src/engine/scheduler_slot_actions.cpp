// llama-server's slot actions (POST /slots/{id}?action=save|restore|erase):
// queued from the HTTP threads, run by the inference thread once the slot is idle.
#include <fmt/format.h>

#include <cstdio>

#include "engine/scheduler.h"
#include "engine/slot_file.h"

namespace moeserve {

std::future<SlotActionResult> Scheduler::slot_action(int slot, SlotAction action, std::string path) {
    std::promise<SlotActionResult> done;
    auto result = done.get_future();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (slot < 0 || slot >= static_cast<int>(slots_.size())) {
            done.set_value({false, fmt::format("invalid slot id {} (the server has {} slots)", slot, slots_.size())});
            return result;
        }
        actions_.push_back({slot, action, std::move(path), std::move(done)});
    }
    cv_.notify_all();
    return result;
}

void Scheduler::shift_full_slots() {
    for (auto& s : slots_) {
        if (!s.needs_shift()) continue;
        const GenerationRequest& rq = s.task().request;
        const int64_t n_past = static_cast<int64_t>(s.cached().size());
        const int64_t n_keep =
            std::clamp<int64_t>(rq.n_keep < 0 ? static_cast<int64_t>(rq.prompt.size()) : rq.n_keep, 0, n_past - 2);
        const int64_t n_left = n_past - n_keep;
        const int64_t n_discard = rq.n_discard > 0 ? std::min(rq.n_discard, n_left - 1) : n_left / 2;
        model_.shift_context(cache_, s.id(), n_keep, n_discard);
        s.discarded(n_keep, n_discard);
    }
}

void Scheduler::run_slot_actions() {
    for (auto it = actions_.begin(); it != actions_.end();) {
        Slot& s = slots_[static_cast<size_t>(it->slot)];
        if (!s.idle()) {
            ++it;
            continue;
        }
        it->done.set_value(run_slot_action(s, it->action, it->path));
        it = actions_.erase(it);
    }
}

SlotActionResult Scheduler::run_slot_action(Slot& s, SlotAction action, const std::string& path) {
    const auto t0 = SteadyClock::now();
    SlotActionResult r;
    try {
        switch (action) {
            case SlotAction::save: {
                if (static_cast<int64_t>(s.cached().size()) != cache_.seq_length(s.id()))
                    throw std::runtime_error("the slot's tokens and its cache disagree");
                const SequenceState st = cache_.save_sequence(s.id());
                r.n_bytes = write_slot_file(path, s.cached(), st, cache_);
                r.n_tokens = st.n_tokens;
                break;
            }
            case SlotAction::restore: {
                SlotFile f = read_slot_file(path, cache_, &r.n_bytes);
                const int64_t n = static_cast<int64_t>(f.tokens.size());
                if (n > options_.layout.n_ctx_slot)
                    throw std::runtime_error(
                        fmt::format("{}: {} tokens do not fit a slot of {}", path, n, options_.layout.n_ctx_slot));
                if (!load_into_slot(s, f.state, f.tokens, n))
                    throw std::runtime_error("the KV cache has no room for the slot's tokens now");
                r.n_tokens = n;
                break;
            }
            case SlotAction::erase:
                r.n_tokens = static_cast<int64_t>(s.cached().size());
                cache_.remove(s.id());
                s.clear_cache();
                break;
        }
    } catch (const std::exception& e) {
        r.ok = false;
        r.message = e.what();
    }
    r.ms = seconds_between(t0, SteadyClock::now()) * 1000.0;
    return r;
}

}  // namespace moeserve
