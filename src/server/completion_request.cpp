#include "server/completion_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>

#include "chat/tool_call_grammar.h"
#include "grammar/json_schema_grammar.h"
#include "server/chat_messages.h"
#include "server/json_fields.h"

namespace moeserve {
namespace {

// grammar (GBNF), json_schema, or OpenAI's response_format: the grammar the
// output must follow, or null.
std::shared_ptr<const GrammarConstraint> output_grammar(const json& body, const ServedModel& model) {
    std::string gbnf;
    const char* field = nullptr;
    auto from_schema = [&](const json& schema, const char* name) {
        field = name;
        try {
            gbnf = json_schema_to_gbnf(schema);
        } catch (const GrammarError& e) {
            throw invalid_request(fmt::format("Field '{}': {}", name, e.what()));
        }
    };
    const bool has_grammar = body.contains("grammar") && !body["grammar"].is_null();
    const bool has_schema = body.contains("json_schema") && !body["json_schema"].is_null();
    if (has_grammar && has_schema)
        throw invalid_request("Either \"json_schema\" or \"grammar\" can be specified, but not both");
    if (has_grammar) {
        if (!body["grammar"].is_string()) throw invalid_request("Field 'grammar': expected a string");
        gbnf = body["grammar"].get<std::string>();
        field = "grammar";
    } else if (has_schema) {
        from_schema(body["json_schema"], "json_schema");
    } else if (auto rf = body.find("response_format"); rf != body.end() && !rf->is_null()) {
        if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
            throw invalid_request("Field 'response_format': expected an object with a 'type'");
        const std::string type = (*rf)["type"].get<std::string>();
        if (type == "json_object") {
            from_schema(rf->contains("schema") ? (*rf)["schema"] : json{{"type", "object"}}, "response_format.schema");
        } else if (type == "json_schema") {
            const json js = rf->value("json_schema", json::object());
            if (!js.is_object() || !js.contains("schema"))
                throw invalid_request("Field 'response_format.json_schema.schema' is required for type json_schema");
            from_schema(js["schema"], "response_format.json_schema.schema");
        } else if (type != "text") {
            throw invalid_request(fmt::format(
                "Field 'response_format.type': expected text, json_object or json_schema but got '{}'", type));
        }
    }
    if (!field || gbnf.empty()) return nullptr;
    auto c = std::make_shared<GrammarConstraint>();
    try {
        c->grammar = std::make_shared<const Grammar>(parse_gbnf(gbnf));
    } catch (const GrammarError& e) {
        throw invalid_request(fmt::format("Field '{}': {}", field, e.what()));
    }
    c->pieces = model.token_pieces();
    return c;
}

// The grammar of the answer's tool calls (tool_call_grammar.h): lazy under
// tool_choice "auto", from the first token under "required"; none without
// tools, for tool_choice "none", or for a template with no call syntax.
std::shared_ptr<const GrammarConstraint> tool_call_constraint(const json& body, const CompletionCall& call,
                                                              const ServedModel& model) {
    const ChatSyntax& syn = call.chat_syntax;
    if (!syn.parse_tool_calls || syn.tool_format == ToolCallFormat::None) return nullptr;
    ToolCallGrammarOptions o;
    o.format = syn.tool_format;
    o.parallel = call.parallel_tool_calls;
    const auto choice = body.find("tool_choice");
    o.required = choice != body.end() && choice->is_string() && *choice == "required";
    o.lead = !syn.forced_reasoning_prefix.empty() ? ReasoningLead::Open
             : syn.model_may_think                ? ReasoningLead::Optional
                                                  : ReasoningLead::None;
    // An object naming a function ({"type":"function","function":{"name":N}}, or the
    // Anthropic form converted to it): that function must be called, as OpenAI defines it.
    // (llama-server reads such an object as "auto"; answering what was asked is the improvement.)
    nlohmann::ordered_json tools = syn.tools;
    if (choice != body.end() && choice->is_object()) {
        const json fn = choice->value("function", json::object());
        const std::string name = fn.is_object() ? fn.value("name", std::string()) : std::string();
        if (!name.empty()) {
            nlohmann::ordered_json only = nlohmann::ordered_json::array();
            for (const auto& t : syn.tools)
                if (t.contains("function") && t["function"].value("name", std::string()) == name) only.push_back(t);
            if (only.empty())
                throw invalid_request(fmt::format("Field 'tool_choice': function '{}' is not one of the tools", name));
            tools = std::move(only);
            o.required = true;
        }
    }
    const ToolCallGrammar g = tool_call_grammar(tools, o);
    if (g.gbnf.empty()) return nullptr;
    auto c = std::make_shared<GrammarConstraint>();
    try {
        c->grammar = std::make_shared<const Grammar>(parse_gbnf(g.gbnf));
    } catch (const GrammarError& e) {  // a tool name or key the grammar cannot spell: answer unconstrained
        std::fprintf(stderr, "srv tool_call_grammar: %s; the answer's tool calls are not constrained\n", e.what());
        return nullptr;
    }
    c->pieces = model.token_pieces();
    if (!o.required) c->triggers = g.triggers;
    c->starts_in_reasoning = !syn.forced_reasoning_prefix.empty();
    c->may_think = syn.model_may_think;
    return c;
}

void set_float(const json& body, const char* name, float& out) {
    if (auto v = float_field(body, name)) out = static_cast<float>(*v);
}
void set_int(const json& body, const char* name, int32_t& out, int64_t lo = INT32_MIN) {
    if (auto v = int_field(body, name)) {
        if (*v < lo || *v > INT32_MAX)
            throw invalid_request(
                fmt::format("Field '{}': Value must be between {} and {} but got {}", name, lo, INT32_MAX, *v));
        out = static_cast<int32_t>(*v);
    }
}

std::vector<LogitBias> parse_logit_bias(const json& v, const ServedModel& model) {
    std::vector<LogitBias> out;
    const auto n_vocab = static_cast<int64_t>(model.tokenizer().n_tokens());
    auto bias_of = [](const json& b) -> float {
        if (b.is_boolean()) {
            if (b.get<bool>()) throw invalid_request("Field 'logit_bias': true is not a bias (use false to ban)");
            return -std::numeric_limits<float>::infinity();
        }
        if (!b.is_number()) throw invalid_request("Field 'logit_bias': each bias must be a number or false");
        return b.get<float>();
    };
    auto add = [&](const json& key, const json& b) {
        const float bias = bias_of(b);
        if (key.is_number_integer()) {
            const int64_t t = key.get<int64_t>();
            if (t < 0 || t >= n_vocab)
                throw invalid_request(fmt::format("Field 'logit_bias': token {} is outside the vocabulary", t));
            out.push_back({static_cast<int32_t>(t), bias});
        } else if (key.is_string()) {
            for (int32_t t : model.tokenizer().tokenize(key.get<std::string>(), false, false)) out.push_back({t, bias});
        } else {
            throw invalid_request("Field 'logit_bias': keys must be token ids or strings");
        }
    };
    if (v.is_object()) {
        for (const auto& [k, b] : v.items()) {
            int64_t id = 0;
            auto [p, ec] = std::from_chars(k.data(), k.data() + k.size(), id);
            if (ec == std::errc() && p == k.data() + k.size())
                add(json(id), b);
            else
                add(json(k), b);
        }
    } else if (v.is_array()) {
        for (const auto& pair : v) {
            if (!pair.is_array() || pair.size() != 2)
                throw invalid_request("Field 'logit_bias': expected [[token, bias], ...] or {\"token\": bias}");
            add(pair[0], pair[1]);
        }
    } else {
        throw invalid_request("Field 'logit_bias': expected an object or an array of pairs");
    }
    return out;
}

// dry_sequence_breakers: a non-empty array of strings, as llama-server requires.
std::vector<std::string> parse_dry_sequence_breakers(const json& v) {
    if (!v.is_array() || v.empty())
        throw invalid_request("Field 'dry_sequence_breakers': expected a non-empty array of strings");
    std::vector<std::string> out;
    for (const auto& e : v) {
        if (!e.is_string())
            throw invalid_request("Field 'dry_sequence_breakers': expected a non-empty array of strings");
        out.push_back(e.get<std::string>());
    }
    return out;
}

// Whether the sampler will run DRY (the same test as Sampler's): only then are the breakers
// worth matching against the vocabulary, a pass over every token.
bool dry_runs(const SamplingParams& sp) {
    const bool listed = std::find(sp.samplers.begin(), sp.samplers.end(), SamplerType::dry) != sp.samplers.end();
    return listed && sp.mirostat == 0 && sp.dry_multiplier != 0.0f && sp.dry_base >= 1.0f && sp.dry_penalty_last_n != 0;
}

std::vector<SamplerType> parse_samplers(const json& v) {
    std::vector<SamplerType> out;
    if (v.is_string()) {
        for (char c : v.get<std::string>()) {
            auto t = sampler_type_from_char(c);
            if (!t) throw invalid_request(fmt::format("Field 'samplers': unknown sampler letter '{}'", c));
            out.push_back(*t);
        }
    } else if (v.is_array()) {
        for (const auto& e : v) {
            if (!e.is_string()) throw invalid_request("Field 'samplers': expected an array of sampler names");
            const std::string name = e.get<std::string>();
            // llama.cpp samplers moeserve does not have: refused by name rather than skipped.
            if (name == "infill" || name == "adaptive_p")
                throw invalid_request(fmt::format(
                    "Field 'samplers': '{}' is not supported by moeserve (it has no infill or adaptive-p sampler)",
                    name));
            auto t = sampler_type_from_name(name);
            if (!t) throw invalid_request(fmt::format("Field 'samplers': unknown sampler '{}'", name));
            out.push_back(*t);
        }
    } else {
        throw invalid_request("Field 'samplers': expected an array of names or a string of letters");
    }
    return out;
}

// One prompt: a string, token ids, or a mix of both.
std::vector<int32_t> prompt_tokens(const json& p, const ServedModel& model, const char* field) {
    if (p.is_string()) return model.tokenize_prompt(p.get<std::string>());
    std::vector<int32_t> out;
    bool first = true;
    for (const auto& e : p) {
        if (e.is_number_integer()) {
            const int64_t t = e.get<int64_t>();
            if (t < 0 || t >= static_cast<int64_t>(model.tokenizer().n_tokens()))
                throw invalid_request("Prompt contains invalid tokens");
            out.push_back(static_cast<int32_t>(t));
        } else if (e.is_string()) {
            // Only the first piece gets BOS, as llama.cpp does.
            auto part = model.tokenizer().tokenize(e.get<std::string>(), first, true);
            out.insert(out.end(), part.begin(), part.end());
        } else {
            throw invalid_request(fmt::format("Field '{}': a prompt array holds token ids and strings", field));
        }
        first = false;
    }
    return out;
}

bool is_single_prompt_array(const json& p) {
    if (!p.is_array()) return false;
    bool numbers = false;
    for (const auto& e : p) {
        if (e.is_number_integer())
            numbers = true;
        else if (!e.is_string())
            return false;
    }
    return numbers || p.empty();
}

std::vector<std::vector<int32_t>> completion_prompts(const json& body, const ServedModel& model) {
    auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) throw invalid_request("key 'prompt' not found");
    return parse_prompts(*it, model, "prompt");
}

// Where a hybrid model's recurrent state is worth keeping (spec server-behaviour
// §6.6): the prompt positions at the start and end of the last user message's
// content (turn boundaries) and at the start of every user or tool message's
// content (message starts). A byte position of the rendered text is the number
// of prompt tokens whose text ends at or before it (a token that spans it is
// after it). The tokens' texts are added up rather than the text tokenized
// again: a long conversation costs microseconds, not a second tokenization. A
// vocabulary whose pieces do not add up to the text gives no positions; the
// prompt's last tokens have snapshots of their own (the prompt's end).
void set_snapshot_positions(const RenderedChatRequest& chat, const std::vector<int32_t>& prompt,
                            const ServedModel& model, GenerationRequest& rq) {
    const Tokenizer& tok = model.tokenizer();
    const Vocab& v = tok.vocab();
    size_t first = 0;  // a BOS the tokenizer added has no text (render_chat removed the template's)
    if (v.add_bos() && !prompt.empty() && prompt[0] == v.special().bos) first = 1;
    std::vector<size_t> ends;  // ends[i]: where token first + i ends in the text
    ends.reserve(prompt.size());
    size_t at = 0;
    for (size_t i = first; i < prompt.size(); ++i) {
        at += tok.token_to_piece(prompt[i], /*render_special=*/true, i == first && v.add_space_prefix()).size();
        ends.push_back(at);
    }
    if (at != chat.text.size()) return;
    auto add = [&](std::vector<int64_t>& out, size_t bytes) {
        const auto n = static_cast<int64_t>(first + (std::upper_bound(ends.begin(), ends.end(), bytes) - ends.begin()));
        if (n > 0 && n + 1 < static_cast<int64_t>(prompt.size()) && (out.empty() || n > out.back())) out.push_back(n);
    };
    if (chat.last_user_span)
        for (size_t bytes : {chat.last_user_span->first, chat.last_user_span->second}) add(rq.turn_boundaries, bytes);
    for (size_t bytes : chat.message_starts) add(rq.message_starts, bytes);
}

}  // namespace

std::vector<std::vector<int32_t>> parse_prompts(const json& p, const ServedModel& model, const char* field) {
    if (p.is_string() || is_single_prompt_array(p)) return {prompt_tokens(p, model, field)};
    if (!p.is_array())
        throw invalid_request(fmt::format("Field '{}': expected a string, token ids, or an array of prompts", field));
    std::vector<std::vector<int32_t>> out;
    for (const auto& e : p) {
        if (e.is_string() || is_single_prompt_array(e))
            out.push_back(prompt_tokens(e, model, field));
        else if (e.is_object())
            throw invalid_request(
                fmt::format("Field '{}': multimodal prompts need a projector, which this server does not have", field));
        else
            throw invalid_request(
                fmt::format("Field '{}': each prompt must be a string or an array of token ids", field));
    }
    if (out.empty()) throw invalid_request(fmt::format("Field '{}': no prompt given", field));
    return out;
}

CompletionCall parse_completion_call(ApiKind kind, const json& body, const ServedModel& model) {
    const ServerOptions& o = model.options();
    CompletionCall call;
    call.kind = kind;
    call.stream = bool_field(body, "stream").value_or(false);
    if (auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
        if (!so->is_object()) throw invalid_request("Field 'stream_options': expected an object");
        call.include_usage = bool_field(*so, "include_usage").value_or(false);
    }
    call.return_tokens = bool_field(body, "return_tokens").value_or(false);
    call.timings_per_token = bool_field(body, "timings_per_token").value_or(false);
    if (auto fields = strings_field(body, "response_fields")) call.response_fields = *fields;

    GenerationRequest base;
    base.sampling = o.sampling;
    SamplingParams& sp = base.sampling;
    set_float(body, "temperature", sp.temperature);
    set_float(body, "dynatemp_range", sp.dynatemp_range);
    set_float(body, "dynatemp_exponent", sp.dynatemp_exponent);
    set_int(body, "top_k", sp.top_k);
    set_float(body, "top_p", sp.top_p);
    set_float(body, "min_p", sp.min_p);
    set_float(body, "typical_p", sp.typical_p);
    set_float(body, "top_n_sigma", sp.top_n_sigma);
    set_float(body, "xtc_probability", sp.xtc_probability);
    set_float(body, "xtc_threshold", sp.xtc_threshold);
    set_float(body, "repeat_penalty", sp.repeat_penalty);
    set_int(body, "repeat_last_n", sp.repeat_last_n, -1);
    set_float(body, "presence_penalty", sp.presence_penalty);
    set_float(body, "frequency_penalty", sp.frequency_penalty);
    set_int(body, "min_keep", sp.min_keep, 0);
    set_float(body, "dry_multiplier", sp.dry_multiplier);
    set_float(body, "dry_base", sp.dry_base);
    if (sp.dry_base < 1.0f) sp.dry_base = o.sampling.dry_base;  // llama-server: below 1 means the default
    set_int(body, "dry_allowed_length", sp.dry_allowed_length);
    set_int(body, "dry_penalty_last_n", sp.dry_penalty_last_n, -1);
    if (auto b = body.find("dry_sequence_breakers"); b != body.end() && !b->is_null())
        sp.dry_sequence_breakers = parse_dry_sequence_breakers(*b);
    set_int(body, "mirostat", sp.mirostat);
    sp.mirostat = std::clamp(sp.mirostat, 0, 2);  // soft range
    set_float(body, "mirostat_tau", sp.mirostat_tau);
    set_float(body, "mirostat_eta", sp.mirostat_eta);
    if (auto seed = int_field(body, "seed")) {
        if (*seed < -1 || *seed > UINT32_MAX)
            throw invalid_request(
                fmt::format("Field 'seed': Value must be between -1 and {} but got {}", UINT32_MAX, *seed));
        sp.seed = *seed < 0 ? kRandomSeed : static_cast<uint32_t>(*seed);
    }
    if (auto lb = body.find("logit_bias"); lb != body.end() && !lb->is_null())
        sp.logit_bias = parse_logit_bias(*lb, model);
    if (auto s = body.find("samplers"); s != body.end() && !s->is_null()) sp.samplers = parse_samplers(*s);
    sp.dry_breakers = nullptr;
    if (dry_runs(sp)) {
        sp.dry_breakers = std::make_shared<const DrySequenceBreakers>(
            match_dry_sequence_breakers(sp.dry_sequence_breakers, model.tokenizer()));
    }

    // Generation limit: n_predict > max_completion_tokens > max_tokens.
    base.n_predict = o.n_predict;
    for (const char* name : {"max_tokens", "max_completion_tokens", "n_predict"})
        if (auto v = int_field(body, name)) {
            if (*v < -1 || *v > INT32_MAX)
                throw invalid_request(
                    fmt::format("Field '{}': Value must be between -1 and {} but got {}", name, INT32_MAX, *v));
            base.n_predict = *v;
        }
    base.stop = o.reverse_prompts;  // -r, unless the request names its own
    if (auto stop = strings_field(body, "stop")) base.stop = *stop;
    base.ignore_eos = bool_field(body, "ignore_eos").value_or(o.ignore_eos);
    base.cache_prompt = bool_field(body, "cache_prompt").value_or(o.cache_prompt);
    base.n_keep = o.keep;
    base.n_cache_reuse = o.cache_reuse;
    for (const auto& [name, field, lo] :
         {std::tuple{"n_keep", &base.n_keep, int64_t{-1}}, std::tuple{"n_discard", &base.n_discard, int64_t{0}},
          std::tuple{"n_cache_reuse", &base.n_cache_reuse, int64_t{0}},
          std::tuple{"n_indent", &base.n_indent, int64_t{0}},
          std::tuple{"t_max_predict_ms", &base.t_max_predict_ms, int64_t{-1}}})
        if (auto v = int_field(body, name)) {
            if (*v < lo || *v > INT32_MAX)
                throw invalid_request(
                    fmt::format("Field '{}': Value must be between {} and {} but got {}", name, lo, INT32_MAX, *v));
            *field = *v;
        }
    // Speculative decoding: llama-server's flat "speculative.n_max"/"speculative.n_min"
    // keys, clamped as it clamps them (n_min at most n_max, neither below 0), and n_max
    // at most the longest draft the server's kinds make (--spec-draft-n-max for
    // ngram-simple, --spec-ngram-mod-n-max for ngram-mod), which sized the logits
    // buffers; only a server started with --spec-type speculates at all.
    if (o.speculative.enabled) {
        const int64_t most = o.speculative.draft_max();
        int64_t n_max = int_field(body, "speculative.n_max").value_or(most);
        int64_t n_min = int_field(body, "speculative.n_min").value_or(o.speculative.n_min);
        n_max = std::clamp<int64_t>(n_max, 0, most);
        n_min = std::clamp<int64_t>(n_min, 0, n_max);
        base.spec_n_max = n_max;
        base.spec_n_min = n_min;
    }
    base.post_sampling_probs = bool_field(body, "post_sampling_probs").value_or(false);
    base.return_progress = bool_field(body, "return_progress").value_or(false);
    base.grammar = output_grammar(body, model);
    if (auto id = int_field(body, "id_slot")) base.id_slot = static_cast<int>(std::clamp<int64_t>(*id, -2, 1 << 20));
    if (base.id_slot < -1) base.id_slot = -1;

    // Probabilities: n_probs (native); chat: logprobs + top_logprobs; /v1/completions: logprobs as a count.
    int32_t n_probs = 0;
    set_int(body, "n_probs", n_probs, 0);
    if (kind == ApiKind::chat) {
        const bool lp = bool_field(body, "logprobs").value_or(false);
        auto top = int_field(body, "top_logprobs");
        if (top && !lp) throw invalid_request("top_logprobs requires logprobs to be set to true");
        if (lp) {
            if (top && (*top < 0 || *top > 20))
                throw invalid_request(
                    fmt::format("Field 'top_logprobs': Value must be between 0 and 20 but got {}", *top));
            n_probs = top ? static_cast<int32_t>(*top) : 20;
            call.logprobs = true;
            if (n_probs == 0) n_probs = 1;  // the chosen token's own probability is still reported
        }
    } else if (kind == ApiKind::completions) {
        if (auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null()) {
            if (lp->is_boolean()) {
                n_probs = lp->get<bool>() ? 20 : 0;
            } else if (auto v = int_field(body, "logprobs")) {
                if (*v < 0 || *v > 20)
                    throw invalid_request(
                        fmt::format("Field 'logprobs': Value must be between 0 and 20 but got {}", *v));
                n_probs = static_cast<int32_t>(*v);
            }
            call.logprobs = n_probs > 0;
        }
    } else {
        call.logprobs = n_probs > 0;
    }
    sp.n_probs = n_probs;

    std::vector<std::vector<int32_t>> prompts;
    if (kind == ApiKind::chat) {
        RenderedChatRequest cp = render_chat_prompt(body, model, /*locate_last_user=*/model.recurrent());
        prompts.push_back(model.tokenize_prompt(cp.text));
        if (model.recurrent()) set_snapshot_positions(cp, prompts.back(), model, base);
        call.chat_syntax = std::move(cp.syntax);
        call.parallel_tool_calls = cp.parallel_tool_calls;
    } else {
        prompts = completion_prompts(body, model);
    }
    if (kind == ApiKind::native) call.prompt_text = model.tokenizer().detokenize(prompts.front(), true);
    if (kind == ApiKind::chat && !base.grammar) base.grammar = tool_call_constraint(body, call, model);

    // The thinking budget: --reasoning-budget N, or the request's thinking_budget_tokens /
    // reasoning_budget_tokens; when it runs out the slot writes reasoning_budget_message and
    // the closing marker in the template's style (GLM "</think>", the others on lines of their own).
    if (kind == ApiKind::chat) {
        base.reasoning_budget = model.options().reasoning_budget;
        for (const char* name : {"reasoning_budget_tokens", "thinking_budget_tokens"})
            if (auto v = int_field(body, name)) {
                if (*v < -1 || *v > INT32_MAX)
                    throw invalid_request(
                        fmt::format("Field '{}': Value must be between -1 and {} but got {}", name, INT32_MAX, *v));
                base.reasoning_budget = *v;
            }
        // reasoning_control: /v1/chat/completions/control may end the thinking (completion_controls.h).
        const bool control = bool_field(body, "reasoning_control").value_or(false);
        const ChatSyntax& syn = call.chat_syntax;
        const bool thinks = !syn.forced_reasoning_prefix.empty() || syn.model_may_think;
        base.reasoning_control = control && thinks;
        if ((base.reasoning_budget >= 0 || base.reasoning_control) && thinks) {
            base.reasoning_open_at_start = !syn.forced_reasoning_prefix.empty();
            const bool glm_style = syn.forced_reasoning_prefix == "<think>";
            const std::string message = string_field(body, "reasoning_budget_message").value_or("");
            const std::string close = glm_style ? "</think>" : "\n</think>\n\n";
            base.reasoning_close = model.tokenizer().tokenize(message + close, /*add_special=*/false,
                                                              /*parse_special=*/true);
        } else {
            base.reasoning_budget = -1;
        }
    }

    if (auto r = body.find("replay"); r != body.end() && !r->is_null()) {
        if (!model.options().allow_replay)
            throw invalid_request(
                "Field 'replay': forcing the output is for testing; start the server with --allow-replay");
        if (!r->is_string()) throw invalid_request("Field 'replay': expected a string");
        base.replay = model.tokenizer().tokenize(r->get<std::string>(), /*add_special=*/false, /*parse_special=*/true);
        const SpecialTokenIds& sp_ids = model.tokenizer().vocab().special();
        const int32_t end = sp_ids.eot != kNoToken ? sp_ids.eot : sp_ids.eos;
        if (end != kNoToken) base.replay.push_back(end);
    }

    int64_t n = 1;
    if (auto v = int_field(body, "n")) n = *v;
    if (auto v = int_field(body, "n_cmpl")) n = *v;
    if (n < 1 || n > model.layout().n_slots)
        throw invalid_request(fmt::format("Field 'n': Value must be between 1 and {} (the number of slots) but got {}",
                                          model.layout().n_slots, n));
    int index = 0;
    for (auto& p : prompts)
        for (int64_t c = 0; c < n; ++c) {
            GenerationRequest rq = base;
            rq.prompt = p;
            rq.index = index++;
            if (c > 0 && rq.sampling.seed != kRandomSeed) rq.sampling.seed += static_cast<uint32_t>(c);
            call.requests.push_back(std::move(rq));
        }
    return call;
}

json generation_settings(const GenerationRequest& rq, const ServedModel& model) {
    const SamplingParams& s = rq.sampling;
    json samplers = json::array();
    for (auto t : s.samplers) samplers.push_back(std::string(sampler_type_name(t)));
    json bias = json::array();
    for (const auto& b : s.logit_bias) bias.push_back({b.token, b.bias});
    return json{{"n_predict", rq.n_predict},
                {"seed", s.seed},
                {"temperature", s.temperature},
                {"dynatemp_range", s.dynatemp_range},
                {"dynatemp_exponent", s.dynatemp_exponent},
                {"top_k", s.top_k},
                {"top_p", s.top_p},
                {"min_p", s.min_p},
                {"top_n_sigma", s.top_n_sigma},
                {"xtc_probability", s.xtc_probability},
                {"xtc_threshold", s.xtc_threshold},
                {"typical_p", s.typical_p},
                {"repeat_last_n", s.repeat_last_n},
                {"repeat_penalty", s.repeat_penalty},
                {"presence_penalty", s.presence_penalty},
                {"frequency_penalty", s.frequency_penalty},
                {"dry_multiplier", s.dry_multiplier},
                {"dry_base", s.dry_base},
                {"dry_allowed_length", s.dry_allowed_length},
                {"dry_penalty_last_n", s.dry_penalty_last_n},
                {"dry_sequence_breakers", s.dry_sequence_breakers},
                {"mirostat", s.mirostat},
                {"mirostat_tau", s.mirostat_tau},
                {"mirostat_eta", s.mirostat_eta},
                {"stop", rq.stop},
                {"n_keep", rq.n_keep},
                {"n_cache_reuse", rq.n_cache_reuse},
                {"n_discard", rq.n_discard},
                {"n_indent", rq.n_indent},
                {"t_max_predict_ms", rq.t_max_predict_ms},
                {"speculative.n_max", rq.spec_n_max},
                {"speculative.n_min", rq.spec_n_min},
                {"ignore_eos", rq.ignore_eos},
                {"stream", false},
                {"logit_bias", bias},
                {"n_probs", s.n_probs},
                {"min_keep", s.min_keep},
                {"samplers", samplers},
                {"post_sampling_probs", rq.post_sampling_probs},
                {"cache_prompt", rq.cache_prompt},
                {"id_slot", rq.id_slot},
                {"model", model.name()}};
}

}  // namespace moeserve
