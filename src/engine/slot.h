// One slot: a sequence of the KV cache that serves one request at a time.
//
//   idle ──start()──► prefilling ──last prompt token's logits──► generating ──stop──► idle
//
// An embedding request only prefills: the hidden states of its prompt are
// pooled as they come (take_hidden()), and the slot is idle again when the
// last prompt token is in.
//
// The slot mirrors what its sequence holds in the cache (cached()), so a
// later request can reuse the common prefix. It samples its tokens, turns
// them into text (streaming detokenizer, stop strings held back and cut),
// applies the limits (n_predict, end of generation, the slot's context) and
// pushes the events of its request. It never touches the cache itself: the
// scheduler evaluates the tokens it asks for and reports back.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/drafter.h"
#include "engine/embedding.h"
#include "engine/generation.h"
#include "engine/grammar_sampler.h"
#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "text/tokenizer.h"

namespace moeserve {

using SteadyClock = std::chrono::steady_clock;

inline double seconds_between(SteadyClock::time_point a, SteadyClock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

enum class SlotState { idle, prefilling, generating };
const char* slot_state_name(SlotState s);

struct SlotTask {
    uint64_t id = 0;
    GenerationRequest request;
    std::shared_ptr<GenerationStream> stream;
    std::unique_ptr<Sampler> sampler;  // already primed with the prompt
};

// A snapshot for /slots and /metrics.
struct SlotInfo {
    int id = 0;
    int64_t n_ctx = 0;
    SlotState state = SlotState::idle;
    bool has_task = false;  // the slot has run (or is running) a task
    uint64_t id_task = 0;
    int64_t n_prompt_tokens = 0;
    int64_t n_prompt_tokens_processed = 0;
    int64_t n_prompt_tokens_cache = 0;
    int64_t n_decoded = 0;
    int64_t n_remain = -1;
    bool has_new_line = false;
    int64_t n_cached = 0;      // tokens the slot's sequence holds
    GenerationRequest params;  // the last task's parameters (prompt left empty)
};

class Slot {
  public:
    Slot(int id, int64_t n_ctx, const Tokenizer& tokenizer, int64_t n_embd = 0)
        : id_(id), n_ctx_(n_ctx), n_embd_(n_embd), tokenizer_(&tokenizer) {}

    int id() const { return id_; }
    int64_t n_ctx() const { return n_ctx_; }
    SlotState state() const { return state_; }
    bool idle() const { return state_ == SlotState::idle; }
    const std::vector<int32_t>& cached() const { return cached_; }
    SteadyClock::time_point last_used() const { return last_used_; }
    const SlotTask& task() const { return task_; }
    bool cancelled() const { return task_.stream && task_.stream->cancelled(); }
    // The running task is an embedding request.
    bool embedding() const { return !idle() && task_.request.embed; }

    // Starts a task. The caller has truncated the slot's sequence to n_keep
    // tokens, a prefix the prompt shares with cached().
    void start(SlotTask task, int64_t n_keep, SteadyClock::time_point now);

    // Prompt tokens still to evaluate (prefilling), and the report that the
    // first n of them are now in the cache.
    std::span<const int32_t> prompt_left() const;
    void prompt_evaluated(int64_t n, SteadyClock::time_point now);
    bool prompt_done() const { return n_prompt_done_ == static_cast<int64_t>(task_.request.prompt.size()); }

    // The token to evaluate next while generating, and the report that it is
    // in the cache.
    int32_t pending_token() const { return pending_; }
    void pending_evaluated() { cached_.push_back(pending_); }

    // Speculative decoding: tokens guessed to follow the pending one (by the
    // kinds of guesses the drafter has, drafter.h; a new task's prompt goes to the
    // drafter first, guessing or not), at most `room` and within the
    // request's speculative.n_max, the tokens it may still generate and the
    // slot's context; empty when speculation is off for the request or the
    // guess is shorter than speculative.n_min. The scheduler evaluates them
    // after the pending token, samples row by row and keeps each guess the
    // sampler confirms (pending_evaluated() again), and reports the counts.
    std::vector<int32_t> draft(Drafter& drafter, int64_t room) const;
    void drafts_verified(int64_t n_drafted, int64_t n_accepted) {
        draft_n_ += n_drafted;
        draft_accepted_ += n_accepted;
    }

    // Samples from the logits of the slot's last evaluated token, emits the
    // token's event and, when a limit is reached, the done event. Returns
    // true when the task finished (the slot is idle again).
    bool sample(std::span<const float> logits, SteadyClock::time_point now);

    // Embedding requests: whether prompt token i's hidden state is needed;
    // the hidden state of the next such token, in prompt order; and, once
    // the prompt is done, the done event with the pooled embedding (the slot
    // becomes idle).
    bool wants_hidden(int64_t i) const { return pooler_.wants(i); }
    void take_hidden(std::span<const float> row) { pooler_.add(row); }
    void finish_embedding(SteadyClock::time_point now);

    // Ends the task with an error event; the slot becomes idle.
    void fail(int status, const std::string& type, const std::string& message, SteadyClock::time_point now);
    // Ends the task silently (its client is gone).
    void abandon(SteadyClock::time_point now) { finish_idle(now); }
    // Forgets the cached tokens (the caller removed the sequence from the cache).
    void clear_cache() { cached_.clear(); }
    // Context shift: a full slot goes on generating (the scheduler drops
    // tokens) instead of stopping; and the report that n tokens from
    // position `first` were dropped from the sequence.
    void set_context_shift(bool on) { context_shift_ = on; }
    bool needs_shift() const {
        return context_shift_ && state_ == SlotState::generating && static_cast<int64_t>(cached_.size()) + 1 >= n_ctx_;
    }
    void discarded(int64_t first, int64_t n);
    // The tokens the slot's sequence now holds (the caller loaded it from the prompt cache).
    void set_cached(std::vector<int32_t> tokens) { cached_ = std::move(tokens); }

    SlotInfo info() const;

    // Time measurements of the task that just finished (for the scheduler's totals).
    const Timings& last_timings() const { return timings_; }

  private:
    void emit_token(int32_t token, std::string text, std::optional<TokenProbability> probs,
                    SteadyClock::time_point now);
    Timings timings_at(SteadyClock::time_point now) const;  // of the running task, so far
    bool cut_underindented_line();                          // the n_indent rule; true: the text was cut
    void start_lazy_grammar();                              // a lazy grammar's trigger, if it appeared
    void report_progress(SteadyClock::time_point now);      // a progress event, if the request asked
    void finish(StopType stop_type, std::string word, bool truncated, SteadyClock::time_point now);
    void finish_idle(SteadyClock::time_point now);

    int id_;
    int64_t n_ctx_;
    bool context_shift_ = false;
    bool shifted_ = false;  // the task's context was shifted (reported as truncated)
    int64_t n_embd_;        // width of a hidden state (embedding requests)
    const Tokenizer* tokenizer_;
    SlotState state_ = SlotState::idle;
    std::vector<int32_t> cached_;
    SteadyClock::time_point last_used_{};

    SlotTask task_;
    bool has_task_ = false;
    uint64_t last_task_id_ = 0;
    GenerationRequest last_params_;
    int64_t n_prompt_done_ = 0;  // prompt tokens in the cache (reused + evaluated)
    int64_t n_cached_prompt_ = 0;
    int32_t pending_ = -1;
    int64_t n_decoded_ = 0;
    int64_t draft_n_ = 0, draft_accepted_ = 0;  // speculative decoding, this task
    bool has_new_line_ = false;
    size_t last_nl_pos_ = 0;  // the n_indent rule: where the line to check starts
    std::optional<StreamingDetokenizer> detok_;
    StopStrings stops_;
    // The thinking budget (GenerationRequest::reasoning_budget): whether the
    // output is inside its <think> block, whether that block is over, the
    // tokens it has run, and the forced closing tokens still to emit.
    bool in_reasoning_ = false;
    bool reasoning_over_ = false;
    int64_t reasoning_tokens_ = 0;
    std::vector<int32_t> forced_;
    size_t forced_pos_ = 0;
    void track_reasoning(size_t old_size);
    std::string text_;     // generated text so far
    size_t sent_ = 0;      // text_[0, sent_) has been emitted
    size_t searched_ = 0;  // text_[0, searched_) was searched for stop strings
    std::vector<TokenProb> probs_scratch_;
    std::unique_ptr<GrammarMatcher> grammar_;  // the request's grammar, as far as generated
    std::vector<float> grammar_scratch_;
    size_t trigger_searched_ = 0;  // a lazy grammar's triggers are searched from here (npos: given up)
    size_t trigger_floor_ = 0;     // where they may start (npos: not known yet, the reasoning goes on)
    size_t close_searched_ = 0;    // the reasoning's "</think>" is searched from here
    EmbeddingPooler pooler_;       // embedding requests
    SteadyClock::time_point t_start_{}, t_first_{};
    Timings timings_;
};

}  // namespace moeserve
