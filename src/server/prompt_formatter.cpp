#include "server/prompt_formatter.h"

namespace moeserve {
namespace {

bool is_space(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

std::string strip_chars(std::string_view s, bool (*pred)(char), bool left, bool right) {
    size_t b = 0, e = s.size();
    if (left)
        while (b < e && pred(s[b])) ++b;
    if (right)
        while (e > b && pred(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}
bool is_newline(char c) {
    return c == '\n';
}
std::string trim(std::string_view s) {
    return strip_chars(s, is_space, true, true);
}
std::string strip_nl(std::string_view s) {
    return strip_chars(s, is_newline, true, true);
}
std::string lstrip_nl(std::string_view s) {
    return strip_chars(s, is_newline, true, false);
}
std::string rstrip_nl(std::string_view s) {
    return strip_chars(s, is_newline, false, true);
}

bool contains(std::string_view s, std::string_view what) {
    return s.find(what) != std::string_view::npos;
}

// Python's str.split(sep)[0] and [-1].
std::string before_first(std::string_view s, std::string_view sep) {
    size_t p = s.find(sep);
    return std::string(p == std::string_view::npos ? s : s.substr(0, p));
}
std::string after_last(std::string_view s, std::string_view sep) {
    size_t p = s.rfind(sep);
    return std::string(p == std::string_view::npos ? s : s.substr(p + sep.size()));
}

std::string str(const json& m, const char* key) {
    auto it = m.find(key);
    return it != m.end() && it->is_string() ? it->get<std::string>() : std::string();
}
bool has_string(const json& m, const char* key) {
    auto it = m.find(key);
    return it != m.end() && it->is_string();
}
const json& tool_calls(const json& m) {
    static const json empty = json::array();
    auto it = m.find("tool_calls");
    return it != m.end() && it->is_array() ? *it : empty;
}
// A call's {name, arguments}, with or without the "function" wrapper.
const json& call_function(const json& tc) {
    auto it = tc.find("function");
    return it != tc.end() && it->is_object() ? *it : tc;
}
const json& call_arguments(const json& tc) {
    static const json empty = json::object();
    const json& f = call_function(tc);
    auto it = f.find("arguments");
    return it != f.end() ? *it : empty;
}

// Jinja's `| string` of a JSON value as the Python templates print it.
std::string python_str(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
    if (v.is_null()) return "None";
    return python_json(v);
}

bool kwarg_false(const json& kwargs, const char* key) {
    auto it = kwargs.find(key);
    return it != kwargs.end() && ((it->is_boolean() && !it->get<bool>()) || it->is_null());
}

void refuse_tools(const json& tools, const std::string& family) {
    if (tools.is_array() && !tools.empty())
        throw FormatError(
            "tool definitions need the model's Jinja chat template, which this build cannot render yet "
            "(built-in '" +
            family + "' formatter)");
}

// <tool_call>\n<function=NAME>\n<parameter=K>\nV\n</parameter>\n...</function>\n</tool_call>
std::string xml_tool_call(const json& tc) {
    std::string out = "<tool_call>\n<function=" + str(call_function(tc), "name") + ">\n";
    const json& args = call_arguments(tc);
    if (args.is_object())
        for (const auto& [k, v] : args.items())
            out += "<parameter=" + k + ">\n" + (v.is_object() || v.is_array() ? python_json(v) : python_str(v)) +
                   "\n</parameter>\n";
    return out + "</function>\n</tool_call>";
}

// Qwen3-Coder style tool results: a run of tool messages is one user turn.
void tool_response_turn(const json& msgs, size_t i, std::string& out) {
    const bool prev_tool = i > 0 && str(msgs[i - 1], "role") == "tool";
    const bool next_tool = i + 1 < msgs.size() && str(msgs[i + 1], "role") == "tool";
    if (i > 0 && !prev_tool) out += "<|im_start|>user\n";
    out += "<tool_response>\n" + str(msgs[i], "content") + "\n</tool_response>\n";
    if (!next_tool) out += "<|im_end|>\n";
}

class ChatMlFormatter : public PromptFormatter {
  public:
    std::string name() const override { return "chatml"; }
    std::string format(const json& msgs, const json& tools, bool add_gen, const json&) const override {
        refuse_tools(tools, name());
        std::string out;
        for (size_t i = 0; i < msgs.size(); ++i) {
            const json& m = msgs[i];
            const std::string role = str(m, "role");
            if (role == "tool") {
                tool_response_turn(msgs, i, out);
            } else if (role == "assistant" && !tool_calls(m).empty()) {
                out += "<|im_start|>assistant";
                const std::string c = trim(str(m, "content"));
                if (!c.empty()) out += "\n" + c + "\n";
                for (const auto& tc : tool_calls(m)) out += "\n" + xml_tool_call(tc);
                out += "<|im_end|>\n";
            } else {
                out += "<|im_start|>" + role + "\n" + str(m, "content") + "<|im_end|>\n";
            }
        }
        if (add_gen) out += "<|im_start|>assistant\n";
        return out;
    }
};

class Qwen3Formatter : public PromptFormatter {
  public:
    std::string name() const override { return "qwen3"; }
    std::string format(const json& msgs, const json& tools, bool add_gen, const json& kwargs) const override {
        refuse_tools(tools, name());
        std::string out;
        const size_t n = msgs.size();
        if (n > 0 && str(msgs[0], "role") == "system")
            out += "<|im_start|>system\n" + str(msgs[0], "content") + "<|im_end|>\n";
        // The last user message that is not a wrapped tool response.
        size_t last_query = n - 1;
        for (size_t k = n; k-- > 0;) {
            const std::string c = str(msgs[k], "content");
            if (str(msgs[k], "role") == "user" &&
                !(c.starts_with("<tool_response>") && c.ends_with("</tool_response>"))) {
                last_query = k;
                break;
            }
        }
        for (size_t i = 0; i < n; ++i) {
            const json& m = msgs[i];
            const std::string role = str(m, "role");
            if (role == "user" || (role == "system" && i > 0)) {
                out += "<|im_start|>" + role + "\n" + str(m, "content") + "<|im_end|>\n";
            } else if (role == "assistant") {
                std::string content = str(m, "content"), reasoning;
                auto rc = m.find("reasoning_content");
                if (rc != m.end() && !rc->is_null()) {
                    reasoning = rc->is_string() ? rc->get<std::string>() : python_str(*rc);
                } else if (contains(content, "</think>")) {
                    reasoning = lstrip_nl(after_last(rstrip_nl(before_first(content, "</think>")), "<think>"));
                    content = lstrip_nl(after_last(content, "</think>"));
                }
                if (i > last_query && (i + 1 == n || !reasoning.empty()))
                    out += "<|im_start|>assistant\n<think>\n" + strip_nl(reasoning) + "\n</think>\n\n" +
                           lstrip_nl(content);
                else
                    out += "<|im_start|>assistant\n" + content;
                bool first = true;
                for (const auto& tc : tool_calls(m)) {
                    if (!first || !content.empty()) out += "\n";
                    first = false;
                    const json& args = call_arguments(tc);
                    out += "<tool_call>\n{\"name\": \"" + str(call_function(tc), "name") +
                           "\", \"arguments\": " + (args.is_string() ? args.get<std::string>() : python_json(args)) +
                           "}\n</tool_call>";
                }
                out += "<|im_end|>\n";
            } else if (role == "tool") {
                if (i == 0 || str(msgs[i - 1], "role") != "tool") out += "<|im_start|>user";
                out += "\n<tool_response>\n" + str(m, "content") + "\n</tool_response>";
                if (i + 1 == n || str(msgs[i + 1], "role") != "tool") out += "<|im_end|>\n";
            }
        }
        if (add_gen) {
            out += "<|im_start|>assistant\n";
            auto it = kwargs.find("enable_thinking");
            if (it != kwargs.end() && it->is_boolean() && !it->get<bool>()) out += "<think>\n\n</think>\n\n";
        }
        return out;
    }
};

class Glm4Formatter : public PromptFormatter {
  public:
    std::string name() const override { return "glm4"; }
    std::string format(const json& msgs, const json& tools, bool add_gen, const json& kwargs) const override {
        refuse_tools(tools, name());
        std::string out = "[gMASK]<sop>";
        int64_t last_user = -1;
        for (size_t i = 0; i < msgs.size(); ++i)
            if (str(msgs[i], "role") == "user") last_user = static_cast<int64_t>(i);
        const bool keep_thinking = kwarg_false(kwargs, "clear_thinking");
        for (size_t i = 0; i < msgs.size(); ++i) {
            const json& m = msgs[i];
            const std::string role = str(m, "role");
            if (role == "user") {
                out += "<|user|>" + str(m, "content");
            } else if (role == "system") {
                out += "<|system|>" + str(m, "content");
            } else if (role == "assistant") {
                out += "<|assistant|>";
                std::string content = str(m, "content"), reasoning;
                if (has_string(m, "reasoning_content")) {
                    reasoning = str(m, "reasoning_content");
                } else if (contains(content, "</think>")) {
                    reasoning = lstrip_nl(after_last(rstrip_nl(before_first(content, "</think>")), "<think>"));
                    content = lstrip_nl(after_last(content, "</think>"));
                }
                if ((keep_thinking || static_cast<int64_t>(i) > last_user) && !reasoning.empty())
                    out += "<think>" + trim(reasoning) + "</think>";
                else
                    out += "</think>";
                out += trim(content);
                for (const auto& tc : tool_calls(m)) {
                    out += "<tool_call>" + str(call_function(tc), "name");
                    const json& args = call_arguments(tc);
                    if (args.is_object())
                        for (const auto& [k, v] : args.items())
                            out += "<arg_key>" + k + "</arg_key><arg_value>" +
                                   (v.is_string() ? v.get<std::string>() : python_json(v)) + "</arg_value>";
                    out += "</tool_call>";
                }
            } else if (role == "tool") {
                if (i == 0 || str(msgs[i - 1], "role") != "tool") out += "<|observation|>";
                out += "<tool_response>" + str(m, "content") + "</tool_response>";
            }
        }
        if (add_gen) {
            auto it = kwargs.find("enable_thinking");
            const bool off = it != kwargs.end() && ((it->is_boolean() && !it->get<bool>()) || it->is_null());
            out += off ? "<|assistant|></think>" : "<|assistant|><think>";
        }
        return out;
    }
};

class NemotronFormatter : public PromptFormatter {
  public:
    std::string name() const override { return "nemotron"; }
    std::string format(const json& all, const json& tools, bool add_gen, const json& kwargs) const override {
        refuse_tools(tools, name());
        std::string out = "<|im_start|>system\n";
        size_t first = 0;
        if (!all.empty() && str(all[0], "role") == "system") {
            out += str(all[0], "content");
            first = 1;
        }
        out += "<|im_end|>\n";
        std::vector<const json*> msgs;
        for (size_t i = first; i < all.size(); ++i) msgs.push_back(&all[i]);
        int64_t last_user = -1;
        for (size_t i = 0; i < msgs.size(); ++i)
            if (str(*msgs[i], "role") == "user") last_user = static_cast<int64_t>(i);
        const bool truncate_history = !kwarg_false(kwargs, "truncate_history_thinking");

        for (size_t i = 0; i < msgs.size(); ++i) {
            const json& m = *msgs[i];
            const std::string role = str(m, "role");
            if (role == "assistant") {
                std::string content;
                if (has_string(m, "reasoning_content") && !trim(str(m, "reasoning_content")).empty()) {
                    content = "<think>\n" + str(m, "reasoning_content") + "\n</think>\n" + str(m, "content");
                } else {
                    content = str(m, "content");
                    if (!contains(content, "<think>") && !contains(content, "</think>"))
                        content = "<think></think>" + content;
                }
                const bool truncated = truncate_history && static_cast<int64_t>(i) < last_user;
                if (!tool_calls(m).empty()) {
                    out += "<|im_start|>assistant\n";
                    if (!trim(content).empty()) {
                        if (!truncated) {
                            out += trim(content) + "\n";
                        } else {
                            std::string c = content;
                            if (contains(c, "</think>"))
                                c = after_last(c, "</think>");
                            else if (contains(c, "<think>"))
                                c = before_first(c, "<think>");
                            c = "<think></think>" + trim(c);
                            out += c + "\n";
                        }
                    } else {
                        out += "<think></think>";
                    }
                    for (const auto& tc : tool_calls(m)) out += xml_tool_call(tc) + "\n";
                    out += "<|im_end|>\n";
                } else if (!truncated) {
                    out += "<|im_start|>assistant\n" + trim(content) + "<|im_end|>\n";
                } else {
                    std::string c = content;
                    if (contains(c, "<think>") && contains(c, "</think>"))
                        c = "<think></think>" + after_last(c, "</think>");
                    c = trim(c);
                    out += "<|im_start|>assistant\n" + c + "<|im_end|>\n";
                }
            } else if (role == "user" || role == "system") {
                out += "<|im_start|>" + role + "\n" + str(m, "content") + "<|im_end|>\n";
            } else if (role == "tool") {
                const bool prev_tool = i > 0 && str(*msgs[i - 1], "role") == "tool";
                const bool next_tool = i + 1 < msgs.size() && str(*msgs[i + 1], "role") == "tool";
                if (i > 0 && !prev_tool) out += "<|im_start|>user\n";
                out += "<tool_response>\n" + str(m, "content") + "\n</tool_response>\n";
                if (!next_tool) out += "<|im_end|>\n";
            } else {
                out += "<|im_start|>" + role + "\n" + str(m, "content") + "<|im_end|>\n";
            }
        }
        if (add_gen) {
            auto it = kwargs.find("enable_thinking");
            const bool off = it != kwargs.end() && ((it->is_boolean() && !it->get<bool>()) || it->is_null());
            out += off ? "<|im_start|>assistant\n<think></think>" : "<|im_start|>assistant\n<think>\n";
        }
        return out;
    }
};

}  // namespace

std::string python_json(const json& v) {
    if (v.is_object()) {
        std::string out = "{";
        bool first = true;
        for (const auto& [k, x] : v.items()) {
            out += (first ? "" : ", ") + json(k).dump(-1, ' ', false, json::error_handler_t::replace) + ": " +
                   python_json(x);
            first = false;
        }
        return out + "}";
    }
    if (v.is_array()) {
        std::string out = "[";
        for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + python_json(v[i]);
        return out + "]";
    }
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

FormattedChat PromptFormatter::format_chat(const json& messages, const json& tools, bool add_generation_prompt,
                                           const json& kwargs, const ChatOutputOptions& options) const {
    FormattedChat out;
    out.text = format(messages, tools, add_generation_prompt, kwargs);
    ChatSyntax& s = out.syntax;
    s.reasoning_format = options.reasoning_format;
    const size_t open = out.text.rfind("<think>");
    if (add_generation_prompt && open != std::string::npos && out.text.find("</think>", open) == std::string::npos)
        s.forced_reasoning_prefix = out.text.substr(open);
    else
        s.model_may_think = name() != "chatml";
    return out;
}

std::unique_ptr<PromptFormatter> make_builtin_formatter(const std::string& name) {
    if (name == "chatml" || name == "qwen3-coder" || name == "qwen") return std::make_unique<ChatMlFormatter>();
    if (name == "qwen3") return std::make_unique<Qwen3Formatter>();
    if (name == "glm4" || name == "glm-4.7" || name == "glm-4.7-flash") return std::make_unique<Glm4Formatter>();
    if (name == "nemotron" || name == "nemotron-3-nano") return std::make_unique<NemotronFormatter>();
    return nullptr;
}

std::unique_ptr<PromptFormatter> formatter_for_template(const std::string& src) {
    if (contains(src, "[gMASK]") || contains(src, "<|observation|>")) return std::make_unique<Glm4Formatter>();
    if (contains(src, "<|im_start|>")) {
        if (contains(src, "truncate_history_thinking") || contains(src, "<think></think>"))
            return std::make_unique<NemotronFormatter>();
        if (contains(src, "reasoning_content") || contains(src, "enable_thinking"))
            return std::make_unique<Qwen3Formatter>();
        return std::make_unique<ChatMlFormatter>();
    }
    return nullptr;
}

}  // namespace moeserve
