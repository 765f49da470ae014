#include "chat/chat_template.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "text/vocab.h"

namespace moeserve {
namespace {

using json = nlohmann::ordered_json;

// A plain ChatML template for --chat-template chatml.
constexpr std::string_view kChatmlTemplate =
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n";

std::string format_time(std::time_t t, const char* fmt) {
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[128];
    size_t n = std::strftime(buf, sizeof buf, fmt, &tm);
    return std::string(buf, n);
}

std::string content_text(const json& content, size_t i) {
    if (content.is_null()) return "";
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array())
        throw ChatRequestError(fmt::format("messages[{}].content must be a string, an array of parts or null", i));
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
            throw ChatRequestError(fmt::format("messages[{}].content: part type '{}' is not supported (text only)", i,
                                               part["type"].get<std::string>()));
        } else {
            throw ChatRequestError(
                fmt::format("messages[{}].content: each part must be {{\"type\": \"text\", "
                            "\"text\": \"...\"}}",
                            i));
        }
        if (!first) out += "\n";
        out += text;
        first = false;
    }
    return out;
}

json normalize_tool_call(const json& call, size_t i, size_t k) {
    if (!call.is_object()) throw ChatRequestError(fmt::format("messages[{}].tool_calls[{}] must be an object", i, k));
    const json& fn = call.contains("function") ? call["function"] : call;
    if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
        throw ChatRequestError(fmt::format("messages[{}].tool_calls[{}].function.name must be a string", i, k));
    json args = json::object();
    if (fn.contains("arguments")) {
        const json& a = fn["arguments"];
        if (a.is_string()) {
            std::string text = a.get<std::string>();
            if (text.find_first_not_of(" \t\r\n") != std::string::npos) {
                args = json::parse(text, nullptr, false);
                if (args.is_discarded())
                    throw ChatRequestError(
                        fmt::format("messages[{}].tool_calls[{}].function.arguments is not valid JSON", i, k));
            }
        } else if (!a.is_null()) {
            args = a;
        }
    }
    json out = json::object();
    out["type"] = "function";
    out["function"] = json::object({{"name", fn["name"]}, {"arguments", std::move(args)}});
    if (call.contains("id") && call["id"].is_string()) out["id"] = call["id"];
    return out;
}

}  // namespace

std::string_view chat_template_family_name(ChatTemplateFamily f) {
    switch (f) {
        case ChatTemplateFamily::Generic:
            return "generic";
        case ChatTemplateFamily::Qwen3:
            return "qwen3";
        case ChatTemplateFamily::Qwen3Coder:
            return "qwen3-coder";
        case ChatTemplateFamily::Glm:
            return "glm";
    }
    return "generic";
}

ChatTemplateFamily detect_chat_template_family(std::string_view src) {
    auto has = [&](std::string_view s) { return src.find(s) != std::string_view::npos; };
    if (has("<arg_key>") && has("<arg_value>")) return ChatTemplateFamily::Glm;
    if (has("<function=") && has("<parameter=")) return ChatTemplateFamily::Qwen3Coder;
    if (has("<tool_call>")) return ChatTemplateFamily::Qwen3;
    return ChatTemplateFamily::Generic;
}

ToolCallFormat tool_call_format_of(ChatTemplateFamily f) {
    switch (f) {
        case ChatTemplateFamily::Qwen3:
            return ToolCallFormat::HermesJson;
        case ChatTemplateFamily::Qwen3Coder:
            return ToolCallFormat::XmlFunction;
        case ChatTemplateFamily::Glm:
            return ToolCallFormat::GlmArgKeyValue;
        case ChatTemplateFamily::Generic:
            break;
    }
    return ToolCallFormat::None;
}

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token, bool add_bos, bool add_eos)
    : source_(std::move(source)),
      template_(std::make_shared<const jinja::Template>(source_)),
      bos_(std::move(bos_token)),
      eos_(std::move(eos_token)),
      add_bos_(add_bos),
      add_eos_(add_eos),
      family_(detect_chat_template_family(source_)),
      supports_thinking_(source_.find("<think>") != std::string::npos ||
                         source_.find("</think>") != std::string::npos) {}

namespace {

struct VocabTokens {
    std::string bos, eos;
    bool add_bos = false, add_eos = false;
};

VocabTokens tokens_of(const Vocab* vocab) {
    VocabTokens t;
    if (!vocab) return t;
    if (vocab->valid(vocab->special().bos)) t.bos = vocab->text(vocab->special().bos);
    if (vocab->valid(vocab->special().eos)) t.eos = vocab->text(vocab->special().eos);
    t.add_bos = vocab->add_bos();
    t.add_eos = vocab->add_eos();
    return t;
}

}  // namespace

ChatTemplate ChatTemplate::from_vocab(const Vocab& vocab) {
    if (!vocab.chat_template() || vocab.chat_template()->empty())
        throw ChatTemplateError(0,
                                "the model has no chat template (tokenizer.chat_template); pass --chat-template "
                                "or --chat-template-file");
    VocabTokens t = tokens_of(&vocab);
    return ChatTemplate(*vocab.chat_template(), t.bos, t.eos, t.add_bos, t.add_eos);
}

ChatTemplate ChatTemplate::from_file(const std::string& path, const Vocab* vocab) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ChatTemplateError(0, "cannot read chat template file '" + path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    VocabTokens t = tokens_of(vocab);
    try {
        return ChatTemplate(ss.str(), t.bos, t.eos, t.add_bos, t.add_eos);
    } catch (const ChatTemplateError& e) {
        throw ChatTemplateError(e.line(), path + ": " + e.message());
    }
}

std::vector<std::string> ChatTemplate::builtin_template_names() {
    return {"chatml"};
}

ChatTemplate ChatTemplate::from_name_or_source(const std::string& value, const Vocab* vocab) {
    VocabTokens t = tokens_of(vocab);
    if (value == "chatml") return ChatTemplate(std::string(kChatmlTemplate), t.bos, t.eos, t.add_bos, t.add_eos);
    if (value.find("{%") != std::string::npos || value.find("{{") != std::string::npos)
        return ChatTemplate(value, t.bos, t.eos, t.add_bos, t.add_eos);
    std::string names;
    for (const auto& n : builtin_template_names()) names += (names.empty() ? "" : ", ") + n;
    throw ChatTemplateError(0, "unknown chat template '" + value +
                                   "': give Jinja source, a file with "
                                   "--chat-template-file, or one of: " +
                                   names);
}

json ChatTemplate::normalize_messages(const json& messages) {
    if (!messages.is_array()) throw ChatRequestError("'messages' must be an array");
    if (messages.empty()) throw ChatRequestError("'messages' must not be empty");
    json out = json::array();
    for (size_t i = 0; i < messages.size(); ++i) {
        const json& m = messages[i];
        if (!m.is_object()) throw ChatRequestError(fmt::format("messages[{}] must be an object", i));
        if (!m.contains("role") || !m["role"].is_string())
            throw ChatRequestError(fmt::format("messages[{}].role must be a string", i));
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        bool has_calls = m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty();
        if (!m.contains("content") && !has_calls)
            throw ChatRequestError(fmt::format("messages[{}] needs 'content' or 'tool_calls'", i));
        json n = json::object();
        n["role"] = role;
        n["content"] = m.contains("content") ? content_text(m["content"], i) : std::string();
        if (m.contains("reasoning_content") && m["reasoning_content"].is_string() &&
            !m["reasoning_content"].get<std::string>().empty())
            n["reasoning_content"] = m["reasoning_content"];
        if (m.contains("name") && m["name"].is_string()) n["name"] = m["name"];
        if (m.contains("tool_call_id") && m["tool_call_id"].is_string()) n["tool_call_id"] = m["tool_call_id"];
        if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
            if (!m["tool_calls"].is_array())
                throw ChatRequestError(fmt::format("messages[{}].tool_calls must be an array", i));
            if (has_calls) {
                json calls = json::array();
                for (size_t k = 0; k < m["tool_calls"].size(); ++k)
                    calls.push_back(normalize_tool_call(m["tool_calls"][k], i, k));
                n["tool_calls"] = std::move(calls);
            }
        }
        out.push_back(std::move(n));
    }
    return out;
}

json ChatTemplate::normalize_tools(const json& tools) {
    json out = json::array();
    if (tools.is_null()) return out;
    if (!tools.is_array()) throw ChatRequestError("'tools' must be an array");
    for (size_t i = 0; i < tools.size(); ++i) {
        const json& t = tools[i];
        if (!t.is_object()) throw ChatRequestError(fmt::format("tools[{}] must be an object", i));
        if (t.contains("type") && t["type"] != "function")
            throw ChatRequestError(fmt::format("tools[{}].type must be \"function\"", i));
        if (!t.contains("function") || !t["function"].is_object())
            throw ChatRequestError(fmt::format("tools[{}].function must be an object", i));
        const json& fn = t["function"];
        if (!fn.contains("name") || !fn["name"].is_string() || fn["name"].get<std::string>().empty())
            throw ChatRequestError(fmt::format("tools[{}].function.name must be a non-empty string", i));
        json f = json::object();
        f["name"] = fn["name"];
        f["description"] = fn.contains("description") && fn["description"].is_string() ? fn["description"] : json("");
        if (fn.contains("parameters") && !fn["parameters"].is_null()) {
            if (!fn["parameters"].is_object())
                throw ChatRequestError(fmt::format("tools[{}].function.parameters must be an object", i));
            f["parameters"] = fn["parameters"];
        } else {
            f["parameters"] = json::object();
        }
        out.push_back(json::object({{"type", "function"}, {"function", std::move(f)}}));
    }
    return out;
}

std::string ChatTemplate::render(const json& variables) const {
    return template_->render(variables, limits);
}

ChatPrompt ChatTemplate::apply(const ChatTemplateInputs& in) const {
    json vars = json::object();
    vars["messages"] = normalize_messages(in.messages);
    json tools = normalize_tools(in.tools);
    if (!tools.empty()) vars["tools"] = tools;
    vars["bos_token"] = bos_;
    vars["eos_token"] = eos_;

    const json& kwargs = in.chat_template_kwargs;
    if (!kwargs.is_null() && !kwargs.is_object()) throw ChatRequestError("'chat_template_kwargs' must be an object");
    bool enable_thinking = in.enable_thinking;
    if (kwargs.is_object() && kwargs.contains("enable_thinking")) {
        if (!kwargs["enable_thinking"].is_boolean())
            throw ChatRequestError("chat_template_kwargs.enable_thinking must be a boolean");
        enable_thinking = kwargs["enable_thinking"].get<bool>();
    }
    vars["enable_thinking"] = enable_thinking;
    std::time_t now = in.now ? *in.now : std::time(nullptr);
    vars["date_string"] = format_time(now, "%d %b %Y");
    vars["datetime"] = format_time(now, "%Y-%m-%d %H:%M:%S");
    if (kwargs.is_object()) {
        for (const auto& [k, v] : kwargs.items()) {
            if (k == "messages" || k == "tools" || k == "add_generation_prompt" || k == "enable_thinking") continue;
            vars[k] = v;
            if (k == "preserve_reasoning" && v.is_boolean() && v.get<bool>()) {
                vars["clear_thinking"] = false;
                vars["truncate_history_thinking"] = false;
                vars["preserve_thinking"] = true;
                vars["drop_thinking"] = false;
            }
        }
    }

    ChatPrompt p;
    if (in.add_generation_prompt) {
        std::string without = render(vars);
        vars["add_generation_prompt"] = true;
        p.prompt = render(vars);
        size_t common = 0;
        while (common < without.size() && common < p.prompt.size() && without[common] == p.prompt[common]) ++common;
        p.generation_prompt = p.prompt.substr(common);
    } else {
        p.prompt = render(vars);
    }
    if (add_bos_ && !bos_.empty() && p.prompt.compare(0, bos_.size(), bos_) == 0) p.prompt.erase(0, bos_.size());
    if (add_eos_ && !eos_.empty() && p.prompt.size() >= eos_.size() &&
        p.prompt.compare(p.prompt.size() - eos_.size(), eos_.size(), eos_) == 0)
        p.prompt.erase(p.prompt.size() - eos_.size());

    ChatSyntax& s = p.syntax;
    s.tool_format = tool_call_format_of(family_);
    s.parse_tool_calls = in.parse_tool_calls && !tools.empty() && s.tool_format != ToolCallFormat::None;
    s.tools = std::move(tools);
    s.reasoning_format = in.reasoning_format;
    const std::string& gen = p.generation_prompt;
    size_t open = gen.rfind("<think>");
    if (open != std::string::npos && gen.find("</think>", open) == std::string::npos) {
        s.forced_reasoning_prefix = gen.substr(open);
    } else if (gen.find("</think>") == std::string::npos) {
        s.model_may_think = supports_thinking_;
    }
    return p;
}

}  // namespace moeserve
