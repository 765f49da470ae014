// What a request can take instead of evaluating its prompt: its slot's cached
// prefix, chunks further on in that cache (--cache-reuse), the cells of a
// prefix another slot holds (prefix sharing), the RAM prompt cache, and, on
// hybrid models, the recurrent-state snapshots those positions need.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "engine/scheduler.h"

namespace moeserve {

void Scheduler::save_to_prompt_cache(Slot& s) {
    if (!prompt_cache_.enabled() || s.cached().empty()) return;
    // The slot's tokens and the sequence agree only for what was evaluated;
    // a slot stopped mid-prompt holds exactly what its cache holds.
    if (static_cast<int64_t>(s.cached().size()) != cache_.seq_length(s.id())) return;
    if (prompt_cache_.put(s.cached(), cache_.save_sequence(s.id()))) ++stats_.prompt_cache_saves;
}

void Scheduler::load_from_prompt_cache(Slot& s, const std::vector<int32_t>& prompt, int64_t& n_keep) {
    const auto m = prompt_cache_.find(prompt, n_keep);
    if (!m) return;
    const int64_t n = m->n_prefix;
    const int64_t held = static_cast<int64_t>(prompt_cache_.entry(m->index).tokens.size());
    // A recurrent state is the one after the entry's last token: it serves
    // only a prompt that goes on from all of it.
    if (cache_.has_recurrent() && (n != held || n >= static_cast<int64_t>(prompt.size()))) return;
    // Out of the cache before making room, whose saves may evict entries and move the others.
    PromptCache::Entry e = prompt_cache_.take(m->index);
    n_keep = 0;
    if (!load_into_slot(s, e.state, e.tokens, n)) {  // busy slots hold the cells: evaluate the prompt
        prompt_cache_.put(std::move(e.tokens), std::move(e.state));
        return;
    }
    n_keep = n;
    ++stats_.prompt_cache_loads;
}

int64_t Scheduler::reuse_chunks(Slot& s, const std::vector<int32_t>& prompt, int64_t n_keep, int64_t min_chunk) {
    // llama-server's walk: the cache is scanned from n_keep on for runs of at least
    // min_chunk tokens that continue the prompt; each is moved up to where the prompt
    // needs it, dropping the cached tokens between. Caches whose keys cannot be
    // re-rotated (MLA, recurrent state, YaRN) and cells shared with other slots
    // (moving them would move theirs) are left alone.
    if (!options_.can_shift_keys || !model_.context_shift_refusal().empty()) return n_keep;
    if (static_cast<int64_t>(s.cached().size()) != cache_.seq_length(s.id()) || cache_.shares_from(s.id(), n_keep))
        return n_keep;
    std::vector<int32_t> cached = s.cached();
    const int64_t n_prompt = static_cast<int64_t>(prompt.size());
    int64_t head_c = n_keep, head_p = n_keep;
    while (head_c < static_cast<int64_t>(cached.size()) && head_p < n_prompt) {
        int64_t n = 0;
        while (head_c + n < static_cast<int64_t>(cached.size()) && head_p + n < n_prompt &&
               cached[head_c + n] == prompt[head_p + n])
            ++n;
        if (n < min_chunk) {
            ++head_c;
            continue;
        }
        if (head_c > head_p) {
            model_.shift_context(cache_, s.id(), head_p, head_c - head_p);
            cached.erase(cached.begin() + head_p, cached.begin() + head_c);
        }
        head_p += n;
        head_c = head_p;
    }
    s.set_cached(std::move(cached));
    return head_p;
}

int64_t Scheduler::shareable(const Slot& d, const std::vector<int32_t>& prompt) const {
    // What the donor's cells hold is exactly its evaluated tokens.
    if (d.cached().empty() || static_cast<int64_t>(d.cached().size()) != cache_.seq_length(d.id())) return 0;
    // At least one prompt token is evaluated: a donor gives at most all but the last.
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(common_prefix(d.cached(), prompt)),
                                        static_cast<int64_t>(prompt.size()) - 1);
    if (!cache_.has_recurrent() || n == cache_.seq_length(d.id())) return n;
    // A recurrent state exists only at the donor's end and its snapshots.
    int64_t p = 0;
    for (int64_t q : cache_.snapshot_positions(d.id()))
        if (q <= n && q > p) p = q;
    return p;
}

bool Scheduler::waits_for_a_reader(const GenerationRequest& rq) const {
    if (!sharing_prefixes() || !rq.cache_prompt || rq.embed) return false;
    const auto& prompt = rq.prompt;
    int64_t now = 0;
    for (const auto& d : slots_) now = std::max(now, shareable(d, prompt));
    for (const auto& d : slots_) {
        if (d.state() != SlotState::prefilling || d.embedding()) continue;
        const auto& theirs = d.task().request.prompt;
        const int64_t common = std::min<int64_t>(static_cast<int64_t>(common_prefix(theirs, prompt)),
                                                 static_cast<int64_t>(prompt.size()) - 1);
        int64_t coming = common;
        if (cache_.has_recurrent()) {
            // Its state will be kept at its turn boundaries still ahead of it (when there is
            // room for all of them) and one token before its prompt's end (when there is room
            // for two prompt ends).
            coming = 0;
            const int64_t read = static_cast<int64_t>(d.cached().size());
            const auto& bounds = d.task().request.turn_boundaries;
            if (cache_.snapshot_capacity(SnapshotKind::turn_boundary) >= static_cast<int>(bounds.size()))
                for (int64_t b : bounds)
                    if (b > read && b <= common) coming = std::max(coming, b);
            const int64_t last = static_cast<int64_t>(theirs.size()) - 1;
            if (cache_.snapshot_capacity(SnapshotKind::prompt_end) >= 2 && last > read && last <= common) coming = last;
            // And at the message starts that will be rungs of its ladder.
            if (cache_.snapshot_capacity(SnapshotKind::message_start) > 0) {
                const auto& starts = d.task().request.message_starts;
                int64_t prev = last_rung(d.id(), read + 1);
                for (int64_t b : starts)
                    if (b > read && b <= common && is_rung(starts, b, prev)) coming = std::max(coming, prev = b);
            }
        }
        if (coming >= now + kMinSharedWait) return true;
    }
    return false;
}

bool Scheduler::snapshots_message_start(const Slot& s, int64_t pos) const {
    if (!cache_.has_recurrent() || cache_.snapshot_capacity(SnapshotKind::message_start) == 0) return false;
    const auto& starts = s.task().request.message_starts;
    if (!std::binary_search(starts.begin(), starts.end(), pos)) return false;
    return is_rung(starts, pos, last_rung(s.id(), pos));
}

int64_t Scheduler::last_rung(int seq, int64_t before) const {
    int64_t prev = 0;
    for (int64_t q : cache_.snapshot_positions(seq, SnapshotKind::message_start))
        if (q < before) prev = std::max(prev, q);
    return prev;
}

bool Scheduler::is_rung(const std::vector<int64_t>& starts, int64_t pos, int64_t prev) const {
    // The first message's start ends the system prompt and tools, the part other
    // conversations share: it is kept unless that part is short.
    return (pos == starts.front() && pos >= kMinFirstRung) || pos - prev >= options_.checkpoint_min_step;
}

void Scheduler::share_from_other_slot(Slot& s, const std::vector<int32_t>& prompt, int64_t& n_keep, uint64_t task) {
    Slot* donor = nullptr;
    int64_t best = n_keep;
    for (auto& d : slots_) {
        if (&d == &s) continue;
        if (const int64_t n = shareable(d, prompt); n > best) best = n, donor = &d;
    }
    if (!donor) return;
    cache_.share_prefix(donor->id(), s.id(), best);
    s.set_cached(std::vector<int32_t>(prompt.begin(), prompt.begin() + best));
    n_keep = best;
    ++stats_.prefix_shares;
    stats_.prefix_shared_tokens += static_cast<uint64_t>(best);
    if (options_.log_slots)
        std::fprintf(stderr, "slot launch_slot_: id %2d | task %llu | shares %lld prompt tokens of slot %d's cache\n",
                     s.id(), static_cast<unsigned long long>(task), static_cast<long long>(best), donor->id());
}

bool Scheduler::load_into_slot(Slot& s, const SequenceState& state, const std::vector<int32_t>& tokens, int64_t n) {
    cache_.truncate(s.id(), 0);
    s.clear_cache();
    if (make_room(n) < n) return false;
    cache_.load_sequence(s.id(), state, n);
    s.set_cached(std::vector<int32_t>(tokens.begin(), tokens.begin() + n));
    return true;
}

}  // namespace moeserve
