#include "engine/slot.h"

#include <algorithm>

namespace moeserve {

const char* stop_type_name(StopType t) {
    switch (t) {
        case StopType::eos:
            return "eos";
        case StopType::word:
            return "word";
        case StopType::limit:
            return "limit";
        case StopType::none:
            break;
    }
    return "none";
}

const char* slot_state_name(SlotState s) {
    switch (s) {
        case SlotState::prefilling:
            return "prefilling";
        case SlotState::generating:
            return "generating";
        case SlotState::idle:
            break;
    }
    return "idle";
}

namespace {

double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

void Slot::start(SlotTask task, int64_t n_keep, SteadyClock::time_point now) {
    task_ = std::move(task);
    has_task_ = true;
    last_task_id_ = task_.id;
    last_params_ = task_.request;
    last_params_.prompt.clear();
    cached_.resize(static_cast<size_t>(n_keep));
    n_prompt_done_ = n_keep;
    n_cached_prompt_ = n_keep;
    pending_ = -1;
    n_decoded_ = 0;
    draft_n_ = draft_accepted_ = 0;
    shifted_ = false;
    has_new_line_ = false;
    last_nl_pos_ = 0;
    detok_.emplace(*tokenizer_, /*render_special=*/false);
    stops_ = StopStrings(task_.request.stop);
    grammar_.reset();
    const GrammarConstraint* g = task_.request.grammar.get();
    if (g && g->triggers.empty()) grammar_ = std::make_unique<GrammarMatcher>(g->grammar);
    trigger_searched_ = close_searched_ = 0;
    trigger_floor_ = std::string::npos;
    text_.clear();
    sent_ = searched_ = 0;
    const bool tracks_reasoning = task_.request.reasoning_budget >= 0 || task_.request.reasoning_control;
    in_reasoning_ = tracks_reasoning && task_.request.reasoning_open_at_start;
    reasoning_over_ = !tracks_reasoning;
    reasoning_tokens_ = 0;
    forced_.clear();
    forced_pos_ = 0;
    t_start_ = t_first_ = now;
    timings_ = Timings{};
    state_ = SlotState::prefilling;
    pooler_ = task_.request.embed
                  ? EmbeddingPooler(task_.request.pooling, static_cast<int64_t>(task_.request.prompt.size()), n_embd_)
                  : EmbeddingPooler();

    GenerationEvent e;
    e.kind = GenerationEvent::Kind::started;
    e.index = task_.request.index;
    e.slot = id_;
    task_.stream->push(std::move(e));
    report_progress(now);
}

Timings Slot::timings_at(SteadyClock::time_point now) const {
    Timings t;
    t.cache_n = n_cached_prompt_;
    t.prompt_n = static_cast<int64_t>(task_.request.prompt.size()) - n_cached_prompt_;
    t.prompt_ms = ms_between(t_start_, t_first_);
    t.predicted_n = n_decoded_;
    t.predicted_ms = std::max(1e-3, ms_between(t_first_, now));
    t.draft_n = draft_n_;
    t.draft_n_accepted = draft_accepted_;
    return t;
}

std::vector<int32_t> Slot::draft(Drafter& drafter, int64_t room) const {
    const GenerationRequest& rq = task_.request;
    if (state_ != SlotState::generating) return {};
    // The prompt goes into what the guesses are drawn from even when this
    // request guesses nothing (ngram-mod's pool serves the other requests too).
    drafter.start(id_, task_.id, cached_);
    if (rq.spec_n_max <= 0) return {};
    // Leave the pending token's cell and one more (the generation stops one short of
    // the context, see sample()); a guess past n_predict could never be kept.
    int64_t n_max = std::min({rq.spec_n_max, room, n_ctx_ - static_cast<int64_t>(cached_.size()) - 2});
    if (rq.n_predict >= 0) n_max = std::min(n_max, rq.n_predict - n_decoded_ - 1);
    if (n_max <= 0 || n_max < rq.spec_n_min) return {};
    std::vector<int32_t> guess = drafter.draft(id_, task_.id, cached_, pending_, n_max);
    if (static_cast<int64_t>(guess.size()) < std::max<int64_t>(1, rq.spec_n_min)) return {};
    return guess;
}

void Slot::report_progress(SteadyClock::time_point now) {
    const GenerationRequest& rq = task_.request;
    if (!rq.return_progress || rq.embed) return;
    GenerationEvent e;
    e.kind = GenerationEvent::Kind::progress;
    e.index = rq.index;
    e.slot = id_;
    e.n_prompt = static_cast<int64_t>(rq.prompt.size());
    e.progress = {e.n_prompt, n_cached_prompt_, n_prompt_done_, ms_between(t_start_, now)};
    task_.stream->push(std::move(e));
}

std::span<const int32_t> Slot::prompt_left() const {
    const auto& p = task_.request.prompt;
    return std::span<const int32_t>(p).subspan(static_cast<size_t>(n_prompt_done_));
}

void Slot::prompt_evaluated(int64_t n, SteadyClock::time_point now) {
    const auto& p = task_.request.prompt;
    cached_.insert(cached_.end(), p.begin() + n_prompt_done_, p.begin() + n_prompt_done_ + n);
    n_prompt_done_ += n;
    report_progress(now);
}

// After each token: whether a <think> block is open (the prompt opened it, or
// the answer starts with one), counting its tokens until its "</think>".
void Slot::track_reasoning(size_t old_size) {
    if (reasoning_over_) return;
    static constexpr std::string_view kOpen = "<think>", kClose = "</think>";
    if (!in_reasoning_) {
        const size_t start = text_.find_first_not_of(" \t\r\n");
        if (start == std::string::npos) return;
        const std::string_view head = std::string_view(text_).substr(start, kOpen.size());
        if (head == kOpen)
            in_reasoning_ = true;
        else if (kOpen.substr(0, head.size()) != head)
            reasoning_over_ = true;  // the answer does not think
        return;                      // the opening marker's tokens do not count
    }
    // Only where the new text could complete the marker: the whole text each token would be quadratic.
    if (text_.find(kClose, old_size > kClose.size() ? old_size - kClose.size() : 0) != std::string::npos) {
        in_reasoning_ = false;
        reasoning_over_ = true;
        return;
    }
    ++reasoning_tokens_;
}

bool Slot::sample(std::span<const float> logits, SteadyClock::time_point now) {
    const GenerationRequest& rq = task_.request;
    Sampler& sampler = *task_.sampler;
    const size_t n_out = static_cast<size_t>(n_decoded_);
    int32_t tok;
    // The thinking budget is spent, or the client asked to stop thinking: the block's
    // closing tokens, then sampling again.
    if (in_reasoning_ && forced_.empty()) {
        const bool spent = rq.reasoning_budget >= 0 && reasoning_tokens_ >= rq.reasoning_budget;
        const bool asked = rq.reasoning_control && task_.stream->reasoning_end_requested();
        if (spent || asked) forced_ = rq.reasoning_close;
    }
    if (forced_pos_ < forced_.size())
        tok = forced_[forced_pos_++];
    else if (n_out < rq.replay.size())
        tok = rq.replay[n_out];
    else if (grammar_)
        tok = sample_with_grammar(sampler, logits, *grammar_, *rq.grammar->pieces, *tokenizer_, grammar_scratch_);
    else
        tok = sampler.sample(logits);
    if (grammar_ && !tokenizer_->is_eog(tok)) grammar_->accept((*rq.grammar->pieces)[tok]);

    std::optional<TokenProbability> probs;
    if (rq.sampling.n_probs > 0) {
        TokenProbability p;
        p.token = tok;
        const size_t n = static_cast<size_t>(rq.sampling.n_probs);
        if (rq.post_sampling_probs) {
            auto top = sampler.post_sampling_probs(n);
            p.top.assign(top.begin(), top.end());
            p.prob = sampler.sampled_prob();
        } else {
            p.prob = raw_token_probs(logits, tok, n, probs_scratch_);
            p.top = probs_scratch_;
        }
        probs = std::move(p);
    }
    sampler.accept(tok);
    if (state_ == SlotState::prefilling) {
        state_ = SlotState::generating;
        t_first_ = now;
    }
    ++n_decoded_;

    const bool eog = !rq.ignore_eos && tokenizer_->is_eog(tok);
    const size_t old_size = text_.size();
    text_ += eog ? detok_->flush() : detok_->push(tok);
    track_reasoning(old_size);
    if (!eog) start_lazy_grammar();
    auto scan = stops_.scan(text_, searched_);
    searched_ = text_.size();
    if (scan.match_at) {
        text_.resize(*scan.match_at);
        emit_token(tok, text_.substr(sent_), std::move(probs), now);
        finish(StopType::word, scan.word, false, now);
        return true;
    }

    StopType stop = StopType::none;
    bool truncated = false;
    const bool cut = cut_underindented_line();
    const size_t end = std::max(sent_, std::min(scan.safe_end, text_.size()));
    // The time rule looks at a newline in the text this token sends, as llama-server does.
    const bool late = rq.t_max_predict_ms > 0 && text_.find('\n', sent_) < end &&
                      ms_between(t_first_, now) > static_cast<double>(rq.t_max_predict_ms);
    if (eog) {
        stop = StopType::eos;
    } else if (rq.n_predict >= 0 && n_decoded_ >= rq.n_predict) {
        stop = StopType::limit;
    } else if (!context_shift_ && static_cast<int64_t>(cached_.size()) + 1 >= n_ctx_) {
        stop = StopType::limit;  // the slot's context is full: nothing is dropped to go on
        truncated = true;
    } else if (cut || late) {
        stop = StopType::limit;
    }
    if (stop == StopType::none) {
        emit_token(tok, text_.substr(sent_, end - sent_), std::move(probs), now);
        sent_ = end;
        pending_ = tok;
        return false;
    }
    if (!eog && !cut) {
        text_ += detok_->flush();
        scan = stops_.scan(text_, searched_);
        if (scan.match_at) {
            text_.resize(*scan.match_at);
            emit_token(tok, text_.substr(sent_), std::move(probs), now);
            finish(StopType::word, scan.word, false, now);
            return true;
        }
    }
    emit_token(tok, text_.substr(sent_), std::move(probs), now);
    finish(stop, "", truncated, now);
    return true;
}

// A lazy grammar starts at its first trigger past the reasoning: the text
// from the trigger on is fed to it (text after the trigger in the same token
// included), and it constrains every token after. Text it cannot read (the
// model wrote the marker in prose) leaves the output unconstrained, as before.
void Slot::start_lazy_grammar() {
    const GrammarConstraint* g = task_.request.grammar.get();
    if (!g || g->triggers.empty() || grammar_ || trigger_searched_ == std::string::npos) return;
    // The floor is found once; until then each token's search goes on where the last one stopped.
    if (trigger_floor_ == std::string::npos) {
        trigger_floor_ = trigger_floor(*g, text_, close_searched_);
        if (trigger_floor_ == std::string::npos) {
            close_searched_ = text_.size() > 8 ? text_.size() - 8 : 0;  // "</think>" may straddle the end
            return;
        }
    }
    const size_t floor = trigger_floor_;
    size_t from = std::max(floor, trigger_searched_), at = std::string::npos;
    for (const std::string& t : g->triggers) at = std::min(at, text_.find(t, from));
    if (at == std::string::npos) {
        size_t longest = 0;
        for (const std::string& t : g->triggers) longest = std::max(longest, t.size());
        trigger_searched_ = text_.size() > longest ? std::max(from, text_.size() - longest + 1) : from;
        return;
    }
    auto matcher = std::make_unique<GrammarMatcher>(g->grammar);
    if (matcher->accept(std::string_view(text_).substr(at)))
        grammar_ = std::move(matcher);
    else
        trigger_searched_ = std::string::npos;  // not a call after all: no grammar for this answer
}

// n_indent (llama-server's rule for code completion): once the text has had
// a newline, the line after the last newline seen is checked when its first
// other character arrives; indented by fewer than n_indent spaces or tabs, the
// text is cut before that character. The newline mark then moves on by one
// line per token, as llama-server's does.
bool Slot::cut_underindented_line() {
    const int64_t want = task_.request.n_indent;
    if (want <= 0 || !has_new_line_) return false;
    bool cut = false;
    if (last_nl_pos_ > 0) {
        size_t pos = last_nl_pos_;
        int64_t indent = 0;
        while (pos < text_.size() && (text_[pos] == ' ' || text_[pos] == '\t')) ++indent, ++pos;
        if (pos < text_.size() && indent < want) {
            text_.resize(std::max(pos, sent_));  // what was already sent stays sent
            cut = true;
        }
    }
    if (const size_t nl = text_.find('\n', last_nl_pos_); nl != std::string::npos) last_nl_pos_ = nl + 1;
    return cut;
}

void Slot::discarded(int64_t first, int64_t n) {
    cached_.erase(cached_.begin() + first, cached_.begin() + first + n);
    shifted_ = true;
}

void Slot::emit_token(int32_t token, std::string text, std::optional<TokenProbability> probs,
                      SteadyClock::time_point now) {
    if (text.find('\n') != std::string::npos) has_new_line_ = true;
    sent_ = std::max(sent_, std::min(text_.size(), sent_ + text.size()));
    GenerationEvent e;
    e.kind = GenerationEvent::Kind::token;
    e.index = task_.request.index;
    e.slot = id_;
    e.token = token;
    e.text = std::move(text);
    e.probs = std::move(probs);
    e.n_prompt = static_cast<int64_t>(task_.request.prompt.size());
    e.timings = timings_at(now);
    task_.stream->push(std::move(e));
}

void Slot::finish(StopType stop_type, std::string word, bool truncated, SteadyClock::time_point now) {
    const auto& rq = task_.request;
    timings_ = timings_at(now);

    GenerationEvent e;
    e.kind = GenerationEvent::Kind::done;
    e.index = rq.index;
    e.slot = id_;
    e.result.stop_type = stop_type;
    e.result.stopping_word = std::move(word);
    e.result.truncated = truncated || shifted_;  // a shifted context lost tokens as well
    e.result.n_prompt = static_cast<int64_t>(rq.prompt.size());
    e.result.tokens_cached = static_cast<int64_t>(cached_.size());
    e.result.slot = id_;
    e.result.timings = timings_;
    task_.stream->push(std::move(e));
    finish_idle(now);
}

void Slot::finish_embedding(SteadyClock::time_point now) {
    const auto& rq = task_.request;
    timings_.cache_n = n_cached_prompt_;
    timings_.prompt_n = static_cast<int64_t>(rq.prompt.size()) - n_cached_prompt_;
    timings_.prompt_ms = ms_between(t_start_, now);

    GenerationEvent e;
    e.kind = GenerationEvent::Kind::done;
    e.index = rq.index;
    e.slot = id_;
    e.result.n_prompt = static_cast<int64_t>(rq.prompt.size());
    e.result.tokens_cached = static_cast<int64_t>(cached_.size());
    e.result.slot = id_;
    e.result.timings = timings_;
    e.result.embedding = pooler_.result(rq.embd_normalize);
    task_.stream->push(std::move(e));
    pooler_ = EmbeddingPooler();
    finish_idle(now);
}

void Slot::fail(int status, const std::string& type, const std::string& message, SteadyClock::time_point now) {
    if (task_.stream) {
        GenerationEvent e;
        e.kind = GenerationEvent::Kind::error;
        e.index = task_.request.index;
        e.slot = id_;
        e.status = status;
        e.error_type = type;
        e.message = message;
        task_.stream->push(std::move(e));
    }
    finish_idle(now);
}

void Slot::finish_idle(SteadyClock::time_point now) {
    state_ = SlotState::idle;
    task_.stream.reset();
    task_.sampler.reset();
    task_.request.prompt.clear();
    task_.request.prompt.shrink_to_fit();
    detok_.reset();
    pending_ = -1;
    last_used_ = now;
}

SlotInfo Slot::info() const {
    SlotInfo s;
    s.id = id_;
    s.n_ctx = n_ctx_;
    s.state = state_;
    s.has_task = has_task_;
    s.id_task = last_task_id_;
    s.n_cached = static_cast<int64_t>(cached_.size());
    if (!has_task_) return s;
    s.params = last_params_;
    s.n_prompt_tokens = state_ == SlotState::idle ? timings_.cache_n + timings_.prompt_n
                                                  : static_cast<int64_t>(task_.request.prompt.size());
    s.n_prompt_tokens_cache = n_cached_prompt_;
    s.n_prompt_tokens_processed = n_prompt_done_ - n_cached_prompt_;
    s.n_decoded = n_decoded_;
    s.n_remain = last_params_.n_predict < 0 ? -1 : std::max<int64_t>(0, last_params_.n_predict - n_decoded_);
    s.has_new_line = has_new_line_;
    return s;
}

}  // namespace moeserve
