#include "server/completion_response.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <string_view>

namespace moeserve {

std::string random_id(const char* prefix) {
    static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::string id = prefix;
    for (int i = 0; i < 32; ++i) id += kChars[rng() % (sizeof(kChars) - 1)];
    return id;
}

namespace {

// The longest prefix of s that is valid UTF-8.
std::string valid_utf8_prefix(const std::string& s) {
    size_t i = 0, ok = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i + len > s.size()) break;
        bool good = true;
        for (size_t k = 1; k < len; ++k) good &= (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
        if (!good) break;
        i += len;
        ok = i;
    }
    return s.substr(0, ok);
}

double per(double a, double b) {
    return b == 0 ? std::numeric_limits<double>::quiet_NaN() : a / b;
}

float logprob(float p) {
    return p > 0 ? std::log(p) : -3.4028235e38f;
}

// Whether a chat answer has any structure to read: tool calls, or reasoning
// to split off. Otherwise its text is the content as generated.
bool needs_parsing(const ChatSyntax& s) {
    if (s.parse_tool_calls) return true;
    // reasoning_format none still gives back the <think> the prompt opened.
    if (s.reasoning_format == ReasoningFormat::None) return !s.forced_reasoning_prefix.empty();
    return !s.forced_reasoning_prefix.empty() || s.model_may_think;
}

// response_fields: each path's value, under the path as its key; paths that
// name nothing are left out (llama-server's json_get_nested_values).
json selected_fields(const json& object, const std::vector<std::string>& paths) {
    json out = json::object();
    for (const std::string& path : paths) {
        const json* at = &object;
        size_t from = 0;
        for (;;) {
            const size_t slash = path.find('/', from);
            const std::string key = path.substr(from, slash == std::string::npos ? std::string::npos : slash - from);
            if (!at->is_object() || !at->contains(key)) {
                at = nullptr;
                break;
            }
            at = &(*at)[key];
            if (slash == std::string::npos) break;
            from = slash + 1;
        }
        if (at) out[path] = *at;
    }
    return out;
}

}  // namespace

// llama-server: "stop" for an end-of-generation token or a stop string,
// "length" for everything else (limits, and an empty prompt's empty answer).
const char* finish_reason(StopType stop) {
    return stop == StopType::eos || stop == StopType::word ? "stop" : "length";
}

json timings_json(const Timings& t) {
    json out{{"cache_n", t.cache_n},
             {"prompt_n", t.prompt_n},
             {"prompt_ms", t.prompt_ms},
             {"prompt_per_token_ms", per(t.prompt_ms, static_cast<double>(t.prompt_n))},
             {"prompt_per_second", per(1000.0 * static_cast<double>(t.prompt_n), t.prompt_ms)},
             {"predicted_n", t.predicted_n},
             {"predicted_ms", t.predicted_ms},
             {"predicted_per_token_ms", per(t.predicted_ms, static_cast<double>(t.predicted_n))},
             {"predicted_per_second", per(1000.0 * static_cast<double>(t.predicted_n), t.predicted_ms)}};
    if (t.draft_n > 0) {  // as llama-server: only when something was guessed
        out["draft_n"] = t.draft_n;
        out["draft_n_accepted"] = t.draft_n_accepted;
    }
    return out;
}

CompletionResponse::CompletionResponse(const CompletionCall& call, const ServedModel& model)
    : model_(model), id_(random_id("chatcmpl-")) {
    created_ =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    call_.kind = call.kind;
    call_.stream = call.stream;
    call_.include_usage = call.include_usage;
    call_.logprobs = call.logprobs;
    call_.return_tokens = call.return_tokens;
    call_.timings_per_token = call.timings_per_token;
    call_.prompt_text = call.prompt_text;
    call_.response_fields = call.response_fields;
    for (const auto& rq : call.requests) {
        GenerationRequest copy = rq;
        copy.prompt.clear();
        call_.requests.push_back(std::move(copy));
    }
    call_.chat_syntax = call.chat_syntax;
    call_.parallel_tool_calls = call.parallel_tool_calls;
    choices_.resize(call.requests.size());
    if (call_.kind == ApiKind::chat && call_.stream && needs_parsing(call_.chat_syntax))
        for (auto& c : choices_) c.parser = std::make_unique<ChatStreamParser>(call_.chat_syntax);
}

json CompletionResponse::role_chunk(int index) const {
    json role = chunk_base("chat.completion.chunk");
    role["choices"].push_back(
        {{"finish_reason", nullptr}, {"index", index}, {"delta", {{"role", "assistant"}, {"content", nullptr}}}});
    return role;
}

void CompletionResponse::append_delta_chunks(Choice& c, int index, const std::vector<ChatDelta>& deltas,
                                             const std::vector<TokenProbability>& probs, std::vector<json>& out) {
    if (!c.role_sent) {
        out.push_back(role_chunk(index));
        c.role_sent = true;
    }
    bool probs_sent = probs.empty();
    auto emit = [&](json delta) {
        json ch = chunk_base("chat.completion.chunk");
        json choice = {{"finish_reason", nullptr}, {"index", index}, {"delta", std::move(delta)}};
        if (!probs_sent) choice["logprobs"] = {{"content", probs_json(probs)}};
        probs_sent = true;
        ch["choices"].push_back(std::move(choice));
        out.push_back(std::move(ch));
    };
    for (const ChatDelta& d : deltas) {
        const bool tool = d.kind == ChatDelta::Kind::ToolCallStart || d.kind == ChatDelta::Kind::ToolCallArguments;
        if (tool && d.tool_index > 0 && !call_.parallel_tool_calls) continue;
        emit(d.to_json());
    }
    // A token whose text is held back still reports its probabilities.
    if (!probs_sent) emit(json::object());
}

ChatMessage CompletionResponse::message_of(const Choice& c) const {
    ChatMessage m;
    if (c.parser)
        m = c.parser->message();
    else if (needs_parsing(call_.chat_syntax))
        m = parse_chat_output(c.text, call_.chat_syntax);
    else
        m.content = c.text;
    if (!call_.parallel_tool_calls && m.tool_calls.size() > 1) m.tool_calls.resize(1);
    return m;
}

// "tool_calls" when the answer ended normally with calls in it; a cut-off
// answer is "length" whatever it holds.
const char* CompletionResponse::chat_finish_reason(const Choice& c, const ChatMessage& m) const {
    if (std::string_view(finish_reason(c.result.stop_type)) == "length") return "length";
    return m.tool_calls.empty() ? "stop" : "tool_calls";
}

json CompletionResponse::chunk_base(const char* object) const {
    return json{{"choices", json::array()},         {"created", created_}, {"id", id_}, {"model", model_.name()},
                {"system_fingerprint", "moeserve"}, {"object", object}};
}

json CompletionResponse::probs_json(const std::vector<TokenProbability>& probs) const {
    const bool post = !call_.requests.empty() && call_.requests.front().post_sampling_probs;
    const Tokenizer& tok = model_.tokenizer();
    auto entry = [&](int32_t id, float p) {
        const std::string piece = tok.token_to_piece(id, true);
        json bytes = json::array();
        for (unsigned char c : piece) bytes.push_back(static_cast<int>(c));
        json e = {{"id", id}, {"token", valid_utf8_prefix(piece)}, {"bytes", bytes}};
        if (post)
            e["prob"] = p;
        else
            e["logprob"] = logprob(p);
        return e;
    };
    json out = json::array();
    for (const auto& p : probs) {
        json e = entry(p.token, p.prob);
        json top = json::array();
        for (const auto& t : p.top)
            if (!post || t.prob > 0) top.push_back(entry(t.token, t.prob));
        e[post ? "top_probs" : "top_logprobs"] = top;
        out.push_back(std::move(e));
    }
    return out;
}

int64_t CompletionResponse::prompt_tokens() const {
    int64_t n = 0;
    for (const auto& c : choices_) n += c.result.n_prompt;
    return n;
}

int64_t CompletionResponse::completion_tokens() const {
    int64_t n = 0;
    for (const auto& c : choices_) n += c.result.timings.predicted_n;
    return n;
}

json CompletionResponse::usage() const {
    int64_t cached = 0;
    for (const auto& c : choices_) cached += c.result.timings.cache_n;
    return json{{"completion_tokens", completion_tokens()},
                {"prompt_tokens", prompt_tokens()},
                {"total_tokens", prompt_tokens() + completion_tokens()},
                {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json CompletionResponse::timings() const {
    return timings_json(choices_.front().result.timings);
}

json CompletionResponse::native_object(const Choice& c, bool final_stream) const {
    const GenerationRequest& rq = call_.requests[static_cast<size_t>(&c - choices_.data())];
    json o = {{"index", rq.index},
              {"content", final_stream ? std::string() : c.text},
              {"tokens", call_.return_tokens && !final_stream ? json(c.tokens) : json::array()},
              {"id_slot", c.slot},
              {"stop", true},
              {"model", model_.name()},
              {"tokens_predicted", c.result.timings.predicted_n},
              {"tokens_evaluated", c.result.n_prompt},
              {"generation_settings", generation_settings(rq, model_)},
              {"prompt", call_.prompt_text},
              {"has_new_line", c.text.find('\n') != std::string::npos},
              {"truncated", c.result.truncated},
              {"stop_type", stop_type_name(c.result.stop_type)},
              {"stopping_word", c.result.stopping_word},
              {"tokens_cached", c.result.tokens_cached},
              {"timings", timings_json(c.result.timings)}};
    if (rq.sampling.n_probs > 0 && !final_stream) o["completion_probabilities"] = probs_json(c.probs);
    return call_.response_fields.empty() ? o : selected_fields(o, call_.response_fields);
}

std::vector<json> CompletionResponse::on_event(const GenerationEvent& e) {
    std::vector<json> out;
    if (e.index < 0 || static_cast<size_t>(e.index) >= choices_.size()) return out;
    Choice& c = choices_[static_cast<size_t>(e.index)];
    if (e.kind == GenerationEvent::Kind::started) {
        c.slot = e.slot;
        return out;
    }
    if (e.kind == GenerationEvent::Kind::progress) {
        if (call_.stream) out.push_back(progress_chunk(e));
        return out;
    }
    if (e.kind == GenerationEvent::Kind::token) {
        c.text += e.text;
        c.tokens.push_back(e.token);
        if (e.probs) c.probs.push_back(*e.probs);
        if (!call_.stream) return out;
        const bool with_probs = call_.logprobs && e.probs;
        if (e.text.empty() && !with_probs) return out;
        const size_t first_new = out.size();
        std::vector<TokenProbability> one;
        if (with_probs) one.push_back(*e.probs);
        switch (call_.kind) {
            case ApiKind::chat: {
                std::vector<ChatDelta> deltas;
                if (c.parser) {
                    deltas = c.parser->push(e.text);
                } else if (!e.text.empty()) {
                    deltas.emplace_back();
                    deltas.back().text = e.text;
                }
                append_delta_chunks(c, e.index, deltas, one, out);
                break;
            }
            case ApiKind::completions: {
                json ch = chunk_base("text_completion");
                ch["choices"].push_back({{"text", e.text},
                                         {"index", e.index},
                                         {"logprobs", with_probs ? json{{"content", probs_json(one)}} : json()},
                                         {"finish_reason", nullptr}});
                out.push_back(std::move(ch));
                break;
            }
            case ApiKind::native: {
                json ch = {{"index", e.index},
                           {"content", e.text},
                           {"tokens", json::array({e.token})},
                           {"stop", false},
                           {"id_slot", -1},
                           {"tokens_predicted", static_cast<int64_t>(c.tokens.size())},
                           {"tokens_evaluated", e.n_prompt}};
                if (with_probs) ch["completion_probabilities"] = probs_json(one);
                out.push_back(std::move(ch));
                break;
            }
        }
        // timings_per_token: the timings so far ride on the token's last chunk.
        if (call_.timings_per_token && out.size() > first_new) out.back()["timings"] = timings_json(e.timings);
        return out;
    }
    if (e.kind != GenerationEvent::Kind::done || c.done) return out;
    c.done = true;
    c.result = e.result;
    c.slot = e.result.slot;
    ++n_done_;
    if (!call_.stream) return out;
    const bool last = all_done();
    switch (call_.kind) {
        case ApiKind::chat: {
            append_delta_chunks(c, e.index, c.parser ? c.parser->finish() : std::vector<ChatDelta>{}, {}, out);
            json ch = chunk_base("chat.completion.chunk");
            ch["choices"].push_back({{"finish_reason", chat_finish_reason(c, message_of(c))},
                                     {"index", e.index},
                                     {"delta", json::object()}});
            if (last && !call_.include_usage) ch["timings"] = timings();
            out.push_back(std::move(ch));
            break;
        }
        case ApiKind::completions: {
            json ch = chunk_base("text_completion");
            ch["choices"].push_back({{"text", ""},
                                     {"index", e.index},
                                     {"logprobs", nullptr},
                                     {"finish_reason", finish_reason(e.result.stop_type)}});
            ch["usage"] = usage();
            if (last) ch["timings"] = timings();
            out.push_back(std::move(ch));
            break;
        }
        case ApiKind::native:
            out.push_back(native_object(c, true));
            break;
    }
    return out;
}

// A prompt_progress event in the stream's own shape: a role chunk for chat
// (llama-server sends one per progress event), an empty text for
// /v1/completions, an empty partial result for /completion.
json CompletionResponse::progress_chunk(const GenerationEvent& e) const {
    const PromptProgress& p = e.progress;
    const json progress = {{"total", p.total}, {"cache", p.cache}, {"processed", p.processed}, {"time_ms", p.time_ms}};
    json ch;
    switch (call_.kind) {
        case ApiKind::chat:
            ch = role_chunk(e.index);
            break;
        case ApiKind::completions:
            ch = chunk_base("text_completion");
            ch["choices"].push_back(
                {{"text", ""}, {"index", e.index}, {"logprobs", nullptr}, {"finish_reason", nullptr}});
            break;
        case ApiKind::native:
            ch = {{"index", e.index}, {"content", ""},         {"tokens", json::array()},       {"stop", false},
                  {"id_slot", -1},    {"tokens_predicted", 0}, {"tokens_evaluated", e.n_prompt}};
            break;
    }
    ch["prompt_progress"] = progress;
    return ch;
}

std::vector<json> CompletionResponse::closing_chunks() const {
    std::vector<json> out;
    if (call_.kind == ApiKind::chat && call_.include_usage) {
        json ch = chunk_base("chat.completion.chunk");
        ch["usage"] = usage();
        ch["timings"] = timings();
        out.push_back(std::move(ch));
    }
    return out;
}

json CompletionResponse::final_body() const {
    if (call_.kind == ApiKind::native) {
        if (choices_.size() == 1) return native_object(choices_.front(), false);
        json arr = json::array();
        for (const auto& c : choices_) arr.push_back(native_object(c, false));
        return arr;
    }
    const bool chat = call_.kind == ApiKind::chat;
    json body = chunk_base(chat ? "chat.completion" : "text_completion");
    for (size_t i = 0; i < choices_.size(); ++i) {
        const Choice& c = choices_[i];
        json choice;
        if (chat) {
            const ChatMessage m = message_of(c);
            choice = {{"finish_reason", chat_finish_reason(c, m)}, {"index", i}, {"message", m.to_json()}};
            if (call_.logprobs) choice["logprobs"] = {{"content", probs_json(c.probs)}};
        } else {
            choice = {{"text", c.text},
                      {"index", i},
                      {"logprobs", call_.logprobs ? json{{"content", probs_json(c.probs)}} : json()},
                      {"finish_reason", finish_reason(c.result.stop_type)}};
        }
        body["choices"].push_back(std::move(choice));
    }
    body["usage"] = usage();
    body["timings"] = timings();
    return body;
}

}  // namespace moeserve
