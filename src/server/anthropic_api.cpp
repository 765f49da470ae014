#include "server/anthropic_api.h"

#include <fmt/format.h>

#include "server/json_fields.h"

namespace moeserve {
namespace {

// A tool_result's content: a string, or text blocks (joined).
std::string tool_result_text(const json& content, const std::string& where) {
    if (content.is_null()) return "";
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array()) throw invalid_request(where + ".content must be a string or an array of blocks");
    std::string text;
    for (size_t k = 0; k < content.size(); ++k) {
        const json& b = content[k];
        const std::string at = fmt::format("{}.content[{}]", where, k);
        if (!b.is_object()) throw invalid_request(at + " must be an object");
        const std::string type = member_string(b, "type", at);
        if (type == "text")
            text += member_string(b, "text", at);
        else
            throw invalid_request(fmt::format("{}: blocks of type '{}' are not supported in a tool result", at, type));
    }
    return text;
}

// One Anthropic message -> chat messages (a user turn's tool results first:
// the chat templates expect them right after the assistant's tool calls).
void convert_message(const json& m, size_t i, json& out) {
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw invalid_request(where + " must be an object");
    const std::string role = member_string(m, "role", where);
    if (role != "user" && role != "assistant")
        throw invalid_request(fmt::format("{}.role must be 'user' or 'assistant', got '{}'", where, role));
    auto c = m.find("content");
    if (c == m.end() || c->is_null()) throw invalid_request(where + ".content is required");
    if (c->is_string()) {
        out.push_back({{"role", role}, {"content", *c}});
        return;
    }
    if (!c->is_array()) throw invalid_request(where + ".content must be a string or an array of content blocks");
    json text_parts = json::array(), tool_calls = json::array(), tool_results = json::array();
    std::string reasoning;
    for (size_t k = 0; k < c->size(); ++k) {
        const json& b = (*c)[k];
        const std::string at = fmt::format("{}.content[{}]", where, k);
        if (!b.is_object()) throw invalid_request(at + " must be an object");
        const std::string type = member_string(b, "type", at);
        if (type == "text") {
            text_parts.push_back({{"type", "text"}, {"text", member_string(b, "text", at)}});
        } else if (type == "thinking") {
            reasoning += member_string(b, "thinking", at);
        } else if (type == "redacted_thinking") {
            // encrypted reasoning of another model: nothing a local template can show
        } else if (type == "tool_use") {
            const json input = b.value("input", json::object());
            if (!input.is_object()) throw invalid_request(at + ".input must be an object");
            tool_calls.push_back({{"id", member_string(b, "id", at)},
                                  {"type", "function"},
                                  {"function", {{"name", member_string(b, "name", at)}, {"arguments", input.dump()}}}});
        } else if (type == "tool_result") {
            tool_results.push_back({{"role", "tool"},
                                    {"tool_call_id", member_string(b, "tool_use_id", at)},
                                    {"content", tool_result_text(b.value("content", json()), at)}});
        } else if (type == "image" || type == "document") {
            throw invalid_request(
                fmt::format("{}: '{}' blocks need a multimodal model, which this server does not have", at, type));
        } else {
            throw invalid_request(fmt::format("{}: unknown content block type '{}'", at, type));
        }
    }
    for (auto& r : tool_results) out.push_back(std::move(r));
    if (text_parts.empty() && tool_calls.empty() && reasoning.empty()) return;
    json msg = {{"role", role}, {"content", text_parts.empty() ? json("") : text_parts}};
    if (!tool_calls.empty()) msg["tool_calls"] = tool_calls;
    if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
    out.push_back(std::move(msg));
}

json convert_tools(const json& tools) {
    if (!tools.is_array()) throw invalid_request("Field 'tools': expected an array");
    json out = json::array();
    for (size_t i = 0; i < tools.size(); ++i) {
        const json& t = tools[i];
        const std::string at = fmt::format("tools[{}]", i);
        if (!t.is_object()) throw invalid_request(at + " must be an object");
        // Anthropic's own tools (web_search_..., bash_..., text_editor_..., computer_...) run on
        // Anthropic's side or have schemas only their models know: not offered to a local model.
        const std::string type = member_string(t, "type", at);
        if (!type.empty() && type != "custom") continue;
        const json schema = t.value("input_schema", json::object());
        if (!schema.is_object()) throw invalid_request(at + ".input_schema must be an object");
        out.push_back({{"type", "function"},
                       {"function",
                        {{"name", member_string(t, "name", at)},
                         {"description", member_string(t, "description", at)},
                         {"parameters", schema}}}});
    }
    return out;
}

json convert_tool_choice(const json& tc) {
    if (!tc.is_object()) throw invalid_request("Field 'tool_choice': expected an object with a 'type'");
    const std::string type = member_string(tc, "type", "tool_choice");
    if (type == "auto") return "auto";
    if (type == "any") return "required";
    if (type == "none") return "none";
    if (type == "tool")
        return json{{"type", "function"}, {"function", {{"name", member_string(tc, "name", "tool_choice")}}}};
    throw invalid_request(fmt::format("tool_choice.type must be auto, any, tool or none, got '{}'", type));
}

}  // namespace

json anthropic_to_chat_request(const json& body) {
    if (!body.is_object()) throw invalid_request("the request body must be a JSON object");
    json messages = json::array();
    if (auto s = body.find("system"); s != body.end() && !s->is_null()) {
        std::string text;
        if (s->is_string()) {
            text = s->get<std::string>();
        } else if (s->is_array()) {
            for (size_t k = 0; k < s->size(); ++k) {
                const std::string at = fmt::format("system[{}]", k);
                if (!(*s)[k].is_object()) throw invalid_request(at + " must be an object");
                if (member_string((*s)[k], "type", at) == "text") text += member_string((*s)[k], "text", at);
            }
        } else {
            throw invalid_request("Field 'system': expected a string or an array of text blocks");
        }
        messages.push_back({{"role", "system"}, {"content", text}});
    }
    auto m = body.find("messages");
    if (m == body.end() || !m->is_array()) throw invalid_request("Field 'messages': expected an array of messages");
    for (size_t i = 0; i < m->size(); ++i) convert_message((*m)[i], i, messages);

    json chat = {{"messages", messages}};
    // max_tokens is required by Anthropic; like llama-server, a missing one means 4096.
    chat["max_tokens"] = body.contains("max_tokens") ? body["max_tokens"] : json(4096);
    // "replay" is the test-only forced answer (serve --allow-replay), refused by the chat pipeline otherwise.
    for (const char* key : {"temperature", "top_p", "top_k", "stream", "replay"})
        if (body.contains(key)) chat[key] = body[key];
    if (body.contains("stop_sequences")) chat["stop"] = body["stop_sequences"];
    if (body.contains("tools")) chat["tools"] = convert_tools(body["tools"]);
    if (body.contains("tool_choice")) {
        chat["tool_choice"] = convert_tool_choice(body["tool_choice"]);
        if (body["tool_choice"].value("disable_parallel_tool_use", false)) chat["parallel_tool_calls"] = false;
    }
    if (auto t = body.find("thinking"); t != body.end() && !t->is_null()) {
        if (!t->is_object()) throw invalid_request("Field 'thinking': expected an object");
        const std::string type = member_string(*t, "type", "thinking");
        if (type != "enabled" && type != "disabled")
            throw invalid_request(fmt::format("thinking.type must be 'enabled' or 'disabled', got '{}'", type));
        chat["chat_template_kwargs"] = {{"enable_thinking", type == "enabled"}};
        if (type == "enabled" && t->contains("budget_tokens")) chat["thinking_budget_tokens"] = (*t)["budget_tokens"];
    }
    return chat;
}

const char* anthropic_stop_reason(const GenerationResult& r, bool has_tool_calls) {
    if (r.stop_type == StopType::limit || r.truncated) return "max_tokens";
    if (has_tool_calls) return "tool_use";
    if (r.stop_type == StopType::word) return "stop_sequence";
    return "end_turn";
}

json anthropic_message(const json& chat_completion, const GenerationResult& result, int64_t input_tokens) {
    const json& choice = chat_completion.at("choices").at(0);
    const json& msg = choice.at("message");
    json content = json::array();
    if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string() &&
        !msg["reasoning_content"].get<std::string>().empty())
        content.push_back({{"type", "thinking"}, {"thinking", msg["reasoning_content"]}, {"signature", ""}});
    if (msg.contains("content") && msg["content"].is_string() && !msg["content"].get<std::string>().empty())
        content.push_back({{"type", "text"}, {"text", msg["content"]}});
    bool tools = false;
    if (msg.contains("tool_calls") && msg["tool_calls"].is_array()) {
        for (const json& tc : msg["tool_calls"]) {
            json input = json::object();
            try {
                input = json::parse(tc.at("function").value("arguments", std::string("{}")));
            } catch (const json::exception&) {
            }
            content.push_back({{"type", "tool_use"},
                               {"id", tc.value("id", std::string())},
                               {"name", tc.at("function").value("name", std::string())},
                               {"input", input}});
            tools = true;
        }
    }
    const bool word = result.stop_type == StopType::word && !tools;
    return {{"id", chat_completion.value("id", std::string())},
            {"type", "message"},
            {"role", "assistant"},
            {"content", content},
            {"model", chat_completion.value("model", std::string())},
            {"stop_reason", anthropic_stop_reason(result, tools)},
            {"stop_sequence", word ? json(result.stopping_word) : json()},
            {"usage",
             {{"input_tokens", input_tokens},
              {"output_tokens", chat_completion.at("usage").value("completion_tokens", int64_t{0})}}}};
}

std::string anthropic_sse(const json& event) {
    return "event: " + event.at("type").get<std::string>() +
           "\ndata: " + event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

void AnthropicStream::start(std::string& out) {
    if (started_) return;
    started_ = true;
    out += anthropic_sse({{"type", "message_start"},
                          {"message",
                           {{"id", id_},
                            {"type", "message"},
                            {"role", "assistant"},
                            {"content", json::array()},
                            {"model", model_},
                            {"stop_reason", nullptr},
                            {"stop_sequence", nullptr},
                            {"usage", {{"input_tokens", input_tokens_}, {"output_tokens", 0}}}}}});
}

void AnthropicStream::open(std::string& out, Block kind, const json& content_block) {
    close(out);
    open_ = kind;
    ++index_;
    out += anthropic_sse({{"type", "content_block_start"}, {"index", index_}, {"content_block", content_block}});
}

void AnthropicStream::close(std::string& out) {
    if (open_ == Block::none) return;
    if (open_ == Block::thinking)  // clients expect a signature before a thinking block ends; a local model has none
        delta(out, {{"type", "signature_delta"}, {"signature", ""}});
    out += anthropic_sse({{"type", "content_block_stop"}, {"index", index_}});
    open_ = Block::none;
    open_tool_ = -1;
}

void AnthropicStream::delta(std::string& out, const json& d) {
    out += anthropic_sse({{"type", "content_block_delta"}, {"index", index_}, {"delta", d}});
}

std::string AnthropicStream::on_chunks(const std::vector<json>& chunks) {
    std::string out;
    start(out);
    for (const json& chunk : chunks) {
        if (!chunk.contains("choices") || chunk["choices"].empty()) continue;  // the usage chunk
        const json& d = chunk["choices"][0].value("delta", json::object());
        if (auto r = d.find("reasoning_content"); r != d.end() && r->is_string() && !r->get<std::string>().empty()) {
            if (open_ != Block::thinking) open(out, Block::thinking, {{"type", "thinking"}, {"thinking", ""}});
            delta(out, {{"type", "thinking_delta"}, {"thinking", *r}});
        }
        if (auto t = d.find("content"); t != d.end() && t->is_string() && !t->get<std::string>().empty()) {
            if (open_ != Block::text) open(out, Block::text, {{"type", "text"}, {"text", ""}});
            delta(out, {{"type", "text_delta"}, {"text", *t}});
        }
        if (auto calls = d.find("tool_calls"); calls != d.end() && calls->is_array()) {
            for (const json& tc : *calls) {
                const int idx = tc.value("index", 0);
                const json fn = tc.value("function", json::object());
                if (open_ != Block::tool_use || open_tool_ != idx) {
                    open(out, Block::tool_use,
                         {{"type", "tool_use"},
                          {"id", tc.value("id", std::string())},
                          {"name", fn.value("name", std::string())},
                          {"input", json::object()}});
                    open_tool_ = idx;
                    any_tool_ = true;
                }
                const std::string args = fn.value("arguments", std::string());
                if (!args.empty()) delta(out, {{"type", "input_json_delta"}, {"partial_json", args}});
            }
        }
    }
    return out;
}

std::string AnthropicStream::finish(const GenerationResult& result, int64_t output_tokens) {
    std::string out;
    start(out);
    close(out);
    const bool word = result.stop_type == StopType::word && !any_tool_;
    out += anthropic_sse({{"type", "message_delta"},
                          {"delta",
                           {{"stop_reason", anthropic_stop_reason(result, any_tool_)},
                            {"stop_sequence", word ? json(result.stopping_word) : json()}}},
                          {"usage", {{"output_tokens", output_tokens}}}});
    out += anthropic_sse({{"type", "message_stop"}});
    return out;
}

std::string AnthropicStream::error(const ApiError& e) const {
    return anthropic_sse({{"type", "error"}, {"error", {{"type", e.type}, {"message", e.what()}}}});
}

}  // namespace moeserve
