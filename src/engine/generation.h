// What a client asks the scheduler for and what comes back, independent of
// HTTP: a GenerationRequest (prompt tokens and generation parameters) is
// submitted with a GenerationStream; the inference thread pushes
// GenerationEvents into the stream (started, text per token, done or error)
// and the client waits on it. Several requests may share one stream (the
// choices of one HTTP request); events carry the request's index.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/embedding.h"
#include "engine/sampler.h"

namespace moeserve {

struct GrammarConstraint;

struct GenerationRequest {
    int index = 0;                  // choice index, echoed in events
    std::vector<int32_t> prompt;    // token ids, not empty
    SamplingParams sampling;        // sampling.n_probs: probabilities to report per token
    int64_t n_predict = -1;         // -1: until end of generation or the slot's context
    std::vector<std::string> stop;  // stop strings
    bool ignore_eos = false;
    bool cache_prompt = true;  // reuse the slot's cached prefix
    // n_cache_reuse / --cache-reuse: after the common prefix, chunks of at least
    // this many tokens found further on in the slot's cache are moved into place
    // (their keys re-rotated, as a context shift does) instead of evaluated
    // again; 0: off. Only for models whose cache can shift (spec §6.5).
    int64_t n_cache_reuse = 0;
    // Hybrid models: prompt positions (ascending, inside the prompt) after which
    // the recurrent state is snapshotted as a turn boundary (the start and end of
    // the last user message), so that a later prompt sharing the conversation up
    // to there resumes from it (spec server-behaviour §6.6). The prompt's
    // evaluation is split there.
    std::vector<int64_t> turn_boundaries;
    // Hybrid models: prompt positions (ascending) at the start of each user or tool
    // message's content; the scheduler snapshots those at least
    // --checkpoint-min-step tokens apart (kept in host RAM), so that a long
    // conversation edited or cut far back resumes near where it diverges.
    std::vector<int64_t> message_starts;
    // Context shift (serve --context-shift), when the slot is full: keep the
    // first n_keep tokens (-1: the whole prompt), drop n_discard after them
    // (0: half of the rest), go on.
    int64_t n_keep = 0;
    int64_t n_discard = 0;
    bool post_sampling_probs = false;
    int id_slot = -1;  // -1: any slot
    // Code completion (llama-server's FIM rules): n_indent > 0 ends the answer
    // at a line indented by fewer spaces/tabs, cutting that line's text;
    // t_max_predict_ms > 0 ends it at the first newline after that much
    // generation time. Both stop with StopType::limit.
    int64_t n_indent = 0;
    int64_t t_max_predict_ms = -1;
    // Speculative decoding (serve --spec-type ngram-simple; speculative.n_max and
    // speculative.n_min): at most spec_n_max guessed tokens are verified with
    // each generated one, and none when fewer than spec_n_min are guessed. 0: off.
    int64_t spec_n_max = 0;
    int64_t spec_n_min = 0;
    // Testing only (serve --allow-replay): tokens the slot emits in order
    // instead of sampling, so that tests can force an answer's exact text.
    std::vector<int32_t> replay;
    // The grammar the output must follow (grammar, json_schema, response_format).
    std::shared_ptr<const GrammarConstraint> grammar;
    // A thinking budget (serve --reasoning-budget N, thinking_budget_tokens): once
    // a <think> block has run this many tokens, the slot emits reasoning_close
    // (the budget message and the template's closing marker) instead of sampling,
    // then samples on. -1: no budget. reasoning_open_at_start: the prompt opened
    // the block (the output starts inside it); otherwise it counts from a
    // <think> the model writes at the start of its answer.
    int64_t reasoning_budget = -1;
    bool reasoning_open_at_start = false;
    std::vector<int32_t> reasoning_close;
    // reasoning_control: the block may also be closed on request
    // (GenerationStream::request_reasoning_end), budget or not.
    bool reasoning_control = false;

    // return_progress: a progress event when the slot takes the request and
    // after each chunk of its prompt is evaluated.
    bool return_progress = false;

    // An embedding request: the whole prompt is evaluated (no cached prefix)
    // and the done event carries its pooled hidden states instead of a
    // generation. Sampling fields are ignored.
    bool embed = false;
    Pooling pooling = Pooling::none;
    int embd_normalize = 2;  // see normalize_embedding()
};

enum class StopType { none, eos, word, limit };
const char* stop_type_name(StopType t);

struct TokenProbability {
    int32_t token = 0;
    float prob = 0.0f;           // of the chosen token
    std::vector<TokenProb> top;  // most probable candidates, highest first
};

struct Timings {
    int64_t cache_n = 0;   // prompt tokens reused from the cache
    int64_t prompt_n = 0;  // prompt tokens evaluated
    double prompt_ms = 0;
    int64_t predicted_n = 0;
    double predicted_ms = 0;
    // Speculative decoding: tokens guessed ahead and verified, and how many of
    // them the sampler confirmed (each confirmed one saved a forward pass).
    int64_t draft_n = 0;
    int64_t draft_n_accepted = 0;
};

struct GenerationResult {
    StopType stop_type = StopType::none;
    std::string stopping_word;
    bool truncated = false;     // stopped because the slot's context is full
    int64_t n_prompt = 0;       // prompt tokens, cached or not
    int64_t tokens_cached = 0;  // tokens the slot holds afterwards
    int slot = -1;
    Timings timings;
    // Embedding requests: one pooled vector, or one per prompt token with Pooling::none.
    std::vector<std::vector<float>> embedding;
};

// How far a prompt's evaluation is (llama-server's prompt_progress):
// processed of total prompt tokens are in the slot's cache, cache of them
// reused from before, after time_ms since the slot took the request.
struct PromptProgress {
    int64_t total = 0;
    int64_t cache = 0;
    int64_t processed = 0;
    double time_ms = 0;
};

struct GenerationEvent {
    enum class Kind { started, progress, token, done, error };
    Kind kind = Kind::token;
    int index = 0;
    int slot = -1;

    // token: the text this token completed (may be empty while text is held
    // back) and, when asked, its probabilities.
    int32_t token = -1;
    std::string text;
    std::optional<TokenProbability> probs;
    // token and progress: the prompt's length and the timings so far.
    int64_t n_prompt = 0;
    Timings timings;
    // progress
    PromptProgress progress;

    // done
    GenerationResult result;

    // error: an HTTP status and an OpenAI error type with a message.
    int status = 0;
    std::string error_type;
    std::string message;
};

class GenerationStream {
  public:
    void push(GenerationEvent event) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            events_.push_back(std::move(event));
        }
        cv_.notify_all();
    }
    // The next event, or nullopt after `timeout` without one.
    std::optional<GenerationEvent> next(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu_);
        if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
        GenerationEvent e = std::move(events_.front());
        events_.pop_front();
        return e;
    }
    // The client went away: the scheduler drops its queued requests and
    // frees its slots at the next step.
    void cancel() { cancelled_.store(true); }
    bool cancelled() const { return cancelled_.load(); }
    // /v1/chat/completions/control "reasoning_end": a slot thinking under
    // reasoning control closes its block at the next token it samples.
    void request_reasoning_end() { reasoning_end_.store(true); }
    bool reasoning_end_requested() const { return reasoning_end_.load(); }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<GenerationEvent> events_;
    std::atomic<bool> cancelled_{false};
    std::atomic<bool> reasoning_end_{false};
};

}  // namespace moeserve
