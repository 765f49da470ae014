#include "server/responses_api.h"

#include <fmt/format.h>

#include "server/json_fields.h"

#include <ctime>

#include "server/completion_response.h"

namespace moeserve {
namespace {

// A message's content: a string, or input_text / output_text parts (as chat text parts).
json message_content(const json& content, const std::string& where) {
    if (content.is_string()) return content;
    if (!content.is_array()) throw invalid_request(where + ".content must be a string or an array of parts");
    json parts = json::array();
    for (size_t k = 0; k < content.size(); ++k) {
        const json& p = content[k];
        const std::string at = fmt::format("{}.content[{}]", where, k);
        if (!p.is_object()) throw invalid_request(at + " must be an object");
        const std::string type = member_string(p, "type", at);
        if (type == "input_text" || type == "output_text" || type == "text")
            parts.push_back({{"type", "text"}, {"text", member_string(p, "text", at)}});
        else if (type == "input_image" || type == "input_file")
            throw invalid_request(
                fmt::format("{}: '{}' parts need a multimodal model, which this server does not have", at, type));
        else
            throw invalid_request(fmt::format("{}: unknown content part type '{}'", at, type));
    }
    return parts;
}

// The assistant message the next call or reasoning belongs to: the last
// message when it is the assistant's, else a new empty one.
json& assistant_turn(json& messages) {
    if (messages.empty() || messages.back().value("role", "") != "assistant")
        messages.push_back({{"role", "assistant"}, {"content", ""}});
    return messages.back();
}

void convert_item(const json& item, size_t i, json& messages) {
    const std::string where = fmt::format("input[{}]", i);
    if (!item.is_object()) throw invalid_request(where + " must be an object");
    const std::string type = member_string(item, "type", where);
    const std::string role = member_string(item, "role", where);
    if (type == "function_call") {
        json& turn = assistant_turn(messages);
        if (!turn.contains("tool_calls")) turn["tool_calls"] = json::array();
        std::string args = "{}";
        if (auto a = item.find("arguments"); a != item.end() && !a->is_null())
            args = a->is_string() ? a->get<std::string>() : a->dump();
        turn["tool_calls"].push_back(
            {{"id", member_string(item, "call_id", where)},
             {"type", "function"},
             {"function", {{"name", member_string(item, "name", where)}, {"arguments", args}}}});
        return;
    }
    if (type == "function_call_output") {
        const json out = item.value("output", json(""));
        messages.push_back({{"role", "tool"},
                            {"tool_call_id", member_string(item, "call_id", where)},
                            {"content", out.is_string() ? out : message_content(out, where + ".output")}});
        return;
    }
    if (type == "reasoning") {
        std::string text;
        for (const char* key : {"content", "summary"})
            if (auto c = item.find(key); c != item.end() && c->is_array())
                for (const json& p : *c)
                    if (p.is_object() && p.contains("text") && p["text"].is_string())
                        text += p["text"].get<std::string>();
        if (text.empty()) return;  // encrypted reasoning of another model: nothing a template can show
        json& turn = assistant_turn(messages);
        turn["reasoning_content"] = turn.value("reasoning_content", std::string()) + text;
        return;
    }
    if (type != "message" && !type.empty())
        throw invalid_request(fmt::format("{}: input items of type '{}' are not supported", where, type));
    if (role != "user" && role != "assistant" && role != "system" && role != "developer")
        throw invalid_request(
            fmt::format("{}.role must be user, assistant, system or developer, got '{}'", where, role));
    const json content = message_content(item.value("content", json("")), where);
    if (role == "assistant") {
        // Text after a call or reasoning of the same turn joins that message.
        json& turn = assistant_turn(messages);
        if (turn["content"] == json("") || turn["content"].is_null()) {
            turn["content"] = content;
        } else {
            json parts = turn["content"].is_array() ? turn["content"]
                                                    : json::array({{{"type", "text"}, {"text", turn["content"]}}});
            const json more = content.is_array() ? content : json::array({{{"type", "text"}, {"text", content}}});
            for (const json& p : more) parts.push_back(p);
            turn["content"] = parts;
        }
        return;
    }
    messages.push_back({{"role", role == "developer" ? "system" : role}, {"content", content}});
}

json convert_tools(const json& tools) {
    if (!tools.is_array()) throw invalid_request("Field 'tools': expected an array");
    json out = json::array();
    for (size_t i = 0; i < tools.size(); ++i) {
        const json& t = tools[i];
        const std::string at = fmt::format("tools[{}]", i);
        if (!t.is_object()) throw invalid_request(at + " must be an object");
        const std::string type = member_string(t, "type", at);
        if (type != "function")
            throw invalid_request(
                fmt::format("{}: '{}' tools are not supported (only function tools, which the client runs)", at, type));
        out.push_back({{"type", "function"},
                       {"function",
                        {{"name", member_string(t, "name", at)},
                         {"description", member_string(t, "description", at)},
                         {"parameters", t.value("parameters", json::object())}}}});
    }
    return out;
}

json usage_json(int64_t input_tokens, int64_t output_tokens) {
    return {{"input_tokens", input_tokens},
            {"input_tokens_details", {{"cached_tokens", 0}}},
            {"output_tokens", output_tokens},
            {"output_tokens_details", {{"reasoning_tokens", 0}}},
            {"total_tokens", input_tokens + output_tokens}};
}

// status and incomplete_details of a finished answer: cut off by the token limit or the context, or complete.
void set_status(json& response, const GenerationResult& r) {
    const bool cut = r.stop_type == StopType::limit || r.truncated;
    response["status"] = cut ? "incomplete" : "completed";
    response["incomplete_details"] = cut ? json{{"reason", "max_output_tokens"}} : json();
}

json message_item(const std::string& id, const std::string& text, const char* status) {
    return {{"id", id},
            {"type", "message"},
            {"role", "assistant"},
            {"status", status},
            {"content", json::array({{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}}})}};
}

json reasoning_item(const std::string& id, const std::string& text, const char* status) {
    return {{"id", id},
            {"type", "reasoning"},
            {"status", status},
            {"summary", json::array()},
            {"content", json::array({{{"type", "reasoning_text"}, {"text", text}}})}};
}

json call_item(const std::string& call_id, const std::string& name, const std::string& args, const char* status) {
    return {{"id", "fc_" + call_id}, {"type", "function_call"}, {"status", status}, {"call_id", call_id},
            {"name", name},          {"arguments", args}};
}

}  // namespace

json responses_to_chat_request(const json& body) {
    if (!body.is_object()) throw invalid_request("the request body must be a JSON object");
    if (auto p = body.find("previous_response_id"); p != body.end() && !p->is_null())
        throw invalid_request(
            "Field 'previous_response_id': this server does not store responses; send the whole conversation in "
            "'input'");
    json messages = json::array();
    if (auto s = body.find("instructions"); s != body.end() && !s->is_null()) {
        if (!s->is_string()) throw invalid_request("Field 'instructions': expected a string");
        messages.push_back({{"role", "system"}, {"content", *s}});
    }
    auto in = body.find("input");
    if (in == body.end() || in->is_null()) throw invalid_request("Field 'input' is required");
    if (in->is_string()) {
        messages.push_back({{"role", "user"}, {"content", *in}});
    } else if (in->is_array()) {
        for (size_t i = 0; i < in->size(); ++i) convert_item((*in)[i], i, messages);
    } else {
        throw invalid_request("Field 'input': expected a string or an array of input items");
    }
    json chat = {{"messages", messages}};
    if (body.contains("max_output_tokens") && !body["max_output_tokens"].is_null())
        chat["max_tokens"] = body["max_output_tokens"];
    // "replay" is the test-only forced answer (serve --allow-replay), refused by the chat pipeline otherwise.
    for (const char* key : {"temperature", "top_p", "stream", "parallel_tool_calls", "replay"})
        if (body.contains(key) && !body[key].is_null()) chat[key] = body[key];
    if (body.contains("tools") && !body["tools"].is_null()) chat["tools"] = convert_tools(body["tools"]);
    // Structured output: text.format as the chat response_format (the same grammar-constrained sampling).
    if (auto t = body.find("text");
        t != body.end() && t->is_object() && t->contains("format") && !(*t)["format"].is_null()) {
        const json& f = (*t)["format"];
        if (!f.is_object()) throw invalid_request("Field 'text.format': expected an object with a 'type'");
        const std::string type = member_string(f, "type", "text.format");
        if (type == "json_schema") {
            json js = {{"name", member_string(f, "name", "text.format")},
                       {"schema", f.value("schema", json::object())}};
            if (f.contains("strict")) js["strict"] = f["strict"];
            chat["response_format"] = {{"type", "json_schema"}, {"json_schema", js}};
        } else if (type == "json_object") {
            chat["response_format"] = {{"type", "json_object"}};
        } else if (type != "text") {
            throw invalid_request(
                fmt::format("text.format.type must be text, json_object or json_schema, got '{}'", type));
        }
    }
    if (auto tc = body.find("tool_choice"); tc != body.end() && !tc->is_null()) {
        if (tc->is_string()) {
            chat["tool_choice"] = *tc;
        } else if (tc->is_object() && tc->value("type", "") == "function") {
            chat["tool_choice"] = {{"type", "function"},
                                   {"function", {{"name", member_string(*tc, "name", "tool_choice")}}}};
        } else {
            throw invalid_request(
                "Field 'tool_choice': expected auto, none, required or {\"type\":\"function\",\"name\":...}");
        }
    }
    return chat;
}

json responses_object(const json& chat_completion, const GenerationResult& result, int64_t input_tokens) {
    const json& msg = chat_completion.at("choices").at(0).at("message");
    json output = json::array();
    if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string() &&
        !msg["reasoning_content"].get<std::string>().empty())
        output.push_back(reasoning_item(random_id("rs_"), msg["reasoning_content"], "completed"));
    if (msg.contains("content") && msg["content"].is_string() && !msg["content"].get<std::string>().empty())
        output.push_back(message_item(random_id("msg_"), msg["content"], "completed"));
    if (msg.contains("tool_calls") && msg["tool_calls"].is_array())
        for (const json& tc : msg["tool_calls"])
            output.push_back(call_item(tc.value("id", std::string()), tc.at("function").value("name", std::string()),
                                       tc.at("function").value("arguments", std::string()), "completed"));
    json r = {{"id", random_id("resp_")},
              {"object", "response"},
              {"created_at", chat_completion.value("created", int64_t{0})},
              {"model", chat_completion.value("model", std::string())},
              {"output", output},
              {"error", nullptr},
              {"usage", usage_json(input_tokens, chat_completion.at("usage").value("completion_tokens", int64_t{0}))}};
    set_status(r, result);
    return r;
}

ResponsesStream::ResponsesStream(const std::string&, std::string model, int64_t input_tokens)
    : id_(random_id("resp_")),
      model_(std::move(model)),
      created_(static_cast<int64_t>(std::time(nullptr))),
      input_tokens_(input_tokens) {}

std::string ResponsesStream::event(json e) {
    e["sequence_number"] = sequence_++;
    return "event: " + e.at("type").get<std::string>() +
           "\ndata: " + e.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

json ResponsesStream::response(const char* status) const {
    return {{"id", id_},       {"object", "response"}, {"created_at", created_}, {"status", status},
            {"model", model_}, {"output", output_},    {"error", nullptr},       {"incomplete_details", nullptr},
            {"usage", nullptr}};
}

void ResponsesStream::start(std::string& out) {
    if (started_) return;
    started_ = true;
    out += event({{"type", "response.created"}, {"response", response("in_progress")}});
    out += event({{"type", "response.in_progress"}, {"response", response("in_progress")}});
}

void ResponsesStream::open(std::string& out, Item kind, json item) {
    close(out);
    open_ = kind;
    output_.push_back(item);
    const int index = static_cast<int>(output_.size()) - 1;
    out += event({{"type", "response.output_item.added"}, {"output_index", index}, {"item", item}});
    if (kind == Item::message)
        out += event({{"type", "response.content_part.added"},
                      {"item_id", item["id"]},
                      {"output_index", index},
                      {"content_index", 0},
                      {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
}

void ResponsesStream::close(std::string& out) {
    if (open_ == Item::none) return;
    const int index = static_cast<int>(output_.size()) - 1;
    json& item = output_.back();
    const json id = item["id"];
    if (open_ == Item::reasoning) {
        out += event({{"type", "response.reasoning_text.done"},
                      {"item_id", id},
                      {"output_index", index},
                      {"content_index", 0},
                      {"text", item["content"][0]["text"]}});
    } else if (open_ == Item::message) {
        const json& part = item["content"][0];
        out += event({{"type", "response.output_text.done"},
                      {"item_id", id},
                      {"output_index", index},
                      {"content_index", 0},
                      {"text", part["text"]}});
        out += event({{"type", "response.content_part.done"},
                      {"item_id", id},
                      {"output_index", index},
                      {"content_index", 0},
                      {"part", part}});
    } else {
        out += event({{"type", "response.function_call_arguments.done"},
                      {"item_id", id},
                      {"output_index", index},
                      {"arguments", item["arguments"]}});
    }
    item["status"] = "completed";
    out += event({{"type", "response.output_item.done"}, {"output_index", index}, {"item", item}});
    open_ = Item::none;
    open_tool_ = -1;
}

std::string ResponsesStream::on_chunks(const std::vector<json>& chunks) {
    std::string out;
    start(out);
    for (const json& chunk : chunks) {
        if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
        const json& d = chunk["choices"][0].value("delta", json::object());
        if (auto r = d.find("reasoning_content"); r != d.end() && r->is_string() && !r->get<std::string>().empty()) {
            if (open_ != Item::reasoning) {
                json item = reasoning_item(random_id("rs_"), "", "in_progress");
                item["content"] = json::array();
                open(out, Item::reasoning, item);
                output_.back()["content"] = json::array({{{"type", "reasoning_text"}, {"text", ""}}});
            }
            json& text = output_.back()["content"][0]["text"];
            text = text.get<std::string>() + r->get<std::string>();
            out += event({{"type", "response.reasoning_text.delta"},
                          {"item_id", output_.back()["id"]},
                          {"output_index", static_cast<int>(output_.size()) - 1},
                          {"content_index", 0},
                          {"delta", *r}});
        }
        if (auto t = d.find("content"); t != d.end() && t->is_string() && !t->get<std::string>().empty()) {
            if (open_ != Item::message) {
                json item = message_item(random_id("msg_"), "", "in_progress");
                item["content"] = json::array();
                open(out, Item::message, item);
                output_.back()["content"] =
                    json::array({{{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}});
            }
            json& text = output_.back()["content"][0]["text"];
            text = text.get<std::string>() + t->get<std::string>();
            out += event({{"type", "response.output_text.delta"},
                          {"item_id", output_.back()["id"]},
                          {"output_index", static_cast<int>(output_.size()) - 1},
                          {"content_index", 0},
                          {"delta", *t}});
        }
        if (auto calls = d.find("tool_calls"); calls != d.end() && calls->is_array()) {
            for (const json& tc : *calls) {
                const int idx = tc.value("index", 0);
                const json fn = tc.value("function", json::object());
                if (open_ != Item::function_call || open_tool_ != idx) {
                    open(out, Item::function_call,
                         call_item(tc.value("id", std::string()), fn.value("name", std::string()), "", "in_progress"));
                    open_tool_ = idx;
                }
                const std::string args = fn.value("arguments", std::string());
                if (args.empty()) continue;
                json& all = output_.back()["arguments"];
                all = all.get<std::string>() + args;
                out += event({{"type", "response.function_call_arguments.delta"},
                              {"item_id", output_.back()["id"]},
                              {"output_index", static_cast<int>(output_.size()) - 1},
                              {"delta", args}});
            }
        }
    }
    return out;
}

std::string ResponsesStream::finish(const GenerationResult& result, int64_t output_tokens) {
    std::string out;
    start(out);
    close(out);
    json r = response("completed");
    set_status(r, result);
    r["usage"] = usage_json(input_tokens_, output_tokens);
    const char* type = r["status"] == "completed" ? "response.completed" : "response.incomplete";
    out += event({{"type", type}, {"response", r}});
    return out;
}

std::string ResponsesStream::error(const ApiError& e) {
    return event({{"type", "error"}, {"code", e.type}, {"message", e.what()}, {"param", nullptr}});
}

}  // namespace moeserve
