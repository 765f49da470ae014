#include "grammar/json_schema_grammar.h"

#include <fmt/format.h>

#include <cctype>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace moeserve {
std::string gbnf_literal(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7F) {
            out += fmt::format("\\x{:02X}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

namespace {

using json = nlohmann::ordered_json;

// The JSON building blocks, added to a grammar when first used.
const std::pair<const char*, const char*> kPrimitives[] = {
    {"space", R"(| " " | "\n" [ \t]{0,20})"},
    {"boolean", R"(("true" | "false") space)"},
    {"null", R"("null" space)"},
    {"char", R"([^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))"},
    {"string", R"("\"" char* "\"" space)"},
    {"integral-part", R"([0] | [1-9] [0-9]{0,15})"},
    {"decimal-part", R"([0-9]{1,16})"},
    {"integer", R"("-"? integral-part space)"},
    {"number", R"("-"? integral-part ("." decimal-part)? ([eE] [-+]? integral-part)? space)"},
    {"value", R"(object | array | string | number | boolean | null)"},
    {"object", R"("{" space ( string ":" space value ("," space string ":" space value)* )? "}" space)"},
    {"array", R"("[" space ( value ("," space value)* )? "]" space)"},
};

// What each primitive rule refers to.
const std::pair<const char*, std::vector<const char*>> kPrimitiveDeps[] = {
    {"boolean", {"space"}},
    {"null", {"space"}},
    {"string", {"char", "space"}},
    {"integer", {"integral-part", "space"}},
    {"number", {"integral-part", "decimal-part", "space"}},
    {"value", {"object", "array", "string", "number", "boolean", "null"}},
    {"object", {"space", "string", "value"}},
    {"array", {"space", "value"}},
};

const std::set<std::string> kIgnored = {
    "title",       "description",      "default",        "examples", "format",    "$schema",    "$id",
    "$comment",    "strict",           "name",           "readOnly", "writeOnly", "deprecated", "$defs",
    "definitions", "contentMediaType", "contentEncoding"};
const std::set<std::string> kHandled = {"type",      "properties",  "required", "additionalProperties",
                                        "items",     "prefixItems", "minItems", "maxItems",
                                        "minLength", "maxLength",   "enum",     "const",
                                        "anyOf",     "oneOf",       "allOf",    "$ref"};

std::string rule_name(const std::string& hint) {
    std::string n;
    for (char c : hint) n += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
    return n.empty() ? "r" : n;
}

class Converter {
  public:
    explicit Converter(const json& root) : root_(root) {}

    std::string convert() {
        const std::string root = visit(root_, "root");
        rules_.emplace(rules_.begin(), "root", root);
        std::string out;
        for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
        return out;
    }

  private:
    void use(const std::string& primitive) {
        if (used_.count(primitive)) return;
        used_.insert(primitive);
        for (const auto& [name, deps] : kPrimitiveDeps)
            if (primitive == name)
                for (const char* d : deps) use(d);
        for (const auto& [name, body] : kPrimitives)
            if (primitive == name) rules_.emplace_back(name, body);
    }

    std::string add_rule(const std::string& hint, const std::string& body) {
        std::string name = rule_name(hint);
        for (int k = 2; taken_.count(name); ++k) name = rule_name(hint) + "-" + std::to_string(k);
        taken_.insert(name);
        rules_.emplace_back(name, body);
        return name;
    }

    // Reserves a name before its body is known (for recursive $refs).
    std::string reserve(const std::string& hint) {
        std::string name = rule_name(hint);
        for (int k = 2; taken_.count(name); ++k) name = rule_name(hint) + "-" + std::to_string(k);
        taken_.insert(name);
        return name;
    }

    std::string literal_value(const json& v) {
        use("space");
        return gbnf_literal(v.dump()) + " space";
    }

    const json& resolve(const std::string& ref) {
        for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
            const std::string p = prefix;
            if (ref.rfind(p, 0) == 0) {
                const std::string key = p.substr(2, p.size() - 3);
                const std::string name = ref.substr(p.size());
                if (root_.contains(key) && root_[key].contains(name)) return root_[key][name];
            }
        }
        if (ref == "#") return root_;
        throw GrammarError(
            fmt::format("json_schema: cannot resolve $ref '{}' (only #/$defs/... and #/definitions/...)", ref));
    }

    // A GBNF expression for the values `schema` allows.
    std::string visit(const json& schema, const std::string& hint) {
        if (schema.is_boolean()) {
            if (!schema.get<bool>()) throw GrammarError("json_schema: 'false' allows no value");
            use("value");
            return "value";
        }
        if (!schema.is_object())
            throw GrammarError(fmt::format("json_schema at '{}': a schema must be an object", hint));
        for (const auto& [k, v] : schema.items())
            if (!kIgnored.count(k) && !kHandled.count(k))
                throw GrammarError(fmt::format("json_schema at '{}': keyword '{}' is not supported", hint, k));

        if (auto r = schema.find("$ref"); r != schema.end()) {
            const std::string ref = r->get<std::string>();
            if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
            const std::string name = reserve(ref.substr(ref.rfind('/') + 1));
            refs_[ref] = name;
            const std::string body = visit(resolve(ref), name);
            rules_.emplace_back(name, body);
            return name;
        }
        if (auto c = schema.find("const"); c != schema.end()) return literal_value(*c);
        if (auto e = schema.find("enum"); e != schema.end()) {
            if (!e->is_array() || e->empty()) throw GrammarError("json_schema: 'enum' must be a non-empty array");
            std::string alts;
            for (const auto& v : *e) alts += (alts.empty() ? "" : " | ") + literal_value(v);
            return "(" + alts + ")";
        }
        for (const char* key : {"anyOf", "oneOf"})
            if (auto a = schema.find(key); a != schema.end()) {
                if (!a->is_array() || a->empty())
                    throw GrammarError(fmt::format("json_schema: '{}' must be a non-empty array", key));
                std::string alts;
                for (size_t i = 0; i < a->size(); ++i)
                    alts += (alts.empty() ? "" : " | ") + visit((*a)[i], hint + "-" + std::to_string(i));
                return "(" + alts + ")";
            }
        if (auto a = schema.find("allOf"); a != schema.end()) {
            if (!a->is_array() || a->size() != 1)
                throw GrammarError("json_schema: 'allOf' is supported with one schema only");
            return visit((*a)[0], hint);
        }

        json type = schema.value("type", json());
        if (type.is_null()) {
            if (schema.contains("properties") || schema.contains("additionalProperties"))
                type = "object";
            else if (schema.contains("items") || schema.contains("prefixItems"))
                type = "array";
            else {
                use("value");
                return "value";
            }
        }
        if (type.is_array()) {
            std::string alts;
            for (const auto& t : type) {
                json one = schema;
                one["type"] = t;
                alts += (alts.empty() ? "" : " | ") + visit(one, hint + "-" + t.get<std::string>());
            }
            return "(" + alts + ")";
        }
        const std::string t = type.get<std::string>();
        if (t == "object") return object_rule(schema, hint);
        if (t == "array") return array_rule(schema, hint);
        if (t == "string") return string_rule(schema);
        if (t == "integer" || t == "number" || t == "boolean" || t == "null") {
            use(t);
            return t;
        }
        throw GrammarError(fmt::format("json_schema at '{}': unknown type '{}'", hint, t));
    }

    std::string object_rule(const json& schema, const std::string& hint) {
        use("space");
        std::set<std::string> required;
        if (auto r = schema.find("required"); r != schema.end())
            for (const auto& n : *r) required.insert(n.get<std::string>());
        std::vector<std::string> req, opt;
        if (auto p = schema.find("properties"); p != schema.end())
            for (const auto& [name, sub] : p->items()) {
                const std::string kv =
                    gbnf_literal(json(name).dump()) + " \":\" space " + visit(sub, hint + "-" + name);
                (required.count(name) ? req : opt).push_back(kv);
            }
        for (const auto& n : required)
            if (!schema.contains("properties") || !schema["properties"].contains(n))
                throw GrammarError(
                    fmt::format("json_schema at '{}': required property '{}' is not in properties", hint, n));

        std::string extra;  // further properties, when allowed
        const json additional = schema.value("additionalProperties", json(!schema.contains("properties")));
        if (!(additional.is_boolean() && !additional.get<bool>())) {
            use("string");
            const std::string value =
                additional.is_object() ? visit(additional, hint + "-additional") : (use("value"), "value");
            extra = "string \":\" space " + value;
        }

        std::string body;
        if (!req.empty()) {
            for (size_t i = 0; i < req.size(); ++i) body += (i ? " \",\" space " : "") + req[i];
            for (const auto& o : opt) body += " ( \",\" space " + o + " )?";
            if (!extra.empty()) body += " ( \",\" space " + extra + " )*";
        } else {
            // Any subset of the optional properties, in order, then extras.
            std::vector<std::string> firsts = opt;
            if (!extra.empty()) firsts.push_back(extra);
            std::string alts;
            for (size_t i = 0; i < firsts.size(); ++i) {
                std::string a = firsts[i];
                for (size_t j = i + 1; j < opt.size(); ++j) a += " ( \",\" space " + opt[j] + " )?";
                if (!extra.empty()) a += " ( \",\" space " + extra + " )*";
                alts += (alts.empty() ? "" : " | ") + a;
            }
            if (!alts.empty()) body = "( " + alts + " )?";
        }
        return add_rule(hint, "\"{\" space " + body + (body.empty() ? "" : " ") + "\"}\" space");
    }

    std::string array_rule(const json& schema, const std::string& hint) {
        use("space");
        if (auto p = schema.find("prefixItems"); p != schema.end()) {
            std::string body;
            for (size_t i = 0; i < p->size(); ++i)
                body += (i ? " \",\" space " : "") + visit((*p)[i], hint + "-" + std::to_string(i));
            return add_rule(hint, "\"[\" space " + body + " \"]\" space");
        }
        const std::string item =
            schema.contains("items") ? visit(schema["items"], hint + "-item") : (use("value"), "value");
        const int64_t min = schema.value("minItems", int64_t{0});
        const int64_t max = schema.value("maxItems", int64_t{-1});
        if (min < 0 || (max >= 0 && max < min) || min > kMaxRepetition || max > kMaxRepetition)
            throw GrammarError(fmt::format("json_schema at '{}': bad minItems/maxItems", hint));
        std::string body;
        if (max == 0) {
            body = "";
        } else if (min == 0) {
            const std::string more = max < 0 ? "*" : max == 1 ? "{0}" : fmt::format("{{0,{}}}", max - 1);
            body = "( " + item + (max == 1 ? "" : " ( \",\" space " + item + " )" + more) + " )?";
        } else {
            const std::string more =
                max < 0 ? fmt::format("{{{},}}", min - 1) : fmt::format("{{{},{}}}", min - 1, max - 1);
            body = item + " ( \",\" space " + item + " )" + more;
        }
        return add_rule(hint, "\"[\" space " + body + (body.empty() ? "" : " ") + "\"]\" space");
    }

    std::string string_rule(const json& schema) {
        const bool bounded = schema.contains("minLength") || schema.contains("maxLength");
        if (!bounded) {
            use("string");
            return "string";
        }
        use("char");
        use("space");
        const int64_t min = schema.value("minLength", int64_t{0});
        const int64_t max = schema.value("maxLength", int64_t{-1});
        if (min < 0 || (max >= 0 && max < min) || min > kMaxRepetition || max > kMaxRepetition)
            throw GrammarError("json_schema: bad minLength/maxLength");
        const std::string rep = max < 0 ? fmt::format("{{{},}}", min) : fmt::format("{{{},{}}}", min, max);
        return "(\"\\\"\" char" + rep + " \"\\\"\" space)";
    }

    const json& root_;
    std::vector<std::pair<std::string, std::string>> rules_;
    std::set<std::string> used_,
        taken_ = {"root",         "space",   "boolean", "null",  "char",   "string", "integral-part",
                  "decimal-part", "integer", "number",  "value", "object", "array"};
    std::map<std::string, std::string> refs_;
};

}  // namespace

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema) {
    try {
        return Converter(schema).convert();
    } catch (const nlohmann::json::exception& e) {  // a keyword with a value of the wrong type
        throw GrammarError(fmt::format("json_schema: malformed schema ({})", e.what()));
    }
}

std::string json_object_gbnf() {
    return json_schema_to_gbnf(json{{"type", "object"}});
}

}  // namespace moeserve
