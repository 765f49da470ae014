#include "chat/tool_arguments.h"

#include "chat/jinja_value.h"

namespace moeserve {
namespace {

bool schema_is_string(const nlohmann::ordered_json& s, int depth) {
    if (!s.is_object() || depth > 8) return false;
    if (auto t = s.find("type"); t != s.end()) {
        if (t->is_string()) return *t == "string";
        if (t->is_array())
            for (const auto& x : *t)
                if (x == "string") return true;
        return false;
    }
    if (auto e = s.find("enum"); e != s.end() && e->is_array() && !e->empty()) {
        for (const auto& x : *e)
            if (!x.is_string()) return false;
        return true;
    }
    if (auto c = s.find("const"); c != s.end()) return c->is_string();
    for (const char* key : {"anyOf", "oneOf"}) {
        auto alts = s.find(key);
        if (alts == s.end() || !alts->is_array()) continue;
        bool any_string = false, all_string_or_null = true;
        for (const auto& a : *alts) {
            if (a.is_object() && a.value("type", nlohmann::ordered_json()) == "null") continue;
            if (schema_is_string(a, depth + 1))
                any_string = true;
            else
                all_string_or_null = false;
        }
        return any_string && all_string_or_null;
    }
    return false;
}

}  // namespace

bool tool_parameter_is_string(const nlohmann::ordered_json& tools, std::string_view tool_name, std::string_view key) {
    if (!tools.is_array()) return true;
    for (const auto& tool : tools) {
        if (!tool.is_object()) continue;
        const auto& fn = tool.contains("function") ? tool["function"] : tool;
        if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string() || fn["name"] != tool_name) continue;
        if (!fn.contains("parameters") || !fn["parameters"].is_object()) return true;
        const auto& params = fn["parameters"];
        if (!params.contains("properties") || !params["properties"].is_object()) return true;
        const auto& props = params["properties"];
        auto it = props.find(std::string(key));
        if (it == props.end()) return true;
        return schema_is_string(*it, 0);
    }
    return true;
}

std::string typed_value_json(std::string_view raw) {
    size_t b = raw.find_first_not_of(" \t\r\n");
    size_t e = raw.find_last_not_of(" \t\r\n");
    std::string_view t = b == std::string_view::npos ? std::string_view() : raw.substr(b, e - b + 1);
    if (t == "True") return "true";
    if (t == "False") return "false";
    if (t == "None") return "null";
    if (!t.empty()) {
        auto j = nlohmann::ordered_json::parse(t, nullptr, false);
        if (!j.is_discarded()) {
            try {
                return jinja::json_dumps(jinja::Value::from_json(j), {});
            } catch (const jinja::TemplateError&) {
                // nested too deeply: keep the text as a string
            }
        }
    }
    return "\"" + json_string_body(raw) + "\"";
}

std::string json_string_body(std::string_view text) {
    std::string quoted = jinja::json_dumps(jinja::Value(text), {});
    return quoted.substr(1, quoted.size() - 2);
}

}  // namespace moeserve
