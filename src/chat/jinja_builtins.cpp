#include "chat/jinja_builtins.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <unordered_map>

#include "chat/jinja_interpreter.h"
#include "chat/jinja_utf8.h"

namespace moeserve::jinja {
namespace {

constexpr std::string_view kPythonSpace = " \t\n\r\v\f\x1c\x1d\x1e\x1f";

bool is_ascii_space(char c) {
    return kPythonSpace.find(c) != std::string_view::npos;
}

std::string ascii_lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::string ascii_upper(std::string s) {
    for (char& c : s)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
}

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

const std::string& need_string(const Value& v, const char* what, int line) {
    if (!v.is_string()) throw TemplateError(line, std::string(what) + " expects a string, got '" + v.type_name() + "'");
    return v.as_string();
}

int64_t need_int(const Value& v, const char* what, int line) {
    if (v.is_int()) return v.as_int();
    if (v.is_bool()) return v.as_bool();
    throw TemplateError(line, std::string(what) + " expects an integer, got '" + v.type_name() + "'");
}

// Python's str.split(sep, maxsplit).
List split(const std::string& s, const Value& sep, int64_t maxsplit, int line) {
    List out;
    if (sep.is_undefined() || sep.is_none()) {
        size_t i = 0;
        while (i < s.size()) {
            while (i < s.size() && is_ascii_space(s[i])) ++i;
            if (i >= s.size()) break;
            if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
                size_t end = s.size();
                while (end > i && is_ascii_space(s[end - 1])) --end;
                out.emplace_back(s.substr(i, end - i));
                return out;
            }
            size_t j = i;
            while (j < s.size() && !is_ascii_space(s[j])) ++j;
            out.emplace_back(s.substr(i, j - i));
            i = j;
        }
        return out;
    }
    const std::string& d = need_string(sep, "split()", line);
    if (d.empty()) throw TemplateError(line, "split(): empty separator");
    size_t start = 0;
    for (;;) {
        if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) break;
        size_t p = s.find(d, start);
        if (p == std::string::npos) break;
        out.emplace_back(s.substr(start, p - start));
        start = p + d.size();
    }
    out.emplace_back(s.substr(start));
    return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count,
                        Interpreter& in, int line) {
    std::string out;
    if (from.empty()) {
        // Python inserts `to` between every character and at both ends.
        std::vector<size_t> offs = utf8_offsets(s);
        int64_t done = 0;
        for (size_t k = 0; k + 1 < offs.size(); ++k) {
            if (count < 0 || done < count) {
                out += to;
                ++done;
            }
            out.append(s, offs[k], offs[k + 1] - offs[k]);
            in.check_string(out.size(), line);
        }
        if (count < 0 || done < count) out += to;
        in.check_string(out.size(), line);
        return out;
    }
    size_t start = 0;
    int64_t done = 0;
    for (;;) {
        size_t p = count >= 0 && done >= count ? std::string::npos : s.find(from, start);
        if (p == std::string::npos) break;
        out.append(s, start, p - start);
        out += to;
        in.check_string(out.size(), line);
        start = p + from.size();
        ++done;
    }
    out.append(s, start, std::string::npos);
    in.check_string(out.size(), line);
    in.charge_bytes(out.size(), line);
    return out;
}

std::string capitalize(const std::string& s) {
    std::string r = ascii_lower(s);
    if (!r.empty() && r[0] >= 'a' && r[0] <= 'z') r[0] = static_cast<char>(r[0] - 'a' + 'A');
    return r;
}

std::string title(const std::string& s) {
    std::string r;
    bool prev_letter = false;
    for (char c : s) {
        bool letter = is_alpha(c);
        if (letter)
            r += prev_letter ? ascii_lower(std::string(1, c)) : ascii_upper(std::string(1, c));
        else
            r += c;
        prev_letter = letter;
    }
    return r;
}

bool starts_or_ends(const std::string& s, const Value& arg, bool start, int line) {
    auto one = [&](const Value& v) {
        const std::string& p = need_string(v, start ? "startswith()" : "endswith()", line);
        if (p.size() > s.size()) return false;
        return start ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0;
    };
    if (arg.is_list()) {
        for (const auto& v : arg.as_list())
            if (one(v)) return true;
        return false;
    }
    return one(arg);
}

Value attribute_of(const Value& v, const std::string& path) {
    Value cur = v;
    size_t start = 0;
    for (;;) {
        size_t dot = path.find('.', start);
        std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        bool numeric =
            !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (cur.is_dict()) {
            const Value* f = cur.as_dict().find(part);
            cur = f ? *f : Value();
        } else if (numeric && cur.is_list()) {
            cur = python_index(cur, Value(static_cast<int64_t>(std::stoll(part.substr(0, 18)))));
        } else {
            cur = Value();
        }
        if (dot == std::string::npos) return cur;
        start = dot + 1;
    }
}

int sort_compare(const Value& a, const Value& b, bool case_sensitive) {
    if (a.is_string() && b.is_string() && !case_sensitive) {
        std::string x = ascii_lower(a.as_string()), y = ascii_lower(b.as_string());
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) {
        double x = a.as_number(), y = b.as_number();
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) return a.as_string().compare(b.as_string()) < 0 ? -1 : a.equals(b) ? 0 : 1;
    return 0;
}

using FilterFn = std::function<Value(Interpreter&, const Value&, const CallArgs&, int)>;
using TestFn = std::function<bool(Interpreter&, const Value&, const CallArgs&, int)>;

bool is_sequence(const Value& v) {
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}

Value select_like(Interpreter& in, const Value& input, const CallArgs& args, int line, bool attr, bool keep) {
    List out;
    size_t test_pos = attr ? 1 : 0;
    std::string attribute;
    if (attr) attribute = need_string(args.get(0, "attribute"), "selectattr()", line);
    Value test_name = args.get(test_pos, "test");
    CallArgs test_args;
    for (size_t i = test_pos + 1; i < args.positional.size(); ++i) test_args.positional.push_back(args.positional[i]);
    for (const auto& v : iterate(input, line)) {
        Value subject = attr ? attribute_of(v, attribute) : v;
        bool r = test_name.is_undefined()
                     ? subject.truthy()
                     : apply_test(in, need_string(test_name, "select()", line), subject, test_args, line);
        if (r == keep) out.push_back(v);
    }
    return Value::list(std::move(out));
}

const std::unordered_map<std::string, FilterFn>& filters() {
    static const std::unordered_map<std::string, FilterFn> table = [] {
        std::unordered_map<std::string, FilterFn> f;
        f["tojson"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            JsonDumpOptions o;
            Value ensure_ascii = a.get(0, "ensure_ascii");
            Value indent = a.get(1, "indent");
            Value separators = a.get(2, "separators");
            Value sort_keys = a.get(3, "sort_keys");
            o.ensure_ascii = ensure_ascii.truthy();
            o.sort_keys = sort_keys.truthy();
            if (indent.is_int()) {
                o.indent = static_cast<int>(std::clamp<int64_t>(indent.as_int(), 0, 64));
                o.item_separator = ",";
            } else if (indent.is_string()) {
                throw TemplateError(line, "tojson(): string indent is not supported");
            }
            if (separators.is_list() && separators.as_list().size() == 2) {
                o.item_separator = need_string(separators.as_list()[0], "tojson(separators)", line);
                o.key_separator = need_string(separators.as_list()[1], "tojson(separators)", line);
            }
            std::string s = json_dumps(v, o);
            in.check_string(s.size(), line);
            in.charge_bytes(s.size(), line);
            return Value(std::move(s));
        };
        f["safe"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v; };
        f["string"] = [](Interpreter& in, const Value& v, const CallArgs&, int line) {
            if (v.is_string()) return v;
            std::string s = v.str();
            in.charge_bytes(s.size(), line);
            return Value(std::move(s));
        };
        f["trim"] = [](Interpreter&, const Value& v, const CallArgs& a, int) {
            return Value(python_strip(v.str(), a.get(0, "chars"), true, true));
        };
        f["length"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            return Value(python_length(v, line));
        };
        f["count"] = f["length"];
        f["items"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            if (v.is_undefined()) return Value::list();
            return items_of(v, line);
        };
        f["default"] = [](Interpreter&, const Value& v, const CallArgs& a, int) {
            Value def = a.get(0, "default_value");
            bool boolean = a.get(1, "boolean").truthy();
            if (v.is_undefined() || (boolean && !v.truthy())) return def.is_undefined() ? Value("") : def;
            return v;
        };
        f["d"] = f["default"];
        f["upper"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return Value(ascii_upper(v.str())); };
        f["lower"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return Value(ascii_lower(v.str())); };
        f["capitalize"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return Value(capitalize(v.str())); };
        f["title"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return Value(title(v.str())); };
        f["replace"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            Value count = a.get(2, "count");
            return Value(replace_all(v.str(), a.get(0, "old").str(), a.get(1, "new").str(),
                                     count.is_undefined() || count.is_none() ? -1 : need_int(count, "replace", line),
                                     in, line));
        };
        f["join"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            std::string sep = a.get(0, "d").str();
            Value attr = a.get(1, "attribute");
            std::string out;
            bool first = true;
            for (const auto& item : iterate(v, line)) {
                if (!first) out += sep;
                first = false;
                out += attr.is_undefined() ? item.str() : attribute_of(item, attr.str()).str();
                in.check_string(out.size(), line);
            }
            in.charge_bytes(out.size(), line);
            return Value(std::move(out));
        };
        f["first"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            List l = iterate(v, line);
            return l.empty() ? Value() : l.front();
        };
        f["last"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            List l = iterate(v, line);
            return l.empty() ? Value() : l.back();
        };
        f["list"] = [](Interpreter& in, const Value& v, const CallArgs&, int line) {
            List l = iterate(v, line);
            in.charge_bytes(l.size() * sizeof(Value), line);
            return Value::list(std::move(l));
        };
        f["int"] = [](Interpreter&, const Value& v, const CallArgs& a, int) {
            Value def = a.get(0, "default");
            if (v.is_int()) return v;
            if (v.is_bool()) return Value(int64_t{v.as_bool()});
            if (v.is_float() && std::isfinite(v.as_float()) && std::fabs(v.as_float()) < 9.2e18)
                return Value(static_cast<int64_t>(v.as_float()));
            if (v.is_string()) {
                try {
                    size_t used = 0;
                    std::string s = python_strip(v.as_string(), Value(), true, true);
                    int64_t i = std::stoll(s, &used, 10);
                    if (used == s.size()) return Value(i);
                    double d = std::stod(s, &used);
                    if (used == s.size() && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
                } catch (const std::exception&) {
                }
            }
            return def.is_undefined() ? Value(int64_t{0}) : def;
        };
        f["float"] = [](Interpreter&, const Value& v, const CallArgs& a, int) {
            Value def = a.get(0, "default");
            if (v.is_float()) return v;
            if (v.is_int() || v.is_bool()) return Value(v.as_number());
            if (v.is_string()) {
                try {
                    size_t used = 0;
                    std::string s = python_strip(v.as_string(), Value(), true, true);
                    double d = std::stod(s, &used);
                    if (used == s.size()) return Value(d);
                } catch (const std::exception&) {
                }
            }
            return def.is_undefined() ? Value(0.0) : def;
        };
        f["abs"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            if (v.is_int() && v.as_int() != INT64_MIN) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
            if (v.is_float()) return Value(std::fabs(v.as_float()));
            throw TemplateError(line, "abs expects a number, got '" + v.type_name() + "'");
        };
        f["round"] = [](Interpreter&, const Value& v, const CallArgs& a, int line) {
            if (!v.is_number()) throw TemplateError(line, "round expects a number, got '" + v.type_name() + "'");
            Value p = a.get(0, "precision");
            int64_t prec = p.is_undefined() ? 0 : std::clamp<int64_t>(need_int(p, "round", line), -20, 20);
            std::string method = a.get(1, "method").is_undefined() ? "common" : a.get(1, "method").str();
            double scale = std::pow(10.0, static_cast<double>(prec));
            double x = v.as_number() * scale;
            double r = method == "floor" ? std::floor(x) : method == "ceil" ? std::ceil(x) : std::round(x);
            return Value(r / scale);
        };
        f["reverse"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            if (v.is_string()) return python_slice(v, Value(), Value(), Value(-1), line);
            List l = iterate(v, line);
            std::reverse(l.begin(), l.end());
            return Value::list(std::move(l));
        };
        f["sort"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            List l = iterate(v, line);
            bool reverse = a.get(0, "reverse").truthy();
            bool case_sensitive = a.get(1, "case_sensitive").truthy();
            Value attr = a.get(2, "attribute");
            in.charge_steps(l.size() * 8, line);
            std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) {
                Value kx = attr.is_undefined() ? x : attribute_of(x, attr.str());
                Value ky = attr.is_undefined() ? y : attribute_of(y, attr.str());
                int c = sort_compare(kx, ky, case_sensitive);
                return reverse ? c > 0 : c < 0;
            });
            return Value::list(std::move(l));
        };
        f["unique"] = [](Interpreter& in, const Value& v, const CallArgs&, int line) {
            List out;
            for (const auto& x : iterate(v, line)) {
                in.charge_steps(out.size() + 1, line);
                if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return x.equals(y); })) out.push_back(x);
            }
            return Value::list(std::move(out));
        };
        f["map"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            List out;
            const Value* attr = a.kwarg("attribute");
            for (const auto& x : iterate(v, line)) {
                if (attr) {
                    Value r = attribute_of(x, attr->str());
                    if (r.is_undefined())
                        if (const Value* d = a.kwarg("default")) r = *d;
                    out.push_back(r);
                } else {
                    if (a.positional.empty()) throw TemplateError(line, "map() needs a filter name or attribute=");
                    CallArgs rest;
                    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
                    rest.keyword = a.keyword;
                    out.push_back(apply_filter(in, need_string(a.positional[0], "map()", line), x, rest, line));
                }
            }
            return Value::list(std::move(out));
        };
        f["select"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            return select_like(in, v, a, line, false, true);
        };
        f["reject"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            return select_like(in, v, a, line, false, false);
        };
        f["selectattr"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            return select_like(in, v, a, line, true, true);
        };
        f["rejectattr"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            return select_like(in, v, a, line, true, false);
        };
        f["dictsort"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            Value items = items_of(v, line);
            List l = items.as_list();
            bool case_sensitive = a.get(0, "case_sensitive").truthy();
            bool by_value = a.get(1, "by").str() == "value";
            bool reverse = a.get(2, "reverse").truthy();
            in.charge_steps(l.size() * 8, line);
            std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) {
                int c = sort_compare(x.as_list()[by_value ? 1 : 0], y.as_list()[by_value ? 1 : 0], case_sensitive);
                return reverse ? c > 0 : c < 0;
            });
            return Value::list(std::move(l));
        };
        f["indent"] = [](Interpreter& in, const Value& v, const CallArgs& a, int line) {
            Value w = a.get(0, "width");
            std::string pad = w.is_string()
                                  ? w.as_string()
                                  : std::string(static_cast<size_t>(std::clamp<int64_t>(
                                                    w.is_undefined() ? 4 : need_int(w, "indent", line), 0, 256)),
                                                ' ');
            bool first = a.get(1, "first").truthy();
            bool blank = a.get(2, "blank").truthy();
            std::string s = v.str(), out;
            size_t start = 0;
            bool is_first = true;
            for (;;) {
                size_t nl = s.find('\n', start);
                std::string line_text = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
                bool indent = is_first ? first : (blank || !line_text.empty());
                if (indent) out += pad;
                out += line_text;
                in.check_string(out.size(), line);
                if (nl == std::string::npos) break;
                out += '\n';
                start = nl + 1;
                is_first = false;
            }
            return Value(std::move(out));
        };
        auto min_max = [](bool want_max) {
            return [want_max](Interpreter&, const Value& v, const CallArgs& a, int line) {
                List l = iterate(v, line);
                if (l.empty()) return Value();
                bool cs = a.get(0, "case_sensitive").truthy();
                Value best = l[0];
                for (const auto& x : l) {
                    int c = sort_compare(x, best, cs);
                    if (want_max ? c > 0 : c < 0) best = x;
                }
                return best;
            };
        };
        f["min"] = min_max(false);
        f["max"] = min_max(true);
        f["sum"] = [](Interpreter&, const Value& v, const CallArgs& a, int line) {
            Value start = a.get(2, "start");
            bool is_int = start.is_undefined() || start.is_int();
            int64_t ti = start.is_int() ? start.as_int() : 0;
            double tf = start.is_undefined() ? 0.0 : start.as_number();
            Value attr = a.get(0, "attribute");
            for (const auto& x0 : iterate(v, line)) {
                Value x = attr.is_undefined() ? x0 : attribute_of(x0, attr.str());
                if (!x.is_number() && !x.is_bool())
                    throw TemplateError(line, "sum(): cannot add '" + x.type_name() + "'");
                if (x.is_float()) is_int = false;
                if (is_int && __builtin_add_overflow(ti, x.is_int() ? x.as_int() : x.as_bool(), &ti))
                    throw TemplateError(line, "integer overflow in sum()");
                tf += x.as_number();
            }
            return is_int ? Value(ti) : Value(tf);
        };
        f["escape"] = [](Interpreter& in, const Value& v, const CallArgs&, int line) {
            std::string out;
            for (char c : v.str()) {
                switch (c) {
                    case '&':
                        out += "&amp;";
                        break;
                    case '<':
                        out += "&lt;";
                        break;
                    case '>':
                        out += "&gt;";
                        break;
                    case '"':
                        out += "&#34;";
                        break;
                    case '\'':
                        out += "&#39;";
                        break;
                    default:
                        out += c;
                }
            }
            in.check_string(out.size(), line);
            return Value(std::move(out));
        };
        f["e"] = f["escape"];
        f["attr"] = [](Interpreter&, const Value& v, const CallArgs& a, int) {
            if (!v.is_dict()) return Value();
            const Value* r = v.as_dict().find(a.get(0, "name").str());
            return r ? *r : Value();
        };
        f["wordcount"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            return Value(split(v.str(), Value(), -1, line).size());
        };
        return f;
    }();
    return table;
}

const std::unordered_map<std::string, TestFn>& tests() {
    static const std::unordered_map<std::string, TestFn> table = [] {
        std::unordered_map<std::string, TestFn> t;
        t["defined"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return !v.is_undefined(); };
        t["undefined"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_undefined(); };
        t["none"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_none(); };
        t["boolean"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_bool(); };
        t["true"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_bool() && v.as_bool(); };
        t["false"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_bool() && !v.as_bool(); };
        t["integer"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_int(); };
        t["float"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_float(); };
        t["number"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_number() || v.is_bool(); };
        t["string"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_string(); };
        t["mapping"] = [](Interpreter&, const Value& v, const CallArgs&, int) {
            return v.is_dict() && !v.is_namespace();
        };
        t["sequence"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return is_sequence(v); };
        t["iterable"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return is_sequence(v); };
        t["callable"] = [](Interpreter&, const Value& v, const CallArgs&, int) { return v.is_function(); };
        t["odd"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            return need_int(v, "odd", line) % 2 != 0;
        };
        t["even"] = [](Interpreter&, const Value& v, const CallArgs&, int line) {
            return need_int(v, "even", line) % 2 == 0;
        };
        t["divisibleby"] = [](Interpreter&, const Value& v, const CallArgs& a, int line) {
            int64_t d = need_int(a.get(0, "num"), "divisibleby", line);
            if (d == 0) throw TemplateError(line, "divisibleby(0)");
            if (d == -1) return true;
            return need_int(v, "divisibleby", line) % d == 0;
        };
        t["eq"] = [](Interpreter&, const Value& v, const CallArgs& a, int) { return v.equals(a.get(0, "other")); };
        t["equalto"] = t["eq"];
        t["=="] = t["eq"];
        t["ne"] = [](Interpreter&, const Value& v, const CallArgs& a, int) { return !v.equals(a.get(0, "other")); };
        t["!="] = t["ne"];
        auto cmp = [](auto pred) {
            return [pred](Interpreter&, const Value& v, const CallArgs& a, int line) {
                Value o = a.get(0, "other");
                if ((v.is_number() || v.is_bool()) && (o.is_number() || o.is_bool()))
                    return pred(v.as_number(), o.as_number());
                if (v.is_string() && o.is_string()) return pred(v.as_string().compare(o.as_string()), 0);
                throw TemplateError(line, "cannot compare '" + v.type_name() + "' and '" + o.type_name() + "'");
            };
        };
        t["lt"] = cmp([](auto x, auto y) { return x < y; });
        t["le"] = cmp([](auto x, auto y) { return x <= y; });
        t["gt"] = cmp([](auto x, auto y) { return x > y; });
        t["ge"] = cmp([](auto x, auto y) { return x >= y; });
        t["<"] = t["lt"];
        t["<="] = t["le"];
        t[">"] = t["gt"];
        t[">="] = t["ge"];
        t["lessthan"] = t["lt"];
        t["greaterthan"] = t["gt"];
        t["in"] = [](Interpreter&, const Value& v, const CallArgs& a, int line) {
            return python_contains(a.get(0, "seq"), v, line);
        };
        t["sameas"] = [](Interpreter&, const Value& v, const CallArgs& a, int) {
            Value o = a.get(0, "other");
            if (v.is_list() && o.is_list()) return v.list_ptr() == o.list_ptr();
            if (v.is_dict() && o.is_dict()) return &v.as_dict() == &o.as_dict();
            if ((v.is_none() && o.is_none()) || (v.is_undefined() && o.is_undefined())) return true;
            if (v.is_bool() && o.is_bool()) return v.as_bool() == o.as_bool();
            return false;
        };
        t["lower"] = [](Interpreter&, const Value& v, const CallArgs&, int) {
            return v.is_string() && ascii_lower(v.as_string()) == v.as_string();
        };
        t["upper"] = [](Interpreter&, const Value& v, const CallArgs&, int) {
            return v.is_string() && ascii_upper(v.as_string()) == v.as_string();
        };
        t["escaped"] = [](Interpreter&, const Value&, const CallArgs&, int) { return false; };
        return t;
    }();
    return table;
}

Value make_function(const std::string& name, std::function<Value(Interpreter&, const CallArgs&, int)> fn) {
    auto f = std::make_shared<Function>();
    f->name = name;
    f->call = std::move(fn);
    return Value(f);
}

}  // namespace

std::string python_strip(std::string_view s, const Value& chars, bool left, bool right) {
    if (chars.is_undefined() || chars.is_none()) {
        size_t b = 0, e = s.size();
        if (left)
            while (b < e && is_ascii_space(s[b])) ++b;
        if (right)
            while (e > b && is_ascii_space(s[e - 1])) --e;
        return std::string(s.substr(b, e - b));
    }
    std::string set = chars.str();
    std::vector<size_t> set_offs = utf8_offsets(set);
    auto in_set = [&](std::string_view cp) {
        for (size_t k = 0; k + 1 < set_offs.size(); ++k)
            if (std::string_view(set).substr(set_offs[k], set_offs[k + 1] - set_offs[k]) == cp) return true;
        return false;
    };
    std::vector<size_t> offs = utf8_offsets(s);
    size_t b = 0, e = offs.size() - 1;  // code point range [b, e)
    if (left)
        while (b < e && in_set(s.substr(offs[b], offs[b + 1] - offs[b]))) ++b;
    if (right)
        while (e > b && in_set(s.substr(offs[e - 1], offs[e] - offs[e - 1]))) --e;
    return std::string(s.substr(offs[b], offs[e] - offs[b]));
}

Value items_of(const Value& v, int line) {
    if (!v.is_dict()) throw TemplateError(line, "can only get item pairs from a mapping, got '" + v.type_name() + "'");
    List out;
    out.reserve(v.as_dict().size());
    for (const auto& [k, x] : v.as_dict().items) out.push_back(Value::list({Value(k), x}, true));
    return Value::list(std::move(out));
}

List iterate(const Value& v, int line) {
    if (v.is_list()) return v.as_list();
    if (v.is_undefined()) return {};
    if (v.is_dict()) {
        List keys;
        for (const auto& kv : v.as_dict().items) keys.emplace_back(kv.first);
        return keys;
    }
    if (v.is_string()) {
        List chars;
        const std::string& s = v.as_string();
        std::vector<size_t> offs = utf8_offsets(s);
        for (size_t k = 0; k + 1 < offs.size(); ++k) chars.emplace_back(s.substr(offs[k], offs[k + 1] - offs[k]));
        return chars;
    }
    throw TemplateError(line, "'" + v.type_name() + "' object is not iterable");
}

size_t python_length(const Value& v, int line) {
    if (v.is_string()) return utf8_length(v.as_string());
    if (v.is_list()) return v.as_list().size();
    if (v.is_dict()) return v.as_dict().size();
    if (v.is_undefined()) return 0;
    throw TemplateError(line, "object of type '" + v.type_name() + "' has no len()");
}

bool python_contains(const Value& c, const Value& item, int line) {
    if (c.is_string()) {
        if (!item.is_string())
            throw TemplateError(line, "'in <string>' requires a string on the left, got '" + item.type_name() + "'");
        return c.as_string().find(item.as_string()) != std::string::npos;
    }
    if (c.is_list()) {
        for (const auto& x : c.as_list())
            if (x.equals(item)) return true;
        return false;
    }
    if (c.is_dict()) return item.is_string() && c.as_dict().find(item.as_string()) != nullptr;
    if (c.is_undefined()) return false;
    throw TemplateError(line, "argument of type '" + c.type_name() + "' is not iterable");
}

Value python_index(const Value& obj, const Value& key) {
    if (obj.is_dict()) {
        if (key.is_string()) {
            const Value* v = obj.as_dict().find(key.as_string());
            return v ? *v : Value();
        }
        if (key.is_int() || key.is_bool()) {
            const Value* v = obj.as_dict().find(key.str());
            return v ? *v : Value();
        }
        return Value();
    }
    if (!(key.is_int() || key.is_bool())) return Value();
    int64_t i = key.is_int() ? key.as_int() : key.as_bool();
    if (obj.is_list()) {
        auto n = static_cast<int64_t>(obj.as_list().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value();
        return obj.as_list()[static_cast<size_t>(i)];
    }
    if (obj.is_string()) {
        const std::string& s = obj.as_string();
        std::vector<size_t> offs = utf8_offsets(s);
        auto n = static_cast<int64_t>(offs.size() - 1);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value();
        return Value(
            s.substr(offs[static_cast<size_t>(i)], offs[static_cast<size_t>(i) + 1] - offs[static_cast<size_t>(i)]));
    }
    return Value();
}

Value python_slice(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v, int line) {
    auto opt_int = [&](const Value& v, const char* what) -> std::optional<int64_t> {
        if (v.is_undefined() || v.is_none()) return std::nullopt;
        if (v.is_int()) return v.as_int();
        if (v.is_bool()) return int64_t{v.as_bool()};
        throw TemplateError(line, std::string("slice ") + what + " must be an integer, got '" + v.type_name() + "'");
    };
    int64_t step = opt_int(step_v, "step").value_or(1);
    if (step == 0) throw TemplateError(line, "slice step cannot be zero");
    if (step == INT64_MIN) step = -INT64_MAX;
    std::vector<size_t> offs;
    int64_t n;
    if (obj.is_list()) {
        n = static_cast<int64_t>(obj.as_list().size());
    } else if (obj.is_string()) {
        offs = utf8_offsets(obj.as_string());
        n = static_cast<int64_t>(offs.size() - 1);
    } else if (obj.is_undefined()) {
        return Value();
    } else {
        throw TemplateError(line, "'" + obj.type_name() + "' object cannot be sliced");
    }
    auto clamp_index = [&](std::optional<int64_t> v, int64_t def) -> int64_t {
        if (!v) return def;
        int64_t x = *v;
        if (x < 0) {
            x = x < -n ? (step < 0 ? -1 : 0) : x + n;
        } else if (x >= n) {
            x = step < 0 ? n - 1 : n;
        }
        return x;
    };
    int64_t start = clamp_index(opt_int(start_v, "start"), step < 0 ? n - 1 : 0);
    int64_t stop = clamp_index(opt_int(stop_v, "stop"), step < 0 ? -1 : n);
    std::vector<int64_t> picks;
    if (step > 0)
        for (int64_t i = start; i < stop; i += step) {
            picks.push_back(i);
            if (step > n) break;
        }
    else
        for (int64_t i = start; i > stop; i += step) {
            picks.push_back(i);
            if (-step > n) break;
        }
    if (obj.is_list()) {
        List out;
        out.reserve(picks.size());
        for (int64_t i : picks) out.push_back(obj.as_list()[static_cast<size_t>(i)]);
        return Value::list(std::move(out), obj.is_tuple());
    }
    const std::string& s = obj.as_string();
    std::string out;
    for (int64_t i : picks) {
        auto k = static_cast<size_t>(i);
        out.append(s, offs[k], offs[k + 1] - offs[k]);
    }
    return Value(std::move(out));
}

Value apply_filter(Interpreter& in, const std::string& name, const Value& input, const CallArgs& args, int line) {
    auto it = filters().find(name);
    if (it == filters().end()) throw TemplateError(line, "unknown filter '" + name + "'");
    return it->second(in, input, args, line);
}

bool has_test(const std::string& name) {
    return tests().count(name) != 0;
}

bool apply_test(Interpreter& in, const std::string& name, const Value& input, const CallArgs& args, int line) {
    auto it = tests().find(name);
    if (it == tests().end()) throw TemplateError(line, "unknown test '" + name + "'");
    return it->second(in, input, args, line);
}

bool call_method(Interpreter& in, const Value& obj, const std::string& name, const CallArgs& a, int line,
                 Value& result) {
    if (obj.is_string()) {
        const std::string& s = obj.as_string();
        if (name == "startswith" || name == "endswith") {
            result = Value(starts_or_ends(s, a.get(0, "prefix"), name == "startswith", line));
        } else if (name == "split" || name == "rsplit") {
            Value maxsplit = a.get(1, "maxsplit");
            int64_t m = maxsplit.is_undefined() ? -1 : need_int(maxsplit, "split()", line);
            if (name == "rsplit" && m >= 0) {
                // rsplit with a limit: split fully, then re-join the leading parts.
                List all = split(s, a.get(0, "sep"), -1, line);
                if (static_cast<int64_t>(all.size()) > m + 1) {
                    std::string sep = a.get(0, "sep").is_string() ? a.get(0, "sep").as_string() : " ";
                    size_t head = all.size() - static_cast<size_t>(m);
                    std::string joined;
                    for (size_t i = 0; i < head; ++i) joined += (i ? sep : "") + all[i].as_string();
                    List out{Value(joined)};
                    out.insert(out.end(), all.begin() + static_cast<std::ptrdiff_t>(head), all.end());
                    all = std::move(out);
                }
                result = Value::list(std::move(all));
            } else {
                result = Value::list(split(s, a.get(0, "sep"), m, line));
            }
            in.charge_bytes(s.size(), line);
        } else if (name == "strip" || name == "lstrip" || name == "rstrip") {
            result = Value(python_strip(s, a.get(0, "chars"), name != "rstrip", name != "lstrip"));
        } else if (name == "upper") {
            result = Value(ascii_upper(s));
        } else if (name == "lower") {
            result = Value(ascii_lower(s));
        } else if (name == "title") {
            result = Value(title(s));
        } else if (name == "capitalize") {
            result = Value(capitalize(s));
        } else if (name == "replace") {
            Value count = a.get(2, "count");
            result = Value(replace_all(s, need_string(a.get(0, "old"), "replace()", line),
                                       need_string(a.get(1, "new"), "replace()", line),
                                       count.is_undefined() ? -1 : need_int(count, "replace()", line), in, line));
        } else if (name == "find" || name == "rfind" || name == "index") {
            const std::string& sub = need_string(a.get(0, "sub"), "find()", line);
            size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
            if (p == std::string::npos && name == "index") throw TemplateError(line, "substring not found");
            result = p == std::string::npos ? Value(int64_t{-1}) : Value(utf8_length(s.substr(0, p)));
        } else if (name == "count") {
            const std::string& sub = need_string(a.get(0, "sub"), "count()", line);
            int64_t n = 0;
            if (sub.empty()) {
                n = static_cast<int64_t>(utf8_length(s)) + 1;
            } else {
                for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
            }
            result = Value(n);
        } else if (name == "join") {
            std::string out;
            bool first = true;
            for (const auto& x : iterate(a.get(0, "iterable"), line)) {
                if (!first) out += s;
                first = false;
                out += need_string(x, "join()", line);
                in.check_string(out.size(), line);
            }
            in.charge_bytes(out.size(), line);
            result = Value(std::move(out));
        } else if (name == "splitlines") {
            List out;
            size_t start = 0;
            while (start < s.size()) {
                size_t nl = s.find_first_of("\r\n", start);
                if (nl == std::string::npos) {
                    out.emplace_back(s.substr(start));
                    break;
                }
                out.emplace_back(s.substr(start, nl - start));
                start = nl + ((s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n') ? 2 : 1);
            }
            result = Value::list(std::move(out));
        } else if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" ||
                   name == "islower" || name == "isupper") {
            bool ok = !s.empty();
            for (char c : s) {
                bool d = c >= '0' && c <= '9', al = is_alpha(c);
                if (name == "isdigit")
                    ok &= d;
                else if (name == "isalpha")
                    ok &= al;
                else if (name == "isalnum")
                    ok &= d || al;
                else if (name == "isspace")
                    ok &= is_ascii_space(c);
            }
            if (name == "islower") ok = ascii_lower(s) == s && ascii_upper(s) != s;
            if (name == "isupper") ok = ascii_upper(s) == s && ascii_lower(s) != s;
            result = Value(ok);
        } else {
            return false;
        }
        return true;
    }
    if (obj.is_dict() && !obj.is_namespace()) {
        const Dict& d = obj.as_dict();
        if (name == "items") {
            result = items_of(obj, line);
        } else if (name == "keys") {
            result = Value::list(iterate(obj, line));
        } else if (name == "values") {
            List vals;
            for (const auto& kv : d.items) vals.push_back(kv.second);
            result = Value::list(std::move(vals));
        } else if (name == "get") {
            Value key = a.get(0, "key");
            const Value* v = key.is_string() ? d.find(key.as_string()) : nullptr;
            result = v ? *v : (a.positional.size() > 1 ? a.positional[1] : Value(None{}));
        } else {
            return false;
        }
        return true;
    }
    if (obj.is_list()) {
        const List& l = obj.as_list();
        if (name == "index") {
            Value x = a.get(0, "value");
            for (size_t i = 0; i < l.size(); ++i)
                if (l[i].equals(x)) {
                    result = Value(i);
                    return true;
                }
            throw TemplateError(line, x.repr() + " is not in list");
        }
        if (name == "count") {
            Value x = a.get(0, "value");
            result = Value(
                static_cast<size_t>(std::count_if(l.begin(), l.end(), [&](const Value& y) { return y.equals(x); })));
            return true;
        }
    }
    return false;
}

Value global_function(const std::string& name) {
    static const std::unordered_map<std::string, Value> globals = [] {
        std::unordered_map<std::string, Value> g;
        g["namespace"] = make_function("namespace", [](Interpreter& in, const CallArgs& a, int line) {
            Value ns = Value::namespace_object();
            for (const auto& p : a.positional)
                if (p.is_dict())
                    for (const auto& [k, v] : p.as_dict().items) ns.as_dict().set(k, v);
            for (const auto& [k, v] : a.keyword) ns.as_dict().set(k, v);
            in.check_value(ns, line);
            return ns;
        });
        g["dict"] = make_function("dict", [](Interpreter& in, const CallArgs& a, int line) {
            Value d = Value::dict();
            for (const auto& p : a.positional)
                if (p.is_dict())
                    for (const auto& [k, v] : p.as_dict().items) d.as_dict().set(k, v);
            for (const auto& [k, v] : a.keyword) d.as_dict().set(k, v);
            in.check_value(d, line);
            return d;
        });
        g["range"] = make_function("range", [](Interpreter& in, const CallArgs& a, int line) {
            int64_t start = 0, stop = 0, step = 1;
            auto n = a.positional.size();
            if (n == 1) {
                stop = need_int(a.positional[0], "range()", line);
            } else if (n == 2 || n == 3) {
                start = need_int(a.positional[0], "range()", line);
                stop = need_int(a.positional[1], "range()", line);
                if (n == 3) step = need_int(a.positional[2], "range()", line);
            } else {
                throw TemplateError(line, "range() takes 1 to 3 integer arguments");
            }
            if (step == 0) throw TemplateError(line, "range() step cannot be zero");
            List out;
            for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
                in.charge_steps(1, line);
                out.emplace_back(i);
                if (__builtin_add_overflow(i, step, &i)) break;
            }
            return Value::list(std::move(out));
        });
        g["raise_exception"] = make_function("raise_exception", [](Interpreter&, const CallArgs& a, int line) -> Value {
            throw TemplateError(line, "template raised an error: " + a.get(0, "message").str());
        });
        g["strftime_now"] = make_function("strftime_now", [](Interpreter&, const CallArgs& a, int line) {
            std::string fmt_s = a.get(0, "format").str();
            if (fmt_s.size() > 256) throw TemplateError(line, "strftime_now(): format too long");
            std::time_t now = std::time(nullptr);
            std::tm tm{};
            localtime_r(&now, &tm);
            char buf[1024];
            size_t n = fmt_s.empty() ? 0 : std::strftime(buf, sizeof buf, fmt_s.c_str(), &tm);
            return Value(std::string(buf, n));
        });
        return g;
    }();
    auto it = globals.find(name);
    return it == globals.end() ? Value() : it->second;
}

}  // namespace moeserve::jinja
