// Continuous batching over the slots of one model (spec server-behaviour §6).
//
// Clients submit() GenerationRequests; they wait in a bounded queue until a
// slot is free. One inference thread runs step() in a loop. Each step:
//
//   1. drops cancelled requests (queued or running: a running one frees its
//      slot, keeping its cache for prefix reuse);
//   2. gives queued requests to idle slots (the pinned slot; else the idle
//      slot whose cache shares the longest prefix with the prompt; else the
//      least recently used), truncating the slot's sequence to the reusable
//      prefix — or, when another slot (busy or not) holds a longer prefix of
//      the prompt, giving the slot those very cells (KvCache::share_prefix: a
//      system prompt common to many conversations is evaluated and stored
//      once); a prompt that begins as one a slot is still reading (the n
//      choices of one prompt, say) waits for it, keeping an idle slot;
//   3. builds one batch: the pending token of every generating slot (with
//      speculative decoding, followed by the slot's guesses at the tokens
//      after it, in free cells), then prompt chunks of prefilling slots
//      (taking turns) until the batch holds n_batch tokens. So a long prompt
//      never holds the other slots' decoding back by more than one step;
//   4. evaluates it (in forward calls of at most n_ubatch tokens) and lets
//      each slot whose last token got logits sample: row by row along its
//      guesses while the sampler confirms them, the cells of the rest dropped.
//
// Embedding requests (submitted with embed set) only prefill, always from
// the start of their sequence, with the hidden states of their prompt
// tokens in place of logits. A forward pass gives either logits or hidden
// states, so a step batches one kind of work: when both wait, steps
// alternate between them.
//
// With a unified cache the slots share every cell: idle slots' caches are
// dropped first when cells run short, and if a step still cannot place one
// token, the youngest request fails with "Context size has been exceeded."
// (llama.cpp fails all of them).
//
// Nothing here knows about HTTP; tests drive step() directly. The class's
// code is in three files: scheduler.cpp (submission, admission, the step),
// scheduler_reuse.cpp (what a request takes instead of evaluating: cached
// prefixes, shared cells, the RAM prompt cache, recurrent snapshots) and
// scheduler_slot_actions.cpp (slot save/restore/erase).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/drafter.h"
#include "engine/embedding.h"
#include "engine/generation.h"
#include "engine/prompt_cache.h"
#include "engine/slot.h"
#include "engine/slot_layout.h"
#include "memory/kv_cache.h"
#include "model/model.h"
#include "text/tokenizer.h"

namespace moeserve {

struct SchedulerOptions {
    SlotLayout layout;
    int64_t n_batch = 2048;               // tokens per step (decode tokens always fit)
    int64_t n_ubatch = 512;               // tokens per forward call
    size_t max_queue = 64;                // requests waiting for a slot
    double slot_prompt_similarity = 0.1;  // minimum shared-prefix share to prefer a slot; 0: LRU only
    size_t cache_ram_bytes = 0;           // --cache-ram: the RAM prompt cache's limit; 0 = off
    bool context_shift = false;           // --context-shift: full generating slots drop old tokens and go on
    // A prompt whose beginning another slot holds takes those cells instead of
    // evaluating it again (off with context shift, which re-rotates cells in place).
    bool share_prefixes = true;
    // The backend can re-rotate cached keys (Backend::shift_keys; the CPU's): needed
    // by n_cache_reuse, which is ignored without it.
    bool can_shift_keys = true;
    // Hybrid models: a message start (GenerationRequest::message_starts) gets a
    // snapshot when it is the first or lies at least this many tokens after the
    // slot's previous message-start snapshot (--checkpoint-min-step, as llama-server).
    int64_t checkpoint_min_step = 8192;
    // Speculative decoding (--spec-type ngram-simple,ngram-mod): each generating
    // slot's guesses (drafter.h) go into the step's batch after its pending
    // token, using free cells only (never evicting a cached prompt for them).
    // A hybrid model's recurrent state goes through every guess: when some are
    // rejected it is rolled back and the kept tokens evaluated again, in a
    // second forward pass of the same step (KvCache::end_guesses).
    SpeculativeConfig speculative;
    bool log_slots = false;  // llama-server's slot lines on stderr: each request's timings, full re-processing
    // Where embedding requests get their hidden states; empty: they are
    // refused (501, the server was started without --embeddings).
    HiddenStateSource hidden_states;
};

// A request the scheduler refuses at submit(), with its HTTP status and
// OpenAI error type.
class SubmitError : public std::runtime_error {
  public:
    SubmitError(int status, std::string type, const std::string& message, int64_t n_prompt = -1, int64_t n_ctx = -1)
        : std::runtime_error(message), status(status), type(std::move(type)), n_prompt_tokens(n_prompt), n_ctx(n_ctx) {}
    int status;
    std::string type;
    int64_t n_prompt_tokens;  // set for exceed_context_size_error
    int64_t n_ctx;
};

// What one step put in its batch (for tests and metrics).
struct StepRecord {
    int64_t n_decode = 0;          // decode tokens (one per generating slot)
    int64_t n_draft = 0;           // guessed tokens verified with them (speculative decoding)
    int64_t n_draft_accepted = 0;  // of which the sampler confirmed
    int64_t n_prompt = 0;          // prompt tokens
    int n_prompt_slots = 0;        // slots that contributed a prompt chunk
    std::vector<int> slot_tokens;  // tokens per slot
};

struct SchedulerStats {
    uint64_t n_prompt_tokens_total = 0;   // prompt tokens evaluated (reused ones excluded)
    double t_prompt_total_s = 0;          // summed per-request prompt time
    uint64_t n_predicted_total = 0;       // tokens generated
    double t_predicted_total_s = 0;       // summed per-request generation time
    uint64_t n_decode_total = 0;          // steps that ran the model
    uint64_t n_busy_slots_total = 0;      // busy slots summed over those steps
    uint64_t n_tokens_evaluated = 0;      // every token the model evaluated
    uint64_t n_draft_total = 0;           // speculative decoding: guesses verified
    uint64_t n_draft_accepted_total = 0;  // and confirmed
    int64_t n_tokens_max = 0;             // most tokens one slot has held
    double t_forward_total_s = 0;         // time inside the model
    // Steps that only decoded (no prompt chunk): their tokens and their whole
    // time (forward pass, sampling, streaming), the server's decode
    // throughput apart from prompt processing.
    uint64_t n_decode_step_tokens = 0;  // tokens generated in them (confirmed guesses included)
    double t_decode_steps_s = 0;
    double t_decode_steps_forward_s = 0;  // the forward passes' share of it; the rest is the host's
    uint64_t n_requests_done = 0, n_requests_failed = 0, n_requests_cancelled = 0;
    int n_processing = 0;  // busy slots now
    int n_queued = 0;      // requests waiting for a slot now
    int64_t kv_cells_used = 0, kv_cells_total = 0;
    size_t kv_bytes = 0;
    // The RAM prompt cache: prompts in it, their bytes, and how many were saved and loaded.
    size_t prompt_cache_entries = 0, prompt_cache_bytes = 0;
    uint64_t prompt_cache_saves = 0, prompt_cache_loads = 0;
    // Prefix sharing: prompts that took another slot's cells, and their tokens.
    uint64_t prefix_shares = 0, prefix_shared_tokens = 0;
    // Hybrid models: host RAM the message-start snapshots of all slots hold now.
    size_t checkpoint_host_bytes = 0;
    double uptime_s = 0;
};

// POST /slots/{id}?action=save|restore|erase (llama-server's slot actions).
enum class SlotAction { save, restore, erase };

struct SlotActionResult {
    bool ok = true;
    std::string message;   // why it failed
    int64_t n_tokens = 0;  // tokens saved, restored or erased
    uint64_t n_bytes = 0;  // bytes written or read
    double ms = 0;
};

class Scheduler {
  public:
    Scheduler(Model& model, KvCache& cache, const Tokenizer& tokenizer, SchedulerOptions options);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Runs step() on the inference thread until stop().
    void start();
    void stop();

    // Queues requests that share one stream (all or none). Validates them
    // first: throws SubmitError for a prompt that does not fit a slot (400
    // exceed_context_size_error), an empty prompt, an invalid token, bad
    // sampling parameters, a bad id_slot (400), an embedding request without
    // a hidden-state source (501), or a full queue (503).
    void submit(std::vector<GenerationRequest> requests, std::shared_ptr<GenerationStream> stream);

    // One scheduling step; false when there was nothing to do.
    bool step();

    // Saves, restores or erases a slot's cache, on the inference thread once
    // the slot is idle (a busy slot delays it); path: the file of a save or
    // restore. A bad slot id, an unreadable file or one saved from another
    // model or cache layout fail with a message.
    std::future<SlotActionResult> slot_action(int slot, SlotAction action, std::string path);

    const SchedulerOptions& options() const { return options_; }
    int64_t n_ctx_slot() const { return options_.layout.n_ctx_slot; }
    int n_slots() const { return static_cast<int>(slots_.size()); }
    // Speculative decoding is on (a hybrid model's cache needs its rollback
    // copies of the recurrent states: EngineOptions::speculative).
    bool speculating() const { return options_.speculative.enabled && cache_.can_drop_guesses(); }

    SchedulerStats stats() const;
    std::vector<SlotInfo> slots() const;
    StepRecord last_step() const;

  private:
    struct Queued {
        SlotTask task;
        SteadyClock::time_point since;
    };

    SlotTask embedding_task(GenerationRequest rq, std::shared_ptr<GenerationStream> stream) const;
    void drop_cancelled(SteadyClock::time_point now);
    void admit(SteadyClock::time_point now);
    // Starts one queued request if a slot takes it; returns the next position in the queue.
    std::deque<Queued>::iterator admit_one(std::deque<Queued>::iterator it, SteadyClock::time_point now, int& reserved);
    // by_similarity: whether its cached prefix chose it (else it is the least recently used).
    Slot* choose_slot(const GenerationRequest& rq, bool* by_similarity = nullptr);
    // Saves an idle slot's cached tokens to the RAM prompt cache (when it is on).
    void save_to_prompt_cache(Slot& s);
    // Loads into an idle slot the saved prompt sharing the longest prefix
    // with `prompt`, when that beats n_keep (then n_keep is its length).
    void load_from_prompt_cache(Slot& s, const std::vector<int32_t>& prompt, int64_t& n_keep);
    // Gives an idle slot the cells of the longest prefix of `prompt` another
    // slot holds (busy or not), when that beats n_keep (then n_keep is its
    // length): a shared system prompt is evaluated and stored once.
    void share_from_other_slot(Slot& s, const std::vector<int32_t>& prompt, int64_t& n_keep, uint64_t task);
    bool sharing_prefixes() const { return options_.share_prefixes && !options_.context_shift; }

    // n_cache_reuse: moves the chunks of the slot's cache after its first n_keep
    // tokens that the prompt goes on with into place; returns the new n_keep.
    int64_t reuse_chunks(Slot& s, const std::vector<int32_t>& prompt, int64_t n_keep, int64_t min_chunk);
    // How many of a prompt's first tokens slot d can give it now (see share_from_other_slot).
    int64_t shareable(const Slot& d, const std::vector<int32_t>& prompt) const;
    // Whether a queued request waits for a slot that is reading a prompt beginning as its
    // own: once read, at least kMinSharedWait more tokens can be shared than now.
    bool waits_for_a_reader(const GenerationRequest& rq) const;
    static constexpr int64_t kMinSharedWait = 16;
    // Hybrid models: whether slot s keeps its state at prompt position pos as a
    // message start: pos is one of its request's message starts and a rung
    // (is_rung) after the slot's newest such snapshot before it (prev).
    bool snapshots_message_start(const Slot& s, int64_t pos) const;
    // A message start is a rung when it is the first one (the end of the system
    // prompt and tools) at kMinFirstRung or more, or lies checkpoint_min_step or
    // more after prev. A shorter system prompt is read again rather than kept.
    bool is_rung(const std::vector<int64_t>& starts, int64_t pos, int64_t prev) const;
    // The position of sequence seq's newest message-start snapshot before `before` (0: none).
    int64_t last_rung(int seq, int64_t before) const;
    static constexpr int64_t kMinFirstRung = 64;
    // Replaces an idle slot's sequence with the first n tokens of a saved
    // state; false (the slot left empty) when busy slots hold the cells.
    bool load_into_slot(Slot& s, const SequenceState& state, const std::vector<int32_t>& tokens, int64_t n);
    // Records the cells in use and the snapshots' host RAM in stats_.
    void note_cache_use();
    // Runs a batch in forward calls of at most n_ubatch tokens: its logits (or
    // hidden states) in batch order. Called without the lock.
    std::vector<float> evaluate(const Batch& batch, bool hidden);
    // A forward pass failed: fails the requests of the batch's sequences and
    // drops their cells.
    void fail_batch(const Batch& batch, const std::string& error, SteadyClock::time_point now);
    // Context shift of the generating slots that are full.
    void shift_full_slots();
    // Runs the slot actions whose slots are idle.
    void run_slot_actions();
    SlotActionResult run_slot_action(Slot& s, SlotAction action, const std::string& path);
    int64_t make_room(int64_t needed);
    void fail_slot(Slot& slot, int status, const char* type, const std::string& message, SteadyClock::time_point now);
    void record_finished(const Slot& slot);

    Model& model_;
    KvCache& cache_;
    const Tokenizer& tokenizer_;
    SchedulerOptions options_;
    SteadyClock::time_point t_created_;

    mutable std::mutex mu_;  // guards everything below
    std::condition_variable cv_;
    std::vector<Slot> slots_;
    std::deque<Queued> queue_;
    struct PendingAction {
        int slot;
        SlotAction action;
        std::string path;
        std::promise<SlotActionResult> done;
    };
    std::deque<PendingAction> actions_;
    uint64_t next_task_id_ = 0;
    size_t prefill_turn_ = 0;  // which prefilling slot goes first in the next step
    bool embed_turn_ = false;  // with both kinds of work waiting: the next step is an embedding step
    SchedulerStats stats_;
    PromptCache prompt_cache_;
    StepRecord last_step_;
    Drafter drafter_;  // speculative decoding's guesses and what they keep between steps

    bool running_ = false;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace moeserve
