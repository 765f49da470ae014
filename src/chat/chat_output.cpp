#include "chat/chat_output.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <random>

#include "chat/jinja_utf8.h"
#include "chat/tool_arguments.h"

namespace moeserve {
namespace {

using sv = std::string_view;
constexpr size_t npos = sv::npos;
constexpr size_t kMaxNameBytes = 256;  // a function or parameter name longer than this is not a name

constexpr sv kThinkOpen = "<think>";
constexpr sv kThinkClose = "</think>";
constexpr sv kToolCallOpen = "<tool_call>";
constexpr sv kToolCallClose = "</tool_call>";

bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t skip_ws(sv s, size_t p) {
    while (p < s.size() && is_ws(s[p])) ++p;
    return p;
}

std::string trim(sv s) {
    size_t b = 0, e = s.size();
    while (b < e && is_ws(s[b])) ++b;
    while (e > b && is_ws(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

bool starts_at(sv s, size_t p, sv tag) {
    return p <= s.size() && s.substr(p).substr(0, tag.size()) == tag;
}

// s[p:] is a proper prefix of tag (possibly empty): more text may complete it.
bool could_become(sv s, size_t p, sv tag) {
    sv rest = p <= s.size() ? s.substr(p) : sv();
    return rest.size() < tag.size() && tag.substr(0, rest.size()) == rest;
}

// Length of the longest suffix of s that is a proper, non-empty prefix of tag.
size_t partial_tag_suffix(sv s, sv tag) {
    for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
        if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
    return 0;
}

enum class CallStatus { Complete, Partial, Malformed };

struct CallParse {
    CallStatus status = CallStatus::Partial;
    bool has_header = false;  // the name is known (and may already have been streamed)
    std::string name;
    std::string args;
    size_t end = 0;  // Complete: just after the call
    size_t bad = 0;  // Malformed: where the text stops matching the syntax
};

CallParse malformed(CallParse c, size_t at) {
    c.status = CallStatus::Malformed;
    c.bad = at;
    if (c.has_header) {
        // Close an object left open (XML-style arguments grow as {"k": v);
        // a whole value (a Hermes string, a number) must stay as it is.
        if (c.args.empty())
            c.args = "{}";
        else if (!nlohmann::json::accept(c.args) && nlohmann::json::accept(c.args + '}'))
            c.args += '}';
    }
    return c;
}

CallParse complete(CallParse c, size_t end) {
    c.status = CallStatus::Complete;
    c.end = end;
    return c;
}

// After the arguments: optional whitespace, then </tool_call>.
CallParse close_call(CallParse c, sv s, size_t r, bool at_end) {
    size_t t = skip_ws(s, r);
    if (starts_at(s, t, kToolCallClose)) return complete(std::move(c), t + kToolCallClose.size());
    if (could_become(s, t, kToolCallClose)) {
        if (at_end) return complete(std::move(c), s.size());  // a truncated closing tag: accept the call
        return c;                                             // partial
    }
    return malformed(std::move(c), t);
}

// A value between an opening tag and `close_tag`; returns the position after
// the closing tag, or npos when the value is still open (args then hold what
// is certain so far).
size_t read_value(sv s, size_t vs, sv close_tag, bool strip_newlines, bool is_string, bool at_end, std::string& args) {
    size_t ve = s.find(close_tag, vs);
    sv raw = s.substr(vs, ve == npos ? npos : ve - vs);
    if (ve == npos && !at_end) {
        size_t hold = partial_tag_suffix(raw, close_tag);
        if (strip_newlines) {
            std::string nl_close = "\n" + std::string(close_tag);
            hold = std::max(hold, partial_tag_suffix(raw, nl_close));
        }
        raw.remove_suffix(hold);
    }
    if (strip_newlines && !raw.empty() && raw.front() == '\n') raw.remove_prefix(1);
    if (ve != npos && strip_newlines && !raw.empty() && raw.back() == '\n') raw.remove_suffix(1);
    if (is_string) {
        args += '"';
        args += json_string_body(raw);
        if (ve != npos) args += '"';
    } else if (ve != npos || at_end) {
        args += typed_value_json(raw);
    }
    return ve == npos ? npos : ve + close_tag.size();
}

// <function=NAME> (<parameter=KEY>\nVALUE\n</parameter>)* </function> </tool_call>
CallParse parse_xml_call(sv s, size_t p, const ChatSyntax& syn, bool at_end) {
    constexpr sv kFn = "<function=", kParam = "<parameter=", kParamClose = "</parameter>", kFnClose = "</function>";
    CallParse c;
    size_t q = skip_ws(s, p);
    if (!starts_at(s, q, kFn)) return could_become(s, q, kFn) ? c : malformed(c, p);
    size_t ns = q + kFn.size();
    size_t gt = s.find('>', ns);
    sv name_part = s.substr(ns, gt == npos ? npos : gt - ns);
    if (name_part.find_first_of("<\n") != npos || name_part.size() > kMaxNameBytes) return malformed(c, p);
    if (gt == npos) return c;
    c.name = trim(name_part);
    if (c.name.empty()) return malformed(c, p);
    c.has_header = true;
    c.args = "{";
    size_t r = gt + 1;
    bool first = true;
    for (;;) {
        r = skip_ws(s, r);
        if (starts_at(s, r, kParam)) {
            size_t ks = r + kParam.size();
            size_t kgt = s.find('>', ks);
            sv key_part = s.substr(ks, kgt == npos ? npos : kgt - ks);
            if (key_part.find_first_of("<\n") != npos || key_part.size() > kMaxNameBytes) return malformed(c, r);
            if (kgt == npos) return c;
            std::string key = trim(key_part);
            if (key.empty()) return malformed(c, r);
            c.args += first ? "\"" : ", \"";
            c.args += json_string_body(key) + "\": ";
            first = false;
            bool is_string = tool_parameter_is_string(syn.tools, c.name, key);
            r = read_value(s, kgt + 1, kParamClose, true, is_string, at_end, c.args);
            if (r == npos) return c;
            continue;
        }
        if (starts_at(s, r, kFnClose)) {
            c.args += '}';
            return close_call(std::move(c), s, r + kFnClose.size(), at_end);
        }
        if (starts_at(s, r, kToolCallClose)) {  // </function> forgotten
            c.args += '}';
            return complete(std::move(c), r + kToolCallClose.size());
        }
        if (could_become(s, r, kParam) || could_become(s, r, kFnClose) || could_become(s, r, kToolCallClose)) return c;
        return malformed(c, r);
    }
}

// NAME (<arg_key>KEY</arg_key><arg_value>VALUE</arg_value>)* </tool_call>
CallParse parse_glm_call(sv s, size_t p, const ChatSyntax& syn, bool at_end) {
    constexpr sv kKey = "<arg_key>", kKeyClose = "</arg_key>", kVal = "<arg_value>", kValClose = "</arg_value>";
    CallParse c;
    size_t ne = std::min(s.find(kKey, p), s.find(kToolCallClose, p));
    if (ne == npos) {
        sv part = s.substr(p);
        size_t lt = part.find('<');
        if (lt != npos && !could_become(part, lt, kKey) && !could_become(part, lt, kToolCallClose))
            return malformed(c, p);
        if ((lt == npos ? part.size() : lt) > kMaxNameBytes) return malformed(c, p);
        return c;
    }
    // Every check on a name or key looks at the raw text only, the same way
    // whether or not its closing tag has arrived, so that a decision made on
    // a prefix never changes.
    if (ne - p > kMaxNameBytes) return malformed(c, p);
    c.name = trim(s.substr(p, ne - p));
    if (c.name.empty() || c.name.find_first_of("<\n") != std::string::npos) return malformed(c, p);
    c.has_header = true;
    c.args = "{";
    size_t r = ne;
    bool first = true;
    for (;;) {
        r = skip_ws(s, r);
        if (starts_at(s, r, kKey)) {
            size_t ks = r + kKey.size();
            size_t ke = s.find(kKeyClose, ks);
            if (ke == npos) {
                sv part = s.substr(ks);
                size_t lt = part.find('<');
                if ((lt != npos && !could_become(part, lt, kKeyClose)) ||
                    (lt == npos ? part.size() : lt) > kMaxNameBytes)
                    return malformed(c, r);
                return c;
            }
            sv key_part = s.substr(ks, ke - ks);
            if (key_part.find('<') != npos || key_part.size() > kMaxNameBytes) return malformed(c, r);
            std::string key = trim(key_part);
            if (key.empty()) return malformed(c, r);
            c.args += first ? "\"" : ", \"";
            c.args += json_string_body(key) + "\": ";
            first = false;
            size_t v = skip_ws(s, ke + kKeyClose.size());
            if (!starts_at(s, v, kVal)) {
                if (could_become(s, v, kVal)) return c;
                c.args += "null";
                return malformed(c, v);
            }
            bool is_string = tool_parameter_is_string(syn.tools, c.name, key);
            r = read_value(s, v + kVal.size(), kValClose, false, is_string, at_end, c.args);
            if (r == npos) return c;
            continue;
        }
        if (starts_at(s, r, kToolCallClose)) {
            c.args += '}';
            return complete(std::move(c), r + kToolCallClose.size());
        }
        if (could_become(s, r, kKey) || could_become(s, r, kToolCallClose)) return c;
        return malformed(c, r);
    }
}

// The end (exclusive) of the JSON object or array starting at s[start]; npos
// while it is still open.
size_t scan_json_container(sv s, size_t start) {
    int depth = 0;
    bool in_string = false, escape = false;
    for (size_t i = start; i < s.size(); ++i) {
        char ch = s[i];
        if (in_string) {
            if (escape)
                escape = false;
            else if (ch == '\\')
                escape = true;
            else if (ch == '"')
                in_string = false;
            continue;
        }
        if (ch == '"')
            in_string = true;
        else if (ch == '{' || ch == '[')
            ++depth;
        else if (ch == '}' || ch == ']') {
            if (--depth == 0) return i + 1;
        }
    }
    return npos;
}

enum class Read { Ok, Partial, Bad };

// A JSON string literal at s[p]; `after` is the position after its closing quote.
Read read_json_string(sv s, size_t p, std::string& out, size_t& after) {
    if (p >= s.size()) return Read::Partial;
    if (s[p] != '"') return Read::Bad;
    bool escape = false;
    for (size_t i = p + 1; i < s.size(); ++i) {
        if (escape)
            escape = false;
        else if (s[i] == '\\')
            escape = true;
        else if (s[i] == '"') {
            auto j = nlohmann::json::parse(s.substr(p, i + 1 - p), nullptr, false);
            if (j.is_discarded() || !j.is_string()) return Read::Bad;
            out = j.get<std::string>();
            after = i + 1;
            return Read::Ok;
        }
    }
    return Read::Partial;
}

// How much of text begins some JSON value: the length of its longest prefix that
// valid JSON can continue (all of it for an open object, string, number or
// literal), checked character by character (RFC 8259, whitespace between tokens).
size_t json_viable_length(sv text) {
    enum class Want { value, key_or_end, key, colon, comma_or_end, done };
    std::vector<char> open;  // '{' or '['
    Want want = Want::value;
    size_t i = 0;
    auto after_value = [&] { want = open.empty() ? Want::done : Want::comma_or_end; };
    while (i < text.size()) {
        const char ch = text[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            ++i;
            continue;
        }
        const size_t start = i;
        if (want == Want::done) return start;
        if (want == Want::colon) {
            if (ch != ':') return start;
            want = Want::value;
            ++i;
            continue;
        }
        if (want == Want::comma_or_end || want == Want::key_or_end) {
            const char close = open.back() == '{' ? '}' : ']';
            if (ch == close) {
                open.pop_back();
                ++i;
                after_value();
                continue;
            }
            if (want == Want::comma_or_end) {
                if (ch != ',') return start;
                want = open.back() == '{' ? Want::key : Want::value;
                ++i;
                continue;
            }
            want = Want::key;  // '{' then not '}': a key
        }
        if (want == Want::key && ch != '"') return start;
        if (ch == '"') {  // a string: escapes checked, control characters refused
            ++i;
            while (i < text.size() && text[i] != '"') {
                const auto c = static_cast<unsigned char>(text[i]);
                if (c < 0x20) return i;
                if (c == '\\') {
                    if (++i >= text.size()) return text.size();
                    if (text[i] == 'u') {
                        for (int k = 0; k < 4; ++k)
                            if (++i >= text.size())
                                return text.size();
                            else if (!std::isxdigit(static_cast<unsigned char>(text[i])))
                                return i;
                    } else if (!std::strchr("\"\\/bfnrt", text[i])) {
                        return i;
                    }
                }
                ++i;
            }
            if (i >= text.size()) return text.size();
            ++i;
            if (want == Want::key)
                want = Want::colon;
            else
                after_value();
            continue;
        }
        if (ch == '{' || ch == '[') {
            open.push_back(ch);
            want = ch == '{' ? Want::key_or_end : Want::value;
            ++i;
            if (ch == '[') {  // an empty array closes at once
                size_t j = i;
                while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
                if (j < text.size() && text[j] == ']') {
                    open.pop_back();
                    i = j + 1;
                    after_value();
                }
            }
            continue;
        }
        if (ch == 't' || ch == 'f' || ch == 'n') {
            const sv word = ch == 't' ? "true" : ch == 'f' ? "false" : "null";
            for (size_t k = 0; k < word.size(); ++k, ++i)
                if (i >= text.size())
                    return text.size();
                else if (text[i] != word[k])
                    return i;
            after_value();
            continue;
        }
        if (ch == '-' || std::isdigit(static_cast<unsigned char>(ch))) {
            // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, ended by what may follow a value.
            if (text[i] == '-' && ++i >= text.size()) return text.size();
            if (!std::isdigit(static_cast<unsigned char>(text[i]))) return i;
            if (text[i++] != '0')
                while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
            for (const char* part : {".", "eE"}) {
                if (i >= text.size()) return text.size();
                if (!std::strchr(part, text[i])) continue;
                if (++i < text.size() && part[0] == 'e' && (text[i] == '+' || text[i] == '-')) ++i;
                if (i >= text.size()) return text.size();
                if (!std::isdigit(static_cast<unsigned char>(text[i]))) return i;
                while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
            }
            after_value();
            continue;
        }
        return start;
    }
    return text.size();
}

// An "arguments" value given as a JSON string: the text it holds when that is
// JSON, else the string itself as JSON.
std::string arguments_from_string(const std::string& text) {
    auto j = nlohmann::ordered_json::parse(text, nullptr, false);
    if (!j.is_discarded() && (j.is_object() || j.is_array())) return text;
    return "\"" + json_string_body(text) + "\"";
}

// A whole {"name": …, "arguments": …} object in any key order.
CallParse parse_json_call_object(sv s, size_t q, size_t oe, bool at_end) {
    CallParse c;
    auto j = nlohmann::ordered_json::parse(s.substr(q, oe - q), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) return malformed(c, q);
    c.name = j["name"].get<std::string>();
    if (c.name.empty()) return malformed(c, q);
    c.has_header = true;
    const nlohmann::ordered_json* a = nullptr;
    if (j.contains("arguments"))
        a = &j["arguments"];
    else if (j.contains("parameters"))
        a = &j["parameters"];
    if (!a || a->is_null())
        c.args = "{}";
    else if (a->is_string())
        c.args = arguments_from_string(a->get<std::string>());
    else
        c.args = typed_value_json(a->dump());
    return close_call(std::move(c), s, oe, at_end);
}

// {"name": "NAME", "arguments": {…}} </tool_call>; the name streams as soon as
// it is complete, an arguments object or array as it is written (while what is
// written can still be JSON: the tool-call grammar makes it so), other values
// once they are complete.
CallParse parse_json_call(sv s, size_t p, bool at_end) {
    CallParse c;
    size_t q = skip_ws(s, p);
    if (q >= s.size()) return c;
    if (s[q] != '{') return malformed(c, p);
    size_t oe = scan_json_container(s, q);
    auto whole = [&]() {
        if (oe == npos) return c;  // wait for the complete object
        CallParse w = parse_json_call_object(s, q, oe, at_end);
        if (w.status == CallStatus::Malformed && !w.has_header) w.bad = p;
        return w;
    };
    std::string key;
    size_t after = 0;
    size_t r = skip_ws(s, q + 1);
    Read rk = read_json_string(s, r, key, after);
    if (rk == Read::Partial) return c;
    if (rk == Read::Bad || key != "name") return whole();
    r = skip_ws(s, after);
    if (r >= s.size()) return c;
    if (s[r] != ':') return whole();
    std::string name;
    Read rn = read_json_string(s, skip_ws(s, r + 1), name, after);
    if (rn == Read::Partial) return c;
    if (rn == Read::Bad || name.empty()) return whole();
    c.name = name;
    c.has_header = true;
    r = skip_ws(s, after);
    if (r >= s.size()) return c;
    if (s[r] == '}') {
        c.args = "{}";
        return close_call(std::move(c), s, r + 1, at_end);
    }
    if (s[r] != ',') return malformed(c, r);
    r = skip_ws(s, r + 1);
    Read ra = read_json_string(s, r, key, after);
    if (ra == Read::Partial) return c;
    if (ra == Read::Bad || (key != "arguments" && key != "parameters")) return malformed(c, r);
    r = skip_ws(s, after);
    if (r >= s.size()) return c;
    if (s[r] != ':') return malformed(c, r);
    r = skip_ws(s, r + 1);
    if (r >= s.size()) return c;
    size_t ve;
    if (s[r] == '{' || s[r] == '[') {
        ve = scan_json_container(s, r);
        // Streamed as written while it can still become JSON; a model's syntax error
        // stops it there (the call is then malformed, keeping what was sent).
        const sv written = s.substr(r, ve == npos ? sv::npos : ve - r);
        c.args = std::string(written.substr(0, json_viable_length(written)));
        if (ve == npos) return c;
        if (c.args.size() < written.size() || !nlohmann::json::accept(written)) return malformed(c, r);
        c.args = std::string(s.substr(r, ve - r));
    } else if (s[r] == '"') {
        std::string text;
        Read rs = read_json_string(s, r, text, ve);
        if (rs == Read::Partial) return c;
        if (rs == Read::Bad) return malformed(c, r);
        c.args = arguments_from_string(text);
    } else {
        ve = r;
        while (ve < s.size() && s[ve] != ',' && s[ve] != '}' && !is_ws(s[ve])) ++ve;
        if (ve == s.size() && !at_end) return c;
        c.args = typed_value_json(s.substr(r, ve - r));
    }
    // Members after the arguments (unusual) are skipped up to the end of the object.
    if (oe == npos) return c;
    return close_call(std::move(c), s, oe, at_end);
}

CallParse parse_call(sv s, size_t p, const ChatSyntax& syn, bool at_end) {
    switch (syn.tool_format) {
        case ToolCallFormat::HermesJson:
            return parse_json_call(s, p, at_end);
        case ToolCallFormat::XmlFunction:
            return parse_xml_call(s, p, syn, at_end);
        case ToolCallFormat::GlmArgKeyValue:
            return parse_glm_call(s, p, syn, at_end);
        case ToolCallFormat::None:
            break;
    }
    return malformed(CallParse{}, p);
}

// Content with the tool calls that follow it, from s[pos].
void parse_content_and_calls(sv s, size_t pos, const std::string& head, const ChatSyntax& syn, bool at_end,
                             ChatMessage& m) {
    if (!syn.parse_tool_calls || syn.tool_format == ToolCallFormat::None) {
        m.content = trim(head + std::string(s.substr(pos)));
        return;
    }
    size_t tc = s.find(kToolCallOpen, pos);
    if (tc == npos) {
        sv region = s.substr(pos);
        if (!at_end) region.remove_suffix(partial_tag_suffix(region, kToolCallOpen));
        m.content = trim(head + std::string(region));
        return;
    }
    m.content = trim(head + std::string(s.substr(pos, tc - pos)));
    size_t p = tc;
    size_t garbage = npos;
    for (;;) {
        p = skip_ws(s, p);
        if (p >= s.size()) break;
        if (starts_at(s, p, kToolCallOpen)) {
            CallParse c = parse_call(s, p + kToolCallOpen.size(), syn, at_end);
            if (c.status == CallStatus::Complete) {
                m.tool_calls.push_back({"", std::move(c.name), std::move(c.args)});
                p = c.end;
                continue;
            }
            if (c.status == CallStatus::Partial) {
                if (c.has_header) {
                    m.tool_calls.push_back({"", std::move(c.name), std::move(c.args)});
                    m.tool_call_incomplete = at_end;
                } else if (at_end) {
                    garbage = p;  // cut off before the name: plain text
                }
                break;
            }
            if (c.has_header) {
                m.tool_calls.push_back({"", std::move(c.name), std::move(c.args)});
                garbage = c.bad;
            } else {
                garbage = p;
            }
            break;
        }
        if (!at_end && could_become(s, p, kToolCallOpen)) break;
        garbage = p;
        break;
    }
    if (garbage == npos) return;
    // Text that is not a tool call: returned as content.
    if (m.tool_calls.empty()) {
        m.content = trim(head + std::string(s.substr(pos)));
        return;
    }
    std::string extra = trim(s.substr(garbage));
    if (extra.empty()) return;
    m.content += m.content.empty() ? extra : "\n\n" + extra;
}

}  // namespace

std::string_view tool_call_format_name(ToolCallFormat f) {
    switch (f) {
        case ToolCallFormat::None:
            return "none";
        case ToolCallFormat::HermesJson:
            return "hermes-json";
        case ToolCallFormat::XmlFunction:
            return "xml-function";
        case ToolCallFormat::GlmArgKeyValue:
            return "glm-arg-key-value";
    }
    return "none";
}

std::optional<ReasoningFormat> parse_reasoning_format(std::string_view name) {
    if (name == "none") return ReasoningFormat::None;
    if (name == "deepseek" || name == "deepseek-legacy") return ReasoningFormat::Deepseek;
    if (name == "auto") return ReasoningFormat::Auto;
    return std::nullopt;
}

ChatMessage parse_chat_output_prefix(std::string_view s, const ChatSyntax& syn, bool at_end) {
    ChatMessage m;
    const bool split_reasoning = syn.reasoning_format != ReasoningFormat::None;
    bool in_think = false;
    size_t region = 0;  // where the reasoning text starts
    if (!syn.forced_reasoning_prefix.empty()) {
        in_think = true;
    } else if (syn.model_may_think) {
        size_t w = skip_ws(s, 0);
        if (starts_at(s, w, kThinkOpen)) {
            in_think = true;
            region = w + kThinkOpen.size();
        } else if (!at_end && could_become(s, w, kThinkOpen)) {
            return m;  // may still become "<think>"
        }
    }
    std::string head;  // reasoning_format none: the reasoning block, tags included, leads the content
    size_t pos = 0;
    if (in_think) {
        size_t end = s.find(kThinkClose, region);
        if (split_reasoning) {
            if (end == npos) {
                sv r = s.substr(region);
                if (!at_end) r.remove_suffix(partial_tag_suffix(r, kThinkClose));
                m.reasoning_content = trim(r);
                return m;
            }
            m.reasoning_content = trim(s.substr(region, end - region));
            pos = end + kThinkClose.size();
        } else {
            if (end == npos) {
                m.content = trim(syn.forced_reasoning_prefix + std::string(s));
                return m;
            }
            pos = end + kThinkClose.size();
            head = syn.forced_reasoning_prefix + std::string(s.substr(0, pos));
        }
    }
    parse_content_and_calls(s, pos, head, syn, at_end, m);
    return m;
}

std::string random_tool_call_id() {
    static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uniform_int_distribution<size_t> pick(0, sizeof(kChars) - 2);
    std::string id(32, ' ');
    for (char& ch : id) ch = kChars[pick(rng)];
    return id;
}

ChatMessage parse_chat_output(std::string_view text, const ChatSyntax& syntax, const ToolCallIdGenerator& make_id) {
    ChatMessage m = parse_chat_output_prefix(text, syntax, true);
    for (auto& c : m.tool_calls) c.id = make_id ? make_id() : random_tool_call_id();
    return m;
}

nlohmann::ordered_json ChatMessage::to_json() const {
    nlohmann::ordered_json j;
    j["role"] = "assistant";
    if (content.empty() && !tool_calls.empty())
        j["content"] = nullptr;
    else
        j["content"] = content;
    if (!reasoning_content.empty()) j["reasoning_content"] = reasoning_content;
    if (!tool_calls.empty()) {
        auto calls = nlohmann::ordered_json::array();
        for (const auto& c : tool_calls)
            calls.push_back(
                {{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        j["tool_calls"] = std::move(calls);
    }
    return j;
}

nlohmann::ordered_json ChatDelta::to_json() const {
    switch (kind) {
        case Kind::Reasoning:
            return {{"reasoning_content", text}};
        case Kind::Content:
            return {{"content", text}};
        case Kind::ToolCallStart:
            return {{"tool_calls",
                     nlohmann::ordered_json::array({{{"index", tool_index},
                                                     {"id", tool_id},
                                                     {"type", "function"},
                                                     {"function", {{"name", tool_name}, {"arguments", text}}}}})}};
        case Kind::ToolCallArguments:
            return {{"tool_calls",
                     nlohmann::ordered_json::array({{{"index", tool_index}, {"function", {{"arguments", text}}}}})}};
    }
    return nlohmann::ordered_json::object();
}

ChatStreamParser::ChatStreamParser(ChatSyntax syntax, ToolCallIdGenerator make_id)
    : syntax_(std::move(syntax)), make_id_(make_id ? std::move(make_id) : ToolCallIdGenerator(random_tool_call_id)) {}

std::vector<ChatDelta> ChatStreamParser::push(std::string_view text) {
    if (finished_) return {};
    text_.append(text);
    return update(false);
}

std::vector<ChatDelta> ChatStreamParser::finish() {
    if (finished_) return {};
    auto deltas = update(true);
    finished_ = true;
    return deltas;
}

std::vector<ChatDelta> ChatStreamParser::update(bool at_end) {
    sv usable = at_end ? sv(text_) : sv(text_).substr(0, jinja::utf8_complete_prefix(text_));
    ChatMessage now = parse_chat_output_prefix(usable, syntax_, at_end);
    std::vector<ChatDelta> out;
    // Each field may only grow; a parse that would take text back (which the
    // parser is built never to do) leaves the field as it was sent.
    auto grow = [&](std::string& sent, const std::string& cur, ChatDelta::Kind kind, size_t index) {
        if (cur.size() <= sent.size() || cur.compare(0, sent.size(), sent) != 0) return;
        ChatDelta d;
        d.kind = kind;
        d.tool_index = index;
        d.text = cur.substr(sent.size());
        sent = cur;
        out.push_back(std::move(d));
    };
    grow(sent_.reasoning_content, now.reasoning_content, ChatDelta::Kind::Reasoning, 0);
    grow(sent_.content, now.content, ChatDelta::Kind::Content, 0);
    for (size_t i = 0; i < now.tool_calls.size(); ++i) {
        if (i >= sent_.tool_calls.size()) {
            ToolCall c;
            c.id = make_id_();
            c.name = now.tool_calls[i].name;
            ChatDelta d;
            d.kind = ChatDelta::Kind::ToolCallStart;
            d.tool_index = i;
            d.tool_id = c.id;
            d.tool_name = c.name;
            sent_.tool_calls.push_back(std::move(c));
            out.push_back(std::move(d));
        }
        grow(sent_.tool_calls[i].arguments, now.tool_calls[i].arguments, ChatDelta::Kind::ToolCallArguments, i);
    }
    sent_.tool_call_incomplete = now.tool_call_incomplete;
    return out;
}

}  // namespace moeserve
