#include "engine/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace moeserve {

Scheduler::Scheduler(Model& model, KvCache& cache, const Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model),
      cache_(cache),
      tokenizer_(tokenizer),
      options_(options),
      t_created_(SteadyClock::now()),
      prompt_cache_(options.cache_ram_bytes),
      drafter_(options.speculative, options.layout.n_slots) {
    const int n = options_.layout.n_slots;
    if (n < 1 || n > cache_.config().n_seq_max)
        throw std::invalid_argument(
            fmt::format("{} slots need {} cache sequences, the cache has {}", n, n, cache_.config().n_seq_max));
    options_.n_batch = std::max<int64_t>(options_.n_batch, n);
    options_.n_ubatch = std::max<int64_t>(1, options_.n_ubatch);
    slots_.reserve(n);
    for (int i = 0; i < n; ++i) slots_.emplace_back(i, options_.layout.n_ctx_slot, tokenizer_, model_.params().n_embd);
    if (options_.context_shift) {
        if (const std::string why = model_.context_shift_refusal(); !why.empty())
            throw std::invalid_argument("--context-shift: " + why);
        for (auto& s : slots_) s.set_context_shift(true);
    }
    stats_.kv_cells_total = cache_.n_cells();
    stats_.kv_bytes = cache_.bytes();
}

Scheduler::~Scheduler() {
    stop();
}

void Scheduler::start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) return;
    running_ = true;
    stopping_ = false;
    thread_ = std::thread([this] {
        for (;;) {
            {
                std::lock_guard<std::mutex> l(mu_);
                if (stopping_) return;
            }
            if (!step()) {
                std::unique_lock<std::mutex> l(mu_);
                cv_.wait_for(l, std::chrono::milliseconds(100),
                             [&] { return stopping_ || !queue_.empty() || !actions_.empty(); });
            }
        }
    });
}

void Scheduler::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!running_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
    const auto now = SteadyClock::now();
    for (auto& q : queue_) {
        GenerationEvent e;
        e.kind = GenerationEvent::Kind::error;
        e.index = q.task.request.index;
        e.status = 503;
        e.error_type = "unavailable_error";
        e.message = "the server is shutting down";
        q.task.stream->push(std::move(e));
    }
    queue_.clear();
    for (auto& a : actions_) a.done.set_value({false, "the server is shutting down"});
    actions_.clear();
    for (auto& s : slots_)
        if (!s.idle()) s.fail(503, "unavailable_error", "the server is shutting down", now);
}

void Scheduler::submit(std::vector<GenerationRequest> requests, std::shared_ptr<GenerationStream> stream) {
    if (requests.empty()) throw SubmitError(400, "invalid_request_error", "no prompt to process");
    const int64_t n_ctx = options_.layout.n_ctx_slot;
    const int64_t n_vocab = model_.params().n_vocab;
    // Several prompts each hold their own copy of their cells (choices of one prompt share
    // all of it but its last token): in one shared pool that can never fit, say so now
    // rather than fail mid-way with a 500.
    if (options_.layout.unified && requests.size() > 1) {
        int64_t cells = 0;
        for (size_t i = 0; i < requests.size(); ++i) {
            const auto& p = requests[i].prompt;
            // Shared only where a repeat waits for the first (waits_for_a_reader).
            const bool repeat = sharing_prefixes() && !requests[i].embed && requests[i].cache_prompt &&
                                static_cast<int64_t>(p.size()) > kMinSharedWait &&
                                (!cache_.has_recurrent() || cache_.snapshot_capacity(SnapshotKind::prompt_end) >= 2) &&
                                std::any_of(requests.begin(), requests.begin() + i,
                                            [&](const GenerationRequest& o) { return !o.embed && o.prompt == p; });
            cells += (repeat ? 1 : static_cast<int64_t>(p.size())) + 1;
        }
        if (cells > options_.layout.n_cells)
            throw SubmitError(400, "invalid_request_error",
                              fmt::format("the {} choices/prompts of this request need {} KV cells together (each "
                                          "prompt holds its own copy of its tokens); the cache has {}",
                                          requests.size(), cells, options_.layout.n_cells));
    }
    std::vector<SlotTask> tasks;
    std::vector<int> empty;  // the indexes of empty prompts, answered at once
    for (auto& rq : requests) {
        const int64_t n_prompt = static_cast<int64_t>(rq.prompt.size());
        if (rq.embed) {
            tasks.push_back(embedding_task(std::move(rq), stream));
            continue;
        }
        if (n_prompt == 0) {
            // llama-server answers an empty prompt (e.g. "" for a model that adds
            // no BOS) with an immediate empty final response, not an error.
            empty.push_back(rq.index);
            continue;
        }
        for (int32_t t : rq.prompt)
            if (t < 0 || t >= n_vocab)
                throw SubmitError(400, "invalid_request_error", "Prompt contains invalid tokens");
        if (n_prompt >= n_ctx)
            throw SubmitError(400, "exceed_context_size_error",
                              fmt::format("request ({} tokens) exceeds the available context size ({} tokens), try "
                                          "increasing it",
                                          n_prompt, n_ctx),
                              n_prompt, n_ctx);
        if (rq.id_slot < -1 || rq.id_slot >= n_slots())
            throw SubmitError(
                400, "invalid_request_error",
                fmt::format("id_slot {} is out of range: this server has slots 0..{}", rq.id_slot, n_slots() - 1));
        if (rq.n_predict < -1)
            throw SubmitError(400, "invalid_request_error",
                              fmt::format("n_predict must be -1 or more, got {}", rq.n_predict));
        SlotTask task;
        try {
            task.sampler =
                std::make_unique<Sampler>(rq.sampling, static_cast<int32_t>(n_vocab), static_cast<int32_t>(n_ctx));
        } catch (const std::invalid_argument& e) {
            throw SubmitError(400, "invalid_request_error", e.what());
        }
        for (int32_t t : rq.prompt) task.sampler->accept(t);
        task.request = std::move(rq);
        task.stream = stream;
        tasks.push_back(std::move(task));
    }

    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) throw SubmitError(503, "unavailable_error", "the server is shutting down");
        const size_t idle =
            static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.idle(); }));
        const size_t waiting = queue_.size() + tasks.size();
        if (waiting > idle && waiting - idle > options_.max_queue)
            throw SubmitError(503, "unavailable_error",
                              fmt::format("the server is busy: all {} slots are in use and {} requests are waiting "
                                          "(--max-queue {}); retry later",
                                          n_slots(), queue_.size(), options_.max_queue));
        const auto now = SteadyClock::now();
        for (auto& t : tasks) {
            t.id = next_task_id_++;
            queue_.push_back(Queued{std::move(t), now});
        }
    }
    for (int index : empty) {
        GenerationEvent e;
        e.kind = GenerationEvent::Kind::done;
        e.index = index;
        e.result.stop_type = StopType::none;
        stream->push(std::move(e));
    }
    if (!tasks.empty()) cv_.notify_all();
}

SlotTask Scheduler::embedding_task(GenerationRequest rq, std::shared_ptr<GenerationStream> stream) const {
    if (!options_.hidden_states)
        throw SubmitError(501, "not_supported_error",
                          "This server does not support embeddings. Start it with `--embeddings`");
    const int64_t n_prompt = static_cast<int64_t>(rq.prompt.size());
    const int64_t n_ctx = options_.layout.n_ctx_slot;
    if (n_prompt == 0) throw SubmitError(400, "invalid_request_error", "Input content cannot be empty");
    for (int32_t t : rq.prompt)
        if (t < 0 || t >= model_.params().n_vocab)
            throw SubmitError(400, "invalid_request_error", "Prompt contains invalid tokens");
    // Nothing is generated after an embedding's prompt: it may fill the slot.
    if (n_prompt > n_ctx)
        throw SubmitError(
            400, "exceed_context_size_error",
            fmt::format("input ({} tokens) is larger than the max context size ({} tokens). skipping", n_prompt, n_ctx),
            n_prompt, n_ctx);
    if (rq.id_slot < -1 || rq.id_slot >= n_slots())
        throw SubmitError(
            400, "invalid_request_error",
            fmt::format("id_slot {} is out of range: this server has slots 0..{}", rq.id_slot, n_slots() - 1));
    SlotTask task;
    task.request = std::move(rq);
    task.stream = std::move(stream);
    return task;
}

void Scheduler::drop_cancelled(SteadyClock::time_point now) {
    for (auto it = queue_.begin(); it != queue_.end();) {
        if (it->task.stream->cancelled()) {
            it = queue_.erase(it);
            ++stats_.n_requests_cancelled;
        } else {
            ++it;
        }
    }
    for (auto& s : slots_)
        if (!s.idle() && s.cancelled()) {
            s.abandon(now);
            ++stats_.n_requests_cancelled;
        }
}

Slot* Scheduler::choose_slot(const GenerationRequest& rq, bool* by_similarity) {
    if (by_similarity) *by_similarity = false;
    if (rq.id_slot >= 0) {
        Slot& s = slots_[static_cast<size_t>(rq.id_slot)];
        return s.idle() ? &s : nullptr;
    }
    Slot* best = nullptr;
    // An embedding reuses nothing: it takes the least recently used slot and
    // leaves the caches that completions could reuse alone.
    if (options_.slot_prompt_similarity > 0 && !rq.embed) {
        double best_sim = options_.slot_prompt_similarity;
        for (auto& s : slots_) {
            if (!s.idle() || s.cached().empty()) continue;
            const double sim = static_cast<double>(common_prefix(s.cached(), rq.prompt)) / rq.prompt.size();
            if (sim > best_sim) best_sim = sim, best = &s;
        }
    }
    if (best) {
        if (by_similarity) *by_similarity = true;
        return best;
    }
    for (auto& s : slots_)
        if (s.idle() && (!best || s.last_used() < best->last_used())) best = &s;
    return best;
}

void Scheduler::admit(SteadyClock::time_point now) {
    // Requests pinned to a slot (id_slot) go first, then the others oldest first: an
    // older unpinned request never takes the freed slot a pinned one waits for (spec §6.2).
    int reserved = 0;  // idle slots kept for requests waiting for a reader (waits_for_a_reader)
    for (const bool pinned : {true, false})
        for (auto it = queue_.begin(); it != queue_.end();) {
            if ((it->task.request.id_slot >= 0) != pinned)
                ++it;
            else
                it = admit_one(it, now, reserved);
        }
}

std::deque<Scheduler::Queued>::iterator Scheduler::admit_one(std::deque<Queued>::iterator it,
                                                             SteadyClock::time_point now, int& reserved) {
    const GenerationRequest& rq = it->task.request;
    if (rq.id_slot < 0) {
        // No slot for it (the others' waits keep theirs): nothing to decide yet.
        const auto idle = std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.idle(); });
        if (idle <= reserved) return std::next(it);
        // A prompt that begins as one a slot is reading waits for it, then shares those
        // cells: reading the same tokens side by side would halve both reads' speed
        // (this is also how the n choices of one prompt share it, as llama-server's do).
        // It keeps an idle slot for itself meanwhile, so that later requests do not
        // take the slot it waits for.
        if (waits_for_a_reader(rq)) {
            ++reserved;
            return std::next(it);
        }
    }
    bool by_similarity = false;
    Slot* s = choose_slot(rq, &by_similarity);
    if (!s) return std::next(it);
    const auto& prompt = rq.prompt;
    // An embedding needs the hidden state of every prompt token: none is reused.
    const bool reuse = rq.cache_prompt && !rq.embed;
    int64_t n_keep = reuse ? static_cast<int64_t>(common_prefix(s->cached(), prompt)) : 0;
    // The RAM prompt cache (spec §6.2): a slot taken as the least recently used, or
    // whose similarity keeps less than half of what it holds, is saved first.
    if (prompt_cache_.enabled() && !rq.embed &&
        (!by_similarity || 2 * n_keep < static_cast<int64_t>(s->cached().size())))
        save_to_prompt_cache(*s);
    // At least one prompt token is evaluated, to get the logits to sample from.
    if (reuse && n_keep == static_cast<int64_t>(prompt.size())) --n_keep;
    // A recurrent state rewinds only to a snapshot: the newest one inside the shared prefix.
    const bool rewound = !cache_.can_truncate(s->id(), n_keep);
    if (rewound) {
        int64_t best = 0;
        for (int64_t p : cache_.snapshot_positions(s->id()))
            if (p <= n_keep && p > best && cache_.can_truncate(s->id(), p)) best = p;
        n_keep = best;
    }
    if (reuse && rq.n_cache_reuse > 0 && !rewound) n_keep = reuse_chunks(*s, prompt, n_keep, rq.n_cache_reuse);
    // Then a longer prefix from another slot's cells, then from the RAM prompt cache.
    if (reuse && sharing_prefixes()) share_from_other_slot(*s, prompt, n_keep, it->task.id);
    if (reuse && prompt_cache_.enabled()) load_from_prompt_cache(*s, prompt, n_keep);
    if (reuse && n_keep == static_cast<int64_t>(prompt.size())) --n_keep;
    if (rewound && n_keep == 0 && options_.log_slots)
        std::fprintf(stderr,
                     "slot update_slots: id %2d | task %llu | forcing full prompt re-processing due to lack "
                     "of cache data (a recurrent state rewinds only to its snapshots)\n",
                     s->id(), static_cast<unsigned long long>(it->task.id));
    cache_.truncate(s->id(), n_keep);
    s->start(std::move(it->task), n_keep, now);
    // A state at a rung that came from elsewhere (another slot, the RAM cache) becomes
    // one of this slot's rungs, so that it outlives the slot it came from.
    if (n_keep > 0 && last_rung(s->id(), n_keep + 1) != n_keep && snapshots_message_start(*s, n_keep))
        cache_.snapshot(s->id(), SnapshotKind::message_start);
    return queue_.erase(it);
}

int64_t Scheduler::make_room(int64_t needed) {
    while (cache_.n_free() < needed) {
        // The least recently used idle slot, among those whose cells are not all shared
        // (dropping those frees nothing) when there are any.
        Slot* victim = nullptr;
        auto frees = [&](const Slot& s) { return cache_.shared_cells(s.id()) < cache_.seq_length(s.id()); };
        for (auto& s : slots_)
            if (s.idle() && !s.cached().empty() &&
                (!victim || (frees(s) && !frees(*victim)) ||
                 (frees(s) == frees(*victim) && s.last_used() < victim->last_used())))
                victim = &s;
        if (!victim) break;
        save_to_prompt_cache(*victim);
        cache_.remove(victim->id());
        victim->clear_cache();
    }
    return cache_.n_free();
}

void Scheduler::fail_slot(Slot& slot, int status, const char* type, const std::string& message,
                          SteadyClock::time_point now) {
    cache_.remove(slot.id());
    slot.clear_cache();
    slot.fail(status, type, message, now);
    ++stats_.n_requests_failed;
}

void Scheduler::record_finished(const Slot& slot) {
    const Timings& t = slot.last_timings();
    if (options_.log_slots) {
        // llama-server's per-request lines (slot print_timing), which users grep for.
        auto per = [](double a, double b) { return b > 0 ? a / b : 0.0; };
        std::fprintf(stderr,
                     "slot print_timing: id %2d | task %llu | \n"
                     "prompt eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens per second)\n"
                     "       eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens per second)\n"
                     "      total time = %10.2f ms / %5lld tokens\n",
                     slot.id(), static_cast<unsigned long long>(slot.task().id), t.prompt_ms,
                     static_cast<long long>(t.prompt_n), per(t.prompt_ms, double(t.prompt_n)),
                     per(1000.0 * double(t.prompt_n), t.prompt_ms), t.predicted_ms,
                     static_cast<long long>(t.predicted_n), per(t.predicted_ms, double(t.predicted_n)),
                     per(1000.0 * double(t.predicted_n), t.predicted_ms), t.prompt_ms + t.predicted_ms,
                     static_cast<long long>(t.prompt_n + t.predicted_n));
        if (t.draft_n > 0)
            std::fprintf(stderr, "draft acceptance rate = %0.5f (%5lld accepted / %5lld generated)\n",
                         static_cast<double>(t.draft_n_accepted) / static_cast<double>(t.draft_n),
                         static_cast<long long>(t.draft_n_accepted), static_cast<long long>(t.draft_n));
    }
    ++stats_.n_requests_done;
    stats_.n_prompt_tokens_total += static_cast<uint64_t>(t.prompt_n);
    stats_.t_prompt_total_s += t.prompt_ms / 1000.0;
    stats_.n_predicted_total += static_cast<uint64_t>(t.predicted_n);
    stats_.t_predicted_total_s += t.predicted_ms / 1000.0;
}

bool Scheduler::step() {
    std::unique_lock<std::mutex> lock(mu_);
    auto now = SteadyClock::now();
    const auto t_step = now;
    drop_cancelled(now);
    run_slot_actions();
    admit(now);
    if (options_.context_shift) shift_full_slots();

    // The youngest running request: the one to fail when the cells run out.
    auto youngest = [&]() -> Slot* {
        Slot* y = nullptr;
        for (auto& s : slots_)
            if (!s.idle() && (!y || s.task().id > y->task().id)) y = &s;
        return y;
    };

    // Which kind of work this step batches: generation (logits) or
    // embeddings (hidden states); they take turns when both wait.
    bool completion_work = false, embed_work = false;
    for (auto& s : slots_) {
        if (s.idle()) continue;
        (s.embedding() ? embed_work : completion_work) = true;
    }
    const bool embed_step = embed_work && (!completion_work || embed_turn_);
    if (embed_work && completion_work) embed_turn_ = !embed_turn_;

    Batch batch;
    std::vector<Slot*> out_slots;  // the slot of each output row, in batch order
    std::vector<std::pair<Slot*, int64_t>> chunks;
    std::vector<std::vector<int32_t>> drafts(slots_.size());  // each generating slot's guesses
    StepRecord rec;
    rec.slot_tokens.assign(slots_.size(), 0);

    // Decode tokens: one per generating slot, always (in generation steps).
    if (!embed_step) {
        int64_t n_gen = 0;
        for (;;) {
            n_gen = 0;
            for (auto& s : slots_) n_gen += s.state() == SlotState::generating;
            if (make_room(n_gen) >= n_gen) break;
            fail_slot(*youngest(), 500, "server_error", "Context size has been exceeded.", now);
        }
        // With speculative decoding each pending token is followed by its slot's
        // guesses, in cells that are free now and within the step's token budget,
        // each with its logits (rows right after the pending token's).
        int64_t room = speculating() ? std::min(cache_.n_free(), options_.n_batch) - n_gen : 0;
        for (auto& s : slots_) {
            if (s.state() != SlotState::generating) continue;
            const int32_t pos = static_cast<int32_t>(s.cached().size());
            batch.add(s.pending_token(), pos, s.id(), true);
            out_slots.push_back(&s);
            ++rec.n_decode;
            ++rec.slot_tokens[s.id()];
            if (!speculating()) continue;
            auto& d = drafts[static_cast<size_t>(s.id())];
            d = s.draft(drafter_, room);  // (with no room, none; but a new prompt still goes into the pool)
            if (d.empty()) continue;
            cache_.begin_guesses(s.id());
            for (size_t j = 0; j < d.size(); ++j) {
                batch.add(d[j], pos + 1 + static_cast<int32_t>(j), s.id(), true);
                out_slots.push_back(&s);
            }
            room -= static_cast<int64_t>(d.size());
            rec.n_draft += static_cast<int64_t>(d.size());
            rec.slot_tokens[s.id()] += static_cast<int>(d.size());
        }
    }

    // Prompt chunks of this step's kind, prefilling slots taking turns at going first.
    std::vector<Slot*> prefilling;
    for (size_t i = 0; i < slots_.size(); ++i) {
        Slot& s = slots_[(prefill_turn_ + i) % slots_.size()];
        if (s.state() == SlotState::prefilling && s.embedding() == embed_step) prefilling.push_back(&s);
    }
    prefill_turn_ = (prefill_turn_ + 1) % slots_.size();
    int64_t wanted = 0;
    for (Slot* s : prefilling) wanted += static_cast<int64_t>(s->prompt_left().size());
    const int64_t n_gen = rec.n_decode + rec.n_draft;
    int64_t budget = std::min(options_.n_batch - n_gen, wanted);
    budget = std::min(budget, make_room(n_gen + budget) - n_gen);
    for (Slot* s : prefilling) {
        if (budget <= 0) break;
        auto left = s->prompt_left();
        int64_t n = std::min<int64_t>(budget, static_cast<int64_t>(left.size()));
        const int32_t pos0 = static_cast<int32_t>(s->cached().size());
        if (!embed_step && cache_.has_recurrent()) {
            // A recurrent state cannot be rewound: stop one token short of the end
            // of the prompt, where a snapshot lets the same prompt be reused, and
            // at the turn boundaries and spaced message starts, where snapshots
            // let an edited or continued conversation be.
            if (left.size() > 1 && n == static_cast<int64_t>(left.size())) --n;
            for (int64_t b : s->task().request.turn_boundaries)
                if (b > pos0 && b < pos0 + n) n = b - pos0;
            for (int64_t b : s->task().request.message_starts)
                if (b > pos0 && b < pos0 + n && snapshots_message_start(*s, b)) {
                    n = b - pos0;
                    break;
                }
        }
        for (int64_t i = 0; i < n; ++i) {
            // Generation wants the logits of the prompt's last token; an
            // embedding the hidden states its pooling reads.
            const bool out = embed_step ? s->wants_hidden(pos0 + i) : i == static_cast<int64_t>(left.size()) - 1;
            batch.add(left[i], pos0 + static_cast<int32_t>(i), s->id(), out);
            if (out && embed_step) out_slots.push_back(s);
        }
        if (!embed_step && n == static_cast<int64_t>(left.size())) out_slots.push_back(s);
        chunks.emplace_back(s, n);
        budget -= n;
        rec.n_prompt += n;
        ++rec.n_prompt_slots;
        rec.slot_tokens[s->id()] += static_cast<int>(n);
    }
    // Output rows come back in batch order; the decode tokens come first and
    // each finished prompt's last token after them, in the order added.

    if (batch.size() == 0) {
        if (!prefilling.empty()) {
            // Prompts wait but not one cell is free: give up on the youngest request.
            fail_slot(*youngest(), 500, "server_error", "Context size has been exceeded.", now);
            note_cache_use();
            return true;
        }
        note_cache_use();
        return false;
    }
    int n_busy = 0;
    for (auto& s : slots_) n_busy += !s.idle();
    lock.unlock();

    // Evaluate in forward calls of at most n_ubatch tokens.
    std::vector<float> out;
    std::string error;
    const auto t0 = SteadyClock::now();
    try {
        out = evaluate(batch, embed_step);
    } catch (const std::exception& e) {
        error = e.what();
    }
    const auto t1 = SteadyClock::now();

    lock.lock();
    now = t1;
    stats_.t_forward_total_s += seconds_between(t0, t1);
    ++stats_.n_decode_total;
    stats_.n_busy_slots_total += static_cast<uint64_t>(n_busy);
    stats_.n_tokens_evaluated += batch.size();
    last_step_ = rec;

    if (!error.empty()) {
        fail_batch(batch, error, now);
        note_cache_use();
        return true;
    }

    if (embed_step) {
        const size_t n_embd = static_cast<size_t>(model_.params().n_embd);
        for (size_t r = 0; r < out_slots.size(); ++r)
            out_slots[r]->take_hidden(std::span<const float>(out.data() + r * n_embd, n_embd));
        for (auto& [s, n] : chunks) {
            s->prompt_evaluated(n, now);
            stats_.n_tokens_max = std::max<int64_t>(stats_.n_tokens_max, static_cast<int64_t>(s->cached().size()));
            if (s->prompt_done()) {
                s->finish_embedding(now);
                record_finished(*s);
            }
        }
        note_cache_use();
        return true;
    }

    for (auto& s : slots_)
        if (s.state() == SlotState::generating) s.pending_evaluated();
    for (auto& [s, n] : chunks) {
        s->prompt_evaluated(n, now);
        // Hybrid models: keep the recurrent state one token before the end of
        // the prompt (a repeated prompt resumes there), at its end (the next
        // turn of the conversation resumes there), at the turn boundaries and
        // at the spaced message starts.
        const auto& bounds = s->task().request.turn_boundaries;
        const auto at = static_cast<int64_t>(s->cached().size());
        if (snapshots_message_start(*s, at))
            cache_.snapshot(s->id(), SnapshotKind::message_start);
        else if (std::find(bounds.begin(), bounds.end(), at) != bounds.end())
            cache_.snapshot(s->id(), SnapshotKind::turn_boundary);
        else if (s->prompt_done() || s->prompt_left().size() == 1)
            cache_.snapshot(s->id());
    }

    const size_t n_vocab = static_cast<size_t>(model_.params().n_vocab);
    Batch redo;  // tokens to evaluate again after a recurrent state's rollback
    for (size_t r = 0; r < out_slots.size();) {
        Slot* s = out_slots[r];
        auto row = [&](size_t i) { return std::span<const float>(out.data() + i * n_vocab, n_vocab); };
        const auto& d = drafts[static_cast<size_t>(s->id())];
        const bool generating = s->state() == SlotState::generating;
        // (Counted first: the timings a finishing slot reports include this step.)
        if (generating) s->drafts_verified(static_cast<int64_t>(d.size()), 0);
        bool finished = s->sample(row(r), now);
        // Speculative guesses: each one the sampler confirms is in the cache already,
        // and the row after it holds the next token's logits.
        size_t kept = 0;
        if (generating)
            while (!finished && kept < d.size() && s->pending_token() == d[kept]) {
                s->pending_evaluated();
                s->drafts_verified(0, 1);
                ++kept;
                finished = s->sample(row(r + kept), now);
            }
        if (generating && !d.empty()) {
            drafter_.accept(s->id(), static_cast<int64_t>(kept));
            rec.n_draft_accepted += static_cast<int64_t>(kept);
            // The cells of the guesses it did not keep; a recurrent state rolled back
            // before them has the tokens it kept evaluated again.
            const auto& toks = s->cached();
            const int64_t n_keep = static_cast<int64_t>(toks.size());
            for (int64_t p = cache_.end_guesses(s->id(), n_keep); p < n_keep; ++p)
                redo.add(toks[static_cast<size_t>(p)], static_cast<int32_t>(p), s->id(), false);
        }
        stats_.n_tokens_max = std::max<int64_t>(stats_.n_tokens_max, static_cast<int64_t>(s->cached().size()));
        if (finished) record_finished(*s);
        r += 1 + (generating ? d.size() : 0);
    }
    if (redo.size() > 0) {
        lock.unlock();
        const auto t2 = SteadyClock::now();
        try {
            evaluate(redo, false);
        } catch (const std::exception& e) {
            error = e.what();
        }
        const auto t3 = SteadyClock::now();
        lock.lock();
        now = t3;
        stats_.t_forward_total_s += seconds_between(t2, t3);
        stats_.n_tokens_evaluated += redo.size();
        if (!error.empty()) fail_batch(redo, error, now);
    }
    stats_.n_draft_total += static_cast<uint64_t>(rec.n_draft);
    stats_.n_draft_accepted_total += static_cast<uint64_t>(rec.n_draft_accepted);
    last_step_ = rec;
    note_cache_use();
    if (rec.n_prompt == 0) {  // a decode-only step, sampling and streaming included
        stats_.n_decode_step_tokens += static_cast<uint64_t>(rec.n_decode + rec.n_draft_accepted);
        stats_.t_decode_steps_s += seconds_between(t_step, SteadyClock::now());
        stats_.t_decode_steps_forward_s += seconds_between(t0, t1);
    }
    return true;
}

std::vector<float> Scheduler::evaluate(const Batch& batch, bool hidden) {
    auto forward = [&](const Batch& b) {
        return hidden ? options_.hidden_states(b, cache_) : model_.forward(b, cache_);
    };
    const size_t ub = static_cast<size_t>(options_.n_ubatch);
    if (batch.size() <= ub) return forward(batch);  // the usual decode step: no copies
    std::vector<float> out;
    for (size_t b = 0; b < batch.size(); b += ub) {
        const size_t e = std::min(batch.size(), b + ub);
        Batch view;
        for (size_t i = b; i < e; ++i)
            view.add(batch.tokens[i], batch.positions[i], batch.seq_ids[i], batch.want_logits[i] != 0);
        std::vector<float> part = forward(view);
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
}

void Scheduler::fail_batch(const Batch& batch, const std::string& error, SteadyClock::time_point now) {
    // Earlier forward calls may have stored some tokens: drop these sequences.
    std::vector<Slot*> involved;
    for (size_t i = 0; i < batch.size(); ++i) {
        Slot* s = &slots_[static_cast<size_t>(batch.seq_ids[i])];
        if (std::find(involved.begin(), involved.end(), s) == involved.end()) involved.push_back(s);
    }
    for (Slot* s : involved) {
        if (!s->idle()) {
            fail_slot(*s, 500, "server_error", "model evaluation failed: " + error, now);
        } else {  // finished already (a rollback's evaluation): its cache is not what it says
            cache_.remove(s->id());
            s->clear_cache();
        }
    }
}

void Scheduler::note_cache_use() {
    // Read here, under the lock and outside forward passes, not in stats(): a failed
    // forward pass rewinds sequences without the lock.
    stats_.kv_cells_used = cache_.n_cells() - cache_.n_free();
    stats_.checkpoint_host_bytes = cache_.snapshot_host_bytes();
}

SchedulerStats Scheduler::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    SchedulerStats s = stats_;
    s.n_processing =
        static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& x) { return !x.idle(); }));
    s.n_queued = static_cast<int>(queue_.size());
    s.uptime_s = seconds_between(t_created_, SteadyClock::now());
    s.prompt_cache_entries = prompt_cache_.size();
    s.prompt_cache_bytes = prompt_cache_.bytes();
    return s;
}

std::vector<SlotInfo> Scheduler::slots() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<SlotInfo> out;
    for (const auto& s : slots_) out.push_back(s.info());
    return out;
}

StepRecord Scheduler::last_step() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_step_;
}

}  // namespace moeserve
