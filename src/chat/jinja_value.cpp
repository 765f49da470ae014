#include "chat/jinja_value.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "chat/jinja_utf8.h"

namespace moeserve::jinja {

TemplateError::TemplateError(int line, const std::string& message)
    : std::runtime_error(line > 0 ? fmt::format("line {}: {}", line, message) : message),
      line_(line),
      message_(message) {}

const Value* Dict::find(std::string_view key) const {
    if (items.size() < 8) {
        for (const auto& [k, v] : items)
            if (k == key) return &v;
        return nullptr;
    }
    auto it = index.find(std::string(key));
    return it == index.end() ? nullptr : &items[it->second].second;
}

void Dict::set(const std::string& key, Value v) {
    auto it = index.find(key);
    if (it != index.end()) {
        items[it->second].second = std::move(v);
        return;
    }
    index.emplace(key, items.size());
    items.emplace_back(key, std::move(v));
}

const Value* CallArgs::kwarg(std::string_view name) const {
    for (const auto& [k, v] : keyword)
        if (k == name) return &v;
    return nullptr;
}

Value CallArgs::get(size_t i, std::string_view name) const {
    if (i < positional.size()) return positional[i];
    if (const Value* v = kwarg(name)) return *v;
    return Value();
}

Value Value::list(List items, bool tuple) {
    return Value(std::make_shared<List>(std::move(items)), tuple);
}

Value Value::dict() {
    return Value(std::make_shared<Dict>());
}

Value Value::namespace_object() {
    auto d = std::make_shared<Dict>();
    d->is_namespace = true;
    return Value(std::move(d));
}

bool Value::is_namespace() const {
    return is_dict() && as_dict().is_namespace;
}

namespace {

Value from_json_at(const nlohmann::ordered_json& j, int depth);

}  // namespace

Value Value::from_json(const nlohmann::ordered_json& j) {
    return from_json_at(j, 0);
}

namespace {

Value from_json_at(const nlohmann::ordered_json& j, int depth) {
    if (depth > kMaxJsonDepth) throw TemplateError(0, "JSON input nested too deeply");
    switch (j.type()) {
        case nlohmann::ordered_json::value_t::null:
            return Value(None{});
        case nlohmann::ordered_json::value_t::boolean:
            return Value(j.get<bool>());
        case nlohmann::ordered_json::value_t::number_integer:
            return Value(j.get<int64_t>());
        case nlohmann::ordered_json::value_t::number_unsigned: {
            uint64_t u = j.get<uint64_t>();
            if (u <= static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<int64_t>(u));
            return Value(static_cast<double>(u));
        }
        case nlohmann::ordered_json::value_t::number_float:
            return Value(j.get<double>());
        case nlohmann::ordered_json::value_t::string:
            return Value(j.get<std::string>());
        case nlohmann::ordered_json::value_t::array: {
            List items;
            items.reserve(j.size());
            for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
            return Value::list(std::move(items));
        }
        case nlohmann::ordered_json::value_t::object: {
            Value d = Value::dict();
            for (const auto& [k, v] : j.items()) d.as_dict().set(k, from_json_at(v, depth + 1));
            return d;
        }
        default:
            return Value();
    }
}

}  // namespace

double Value::as_number() const {
    if (is_int()) return static_cast<double>(as_int());
    if (is_float()) return as_float();
    if (is_bool()) return as_bool() ? 1.0 : 0.0;
    return 0.0;
}

bool Value::truthy() const {
    return std::visit(
        [](const auto& x) -> bool {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, Undefined> || std::is_same_v<T, None>)
                return false;
            else if constexpr (std::is_same_v<T, bool>)
                return x;
            else if constexpr (std::is_same_v<T, int64_t>)
                return x != 0;
            else if constexpr (std::is_same_v<T, double>)
                return x != 0.0;
            else if constexpr (std::is_same_v<T, std::string>)
                return !x.empty();
            else if constexpr (std::is_same_v<T, ListPtr>)
                return !x->empty();
            else if constexpr (std::is_same_v<T, DictPtr>)
                return x->is_namespace || !x->items.empty();
            else
                return true;
        },
        v_);
}

std::string Value::type_name() const {
    if (is_undefined()) return "Undefined";
    if (is_none()) return "NoneType";
    if (is_bool()) return "bool";
    if (is_int()) return "int";
    if (is_float()) return "float";
    if (is_string()) return "str";
    if (is_list()) return tuple_ ? "tuple" : "list";
    if (is_namespace()) return "Namespace";
    if (is_dict()) return "dict";
    return "function";
}

std::string python_float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    if (d == 0.0) return std::signbit(d) ? "-0.0" : "0.0";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string s(buf, res.ptr);
    // s = [-]D[.DDD]e(+|-)XX
    bool neg = s[0] == '-';
    if (neg) s.erase(0, 1);
    size_t e = s.find('e');
    std::string mant = s.substr(0, e);
    int exp = std::stoi(s.substr(e + 1));
    std::string digits;
    for (char c : mant)
        if (c != '.') digits += c;
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    std::string out;
    if (exp < -4 || exp >= 16) {
        out = digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
    } else if (exp < 0) {
        out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else {
        size_t point = static_cast<size_t>(exp) + 1;
        if (digits.size() <= point) {
            out = digits + std::string(point - digits.size(), '0') + ".0";
        } else {
            out = digits.substr(0, point) + "." + digits.substr(point);
        }
    }
    return neg ? "-" + out : out;
}

std::string python_string_repr(std::string_view s) {
    bool has_single = s.find('\'') != std::string_view::npos;
    bool has_double = s.find('"') != std::string_view::npos;
    char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (unsigned char c : s) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c == static_cast<unsigned char>(quote)) {
                    out += '\\';
                    out += static_cast<char>(c);
                } else if (c < 0x20 || c == 0x7f) {
                    out += fmt::format("\\x{:02x}", c);
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += quote;
    return out;
}

std::string Value::str() const {
    if (is_undefined()) return "";
    if (is_string()) return as_string();
    return repr();
}

std::string Value::repr() const {
    if (is_undefined()) return "Undefined";
    if (is_none()) return "None";
    if (is_bool()) return as_bool() ? "True" : "False";
    if (is_int()) return std::to_string(as_int());
    if (is_float()) return python_float_repr(as_float());
    if (is_string()) return python_string_repr(as_string());
    if (is_list()) {
        std::string out(1, tuple_ ? '(' : '[');
        const List& l = as_list();
        for (size_t i = 0; i < l.size(); ++i) {
            if (i) out += ", ";
            out += l[i].repr();
        }
        if (tuple_ && l.size() == 1) out += ',';
        out += tuple_ ? ')' : ']';
        return out;
    }
    if (is_dict()) {
        const Dict& d = as_dict();
        std::string out = d.is_namespace ? "<Namespace {" : "{";
        for (size_t i = 0; i < d.items.size(); ++i) {
            if (i) out += ", ";
            out += python_string_repr(d.items[i].first) + ": " + d.items[i].second.repr();
        }
        out += d.is_namespace ? "}>" : "}";
        return out;
    }
    return "<function " + as_function().name + ">";
}

nlohmann::ordered_json Value::to_json() const {
    if (is_bool()) return as_bool();
    if (is_int()) return as_int();
    if (is_float()) return as_float();
    if (is_string()) return as_string();
    if (is_list()) {
        auto j = nlohmann::ordered_json::array();
        for (const auto& e : as_list()) j.push_back(e.to_json());
        return j;
    }
    if (is_dict()) {
        auto j = nlohmann::ordered_json::object();
        for (const auto& [k, v] : as_dict().items) j[k] = v.to_json();
        return j;
    }
    return nullptr;
}

bool Value::equals(const Value& o) const {
    bool num_a = is_number() || is_bool(), num_b = o.is_number() || o.is_bool();
    if (num_a && num_b) {
        if ((is_int() || is_bool()) && (o.is_int() || o.is_bool())) {
            int64_t a = is_int() ? as_int() : as_bool(), b = o.is_int() ? o.as_int() : o.as_bool();
            return a == b;
        }
        return as_number() == o.as_number();
    }
    if (is_string() && o.is_string()) return as_string() == o.as_string();
    if (is_none() && o.is_none()) return true;
    if (is_undefined() && o.is_undefined()) return true;
    if (is_list() && o.is_list()) {
        const List &a = as_list(), &b = o.as_list();
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
            if (!a[i].equals(b[i])) return false;
        return true;
    }
    if (is_dict() && o.is_dict()) {
        const Dict &a = as_dict(), &b = o.as_dict();
        if (&a == &b) return true;
        if (a.is_namespace || b.is_namespace || a.size() != b.size()) return false;
        for (const auto& [k, v] : a.items) {
            const Value* w = b.find(k);
            if (!w || !v.equals(*w)) return false;
        }
        return true;
    }
    if (is_function() && o.is_function()) return &as_function() == &o.as_function();
    return false;
}

namespace {

void dump_string(std::string& out, std::string_view s, bool ensure_ascii) {
    out += '"';
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '"':
                    out += "\\\"";
                    break;
                case '\\':
                    out += "\\\\";
                    break;
                case '\n':
                    out += "\\n";
                    break;
                case '\r':
                    out += "\\r";
                    break;
                case '\t':
                    out += "\\t";
                    break;
                case '\b':
                    out += "\\b";
                    break;
                case '\f':
                    out += "\\f";
                    break;
                default:
                    if (c < 0x20)
                        out += fmt::format("\\u{:04x}", c);
                    else
                        out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        size_t len = 0;
        uint32_t cp = utf8_decode(s, i, len);
        if (ensure_ascii) {
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                out += fmt::format("\\u{:04x}", cp);
            }
        } else if (cp == kReplacementChar && len == 1) {
            out += "\xEF\xBF\xBD";  // an invalid byte: emit U+FFFD so the result is valid UTF-8
        } else {
            out.append(s.substr(i, len));
        }
        i += len;
    }
    out += '"';
}

void dump(std::string& out, const Value& v, const JsonDumpOptions& o, int depth) {
    if (depth > 512) throw TemplateError(0, "tojson: value nested too deeply");
    auto newline = [&](int level) {
        if (o.indent < 0) return;
        out += '\n';
        out.append(static_cast<size_t>(o.indent) * static_cast<size_t>(level), ' ');
    };
    if (v.is_none() || v.is_undefined() || v.is_function()) {
        out += "null";
    } else if (v.is_bool()) {
        out += v.as_bool() ? "true" : "false";
    } else if (v.is_int()) {
        out += std::to_string(v.as_int());
    } else if (v.is_float()) {
        double d = v.as_float();
        if (std::isnan(d))
            out += "NaN";
        else if (std::isinf(d))
            out += d < 0 ? "-Infinity" : "Infinity";
        else
            out += python_float_repr(d);
    } else if (v.is_string()) {
        dump_string(out, v.as_string(), o.ensure_ascii);
    } else if (v.is_list()) {
        const List& l = v.as_list();
        if (l.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (size_t i = 0; i < l.size(); ++i) {
            if (i) out += o.item_separator;
            newline(depth + 1);
            dump(out, l[i], o, depth + 1);
        }
        newline(depth);
        out += ']';
    } else if (v.is_dict()) {
        const Dict& d = v.as_dict();
        if (d.items.empty()) {
            out += "{}";
            return;
        }
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& kv : d.items) items.push_back(&kv);
        if (o.sort_keys)
            std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        for (size_t i = 0; i < items.size(); ++i) {
            if (i) out += o.item_separator;
            newline(depth + 1);
            dump_string(out, items[i]->first, o.ensure_ascii);
            out += o.key_separator;
            dump(out, items[i]->second, o, depth + 1);
        }
        newline(depth);
        out += '}';
    }
}

}  // namespace

std::string json_dumps(const Value& v, const JsonDumpOptions& options) {
    std::string out;
    dump(out, v, options, 0);
    return out;
}

}  // namespace moeserve::jinja
