#include "server/chat_messages.h"

#include <fmt/format.h>

#include "server/json_fields.h"

namespace moeserve {
namespace {

std::string content_text(const json& content, size_t index) {
    if (content.is_null()) return "";
    if (content.is_string()) return content.get<std::string>();
    if (content.is_array()) {
        std::string out;
        bool first = true;
        for (const auto& part : content) {
            std::string text;
            if (part.is_string()) {
                text = part.get<std::string>();
            } else if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
                       part["text"].is_string()) {
                text = part["text"].get<std::string>();
            } else if (part.is_object() && part.contains("type") && part["type"].is_string()) {
                throw invalid_request(
                    fmt::format("messages[{}].content: parts of type '{}' need a multimodal "
                                "projector, which this server does not have",
                                index, part["type"].get<std::string>()));
            } else {
                throw invalid_request(
                    fmt::format("messages[{}].content: each part must be {{\"type\":\"text\", "
                                "\"text\": ...}}",
                                index));
            }
            out += (first ? "" : "\n") + text;
            first = false;
        }
        return out;
    }
    throw invalid_request(fmt::format("messages[{}].content must be a string, an array of parts or null", index));
}

json normalize_tool_call(const json& tc, size_t mi, size_t ti) {
    if (!tc.is_object()) throw invalid_request(fmt::format("messages[{}].tool_calls[{}] must be an object", mi, ti));
    const json& fn = tc.contains("function") ? tc["function"] : tc;
    if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
        throw invalid_request(fmt::format("messages[{}].tool_calls[{}].function.name must be a string", mi, ti));
    json args = json::object();
    if (fn.contains("arguments") && !fn["arguments"].is_null()) {
        const json& a = fn["arguments"];
        if (a.is_string()) {
            const std::string s = a.get<std::string>();
            if (!s.empty()) {
                if (json_text_nests_deeper_than(s, kMaxJsonDepth))
                    throw invalid_request(
                        fmt::format("messages[{}].tool_calls[{}].function.arguments nests more than {} levels deep", mi,
                                    ti, kMaxJsonDepth));
                try {
                    args = json::parse(s);
                } catch (const json::exception&) {  // parse_error, or out_of_range for a number like 1e999
                    throw invalid_request(
                        fmt::format("messages[{}].tool_calls[{}].function.arguments is not valid JSON: {}", mi, ti, s));
                }
            }
        } else if (a.is_object()) {
            args = a;
        } else {
            throw invalid_request(fmt::format(
                "messages[{}].tool_calls[{}].function.arguments must be a JSON string or an object", mi, ti));
        }
    }
    json out = {{"type", "function"}, {"function", {{"name", fn["name"]}, {"arguments", args}}}};
    if (tc.contains("id") && tc["id"].is_string()) out["id"] = tc["id"];
    return out;
}

json normalize_messages(const json& body) {
    auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty())
        throw invalid_request("'messages' is required and must be a non-empty array");
    json out = json::array();
    for (size_t i = 0; i < it->size(); ++i) {
        const json& m = (*it)[i];
        if (!m.is_object()) throw invalid_request(fmt::format("messages[{}] must be an object", i));
        if (!m.contains("role") || !m["role"].is_string())
            throw invalid_request(fmt::format("messages[{}].role must be a string", i));
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        const bool has_calls = m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty();
        const bool has_content = m.contains("content") && !m["content"].is_null();
        if (!has_content && !(role == "assistant" && has_calls))
            throw invalid_request(fmt::format("messages[{}] ({}) has no content", i, role));
        json n = {{"role", role}, {"content", content_text(m.value("content", json()), i)}};
        if (m.contains("reasoning_content") && m["reasoning_content"].is_string() &&
            !m["reasoning_content"].get<std::string>().empty())
            n["reasoning_content"] = m["reasoning_content"];
        if (m.contains("name") && m["name"].is_string()) n["name"] = m["name"];
        if (m.contains("tool_call_id") && m["tool_call_id"].is_string()) n["tool_call_id"] = m["tool_call_id"];
        if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
            if (!m["tool_calls"].is_array())
                throw invalid_request(fmt::format("messages[{}].tool_calls must be an array", i));
            json calls = json::array();
            for (size_t t = 0; t < m["tool_calls"].size(); ++t)
                calls.push_back(normalize_tool_call(m["tool_calls"][t], i, t));
            if (!calls.empty()) n["tool_calls"] = calls;
        }
        out.push_back(std::move(n));
    }
    return out;
}

json normalize_tools(const json& body) {
    json out = json::array();
    auto it = body.find("tools");
    if (it == body.end() || it->is_null()) return out;
    if (!it->is_array()) throw invalid_request("Field 'tools': expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
        const json& t = (*it)[i];
        const json& fn = t.is_object() && t.contains("function") ? t["function"] : t;
        if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
            throw invalid_request(fmt::format("tools[{}].function.name must be a string", i));
        out.push_back({{"type", "function"},
                       {"function",
                        {{"name", fn["name"]},
                         {"description", fn.value("description", json(""))},
                         {"parameters", fn.value("parameters", json::object())}}}});
    }
    return out;
}

// tool_choice and reasoning_format (spec server-behaviour §5.4): "auto",
// "required" and an object naming a function parse tool calls (the grammar,
// completion_request.cpp, makes the last two call), "none" does not.
ChatOutputOptions output_options(const json& body, const ServedModel& model, bool jinja) {
    ChatOutputOptions o;
    o.reasoning_format = model.options().reasoning_format;
    if (auto choice = body.find("tool_choice"); choice != body.end() && !choice->is_null()) {
        if (choice->is_string()) {
            const std::string c = choice->get<std::string>();
            if (c != "auto" && c != "none" && c != "required")
                throw invalid_request(
                    fmt::format("Field 'tool_choice': expected \"auto\", \"none\" or \"required\" but got \"{}\"", c));
            if (c != "auto" && !jinja) throw invalid_request("tool_choice param requires --jinja flag");
            o.parse_tool_calls = c != "none";
        } else if (!choice->is_object()) {
            throw invalid_request("Field 'tool_choice': expected a string or an object");
        }
    }
    if (auto rf = body.find("reasoning_format"); rf != body.end() && !rf->is_null()) {
        if (!rf->is_string()) throw invalid_request("Field 'reasoning_format': expected a string");
        auto f = parse_reasoning_format(rf->get<std::string>());
        if (!f)
            throw invalid_request(
                fmt::format("Field 'reasoning_format': expected none, deepseek, deepseek-legacy or auto but got \"{}\"",
                            rf->get<std::string>()));
        o.reasoning_format = *f;
    }
    return o;
}

// Where the content of the last user message lies in the rendered prompt: the
// conversation is rendered again with that content replaced by a marker, and
// what comes before and after the marker must be what comes before and after
// the content in the prompt (a template whose other output depends on the
// content gives no span). Not found: nullopt.
template <typename Render>
std::optional<std::pair<size_t, size_t>> last_user_span(const RenderedChatRequest& p, Render&& render) {
    static constexpr std::string_view kMarker = "moeserve-last-user-message-7c1f3a";
    json marked = p.messages;
    size_t u = marked.size();
    while (u > 0 && marked[u - 1]["role"] != "user") --u;
    if (u == 0 || !marked[u - 1]["content"].is_string()) return std::nullopt;
    marked[u - 1]["content"] = std::string(kMarker);
    const std::string text = render(marked, nullptr);
    const size_t at = text.find(kMarker);
    if (at == std::string::npos || text.find(kMarker, at + 1) != std::string::npos) return std::nullopt;
    const std::string_view before(text.data(), at),
        after(text.data() + at + kMarker.size(), text.size() - at - kMarker.size());
    if (before.size() + after.size() > p.text.size() || !p.text.starts_with(before) || !p.text.ends_with(after))
        return std::nullopt;
    return std::pair{before.size(), p.text.size() - after.size()};
}

// Where the content of each user and tool message starts in the rendered
// prompt: the conversation is rendered once more with every such content
// replaced by a marker of its own, and the rendered text is walked marker by
// marker: the text before each marker must be the prompt's text at that point,
// followed there by the message's content. The walk stops at the first message
// for which that fails (what follows it would be misplaced).
template <typename Render>
std::vector<size_t> message_starts(const RenderedChatRequest& p, Render&& render) {
    json marked = p.messages;
    std::vector<std::pair<std::string, std::string>> markers;  // (marker, content) in message order
    for (auto& m : marked) {
        if ((m["role"] != "user" && m["role"] != "tool") || !m["content"].is_string()) continue;
        std::string marker = fmt::format("moeserve-message-{}-7c1f3a", markers.size());
        markers.emplace_back(marker, m["content"].get<std::string>());
        m["content"] = std::move(marker);
    }
    std::vector<size_t> out;
    if (markers.empty()) return out;
    const std::string text = render(marked, nullptr);
    size_t in_marked = 0, in_prompt = 0;
    for (const auto& [marker, content] : markers) {
        const size_t at = text.find(marker, in_marked);
        if (at == std::string::npos || text.find(marker, at + 1) != std::string::npos) break;
        const std::string_view before(text.data() + in_marked, at - in_marked);
        if (p.text.compare(in_prompt, before.size(), before) != 0) break;
        const size_t start = in_prompt + before.size();
        if (p.text.compare(start, content.size(), content) != 0) break;
        out.push_back(start);
        in_marked = at + marker.size();
        in_prompt = start + content.size();
    }
    return out;
}

}  // namespace

RenderedChatRequest render_chat_prompt(const json& body, const ServedModel& model, bool locate_last_user) {
    RenderedChatRequest p;
    p.messages = normalize_messages(body);
    p.tools = normalize_tools(body);
    const bool jinja = model.options().jinja;
    if (!jinja && !p.tools.empty()) throw invalid_request("tools param requires --jinja flag");
    ChatOutputOptions output = output_options(body, model, jinja);
    if (auto par = bool_field(body, "parallel_tool_calls")) p.parallel_tool_calls = *par;
    // Combinations llama-server refuses (spec server-behaviour §5.4), with its messages.
    if (!p.tools.empty()) {
        if (output.parse_tool_calls && body.contains("grammar") && !body["grammar"].is_null())
            throw invalid_request("Cannot use custom grammar constraints with tools.");
        if (bool_field(body, "logprobs").value_or(false) && bool_field(body, "stream").value_or(false))
            throw invalid_request("logprobs is not supported with tools + stream");
    }

    p.kwargs = json::object();
    for (const auto& [k, v] : model.options().chat_template_kwargs.items()) p.kwargs[k] = v;
    if (auto kw = body.find("chat_template_kwargs"); kw != body.end() && !kw->is_null()) {
        if (!kw->is_object()) throw invalid_request("Field 'chat_template_kwargs': expected an object");
        for (const auto& [k, v] : kw->items()) p.kwargs[k] = v;
    }
    if (auto et = p.kwargs.find("enable_thinking"); et != p.kwargs.end() && !et->is_boolean())
        throw invalid_request("chat_template_kwargs.enable_thinking must be a boolean");
    if (auto pr = p.kwargs.find("preserve_reasoning"); pr != p.kwargs.end() && pr->is_boolean() && pr->get<bool>()) {
        p.kwargs["clear_thinking"] = false;
        p.kwargs["truncate_history_thinking"] = false;
        p.kwargs["preserve_thinking"] = true;
        p.kwargs["drop_thinking"] = false;
    }

    const bool add_gen = bool_field(body, "add_generation_prompt").value_or(true);
    const bool continue_final = bool_field(body, "continue_final_message").value_or(false);
    if (add_gen && continue_final && body.contains("add_generation_prompt"))
        throw invalid_request("add_generation_prompt and continue_final_message cannot both be true");

    // The prompt of a conversation, with the trailing-assistant rules; syntax, when
    // given, receives how to read the answer.
    auto render = [&](const json& messages, ChatSyntax* syntax) {
        const size_t n = messages.size();
        const bool prefill = model.options().prefill_assistant && n >= 1 && messages[n - 1]["role"] == "assistant";
        if (prefill && n >= 2 && messages[n - 2]["role"] == "assistant")
            throw invalid_request(
                "the conversation ends with two assistant messages; only the last one can be "
                "continued");
        if (prefill && (add_gen || continue_final)) {
            // A trailing assistant message is continued: the turn before it is
            // rendered with the generation prompt, then its text follows.
            json head(messages.begin(), messages.end() - 1);
            const std::string prefill_text = messages[n - 1]["content"].get<std::string>();
            FormattedChat chat = model.render_chat(head, p.tools, true, p.kwargs, output);
            if (syntax) {
                *syntax = std::move(chat.syntax);
                // The answer continues the prefilled text: a reasoning block it
                // already closed is over.
                if (prefill_text.find("</think>") != std::string::npos) {
                    syntax->forced_reasoning_prefix.clear();
                    syntax->model_may_think = false;
                }
            }
            return chat.text + prefill_text;
        }
        FormattedChat chat = model.render_chat(messages, p.tools, add_gen, p.kwargs, output);
        if (syntax) *syntax = std::move(chat.syntax);
        return std::move(chat.text);
    };
    try {
        p.text = render(p.messages, &p.syntax);
    } catch (const FormatError& e) {
        throw invalid_request(e.what());
    }
    // Only an aid to caching: a template that fails on the marker leaves the prompt as it is.
    if (locate_last_user) {
        try {
            p.last_user_span = last_user_span(p, render);
        } catch (const std::exception&) {
            p.last_user_span.reset();
        }
        try {
            p.message_starts = message_starts(p, render);
        } catch (const std::exception&) {
            p.message_starts.clear();
        }
    }
    return p;
}

}  // namespace moeserve
