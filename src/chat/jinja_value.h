// The value type of the Jinja interpreter: Python's data model as far as chat
// templates need it (undefined, None, bool, int, float, str, list/tuple,
// insertion-ordered dict, namespace, callable), with Python's str()/repr(),
// truthiness, equality and json.dumps-style serialisation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace moeserve::jinja {

// Any problem with a template, at parse or render time. line is 1-based, 0
// when unknown; what() already contains it ("line 12: unknown filter 'x'").
class TemplateError : public std::runtime_error {
  public:
    TemplateError(int line, const std::string& message);
    int line() const { return line_; }
    const std::string& message() const { return message_; }

  private:
    int line_;
    std::string message_;
};

class Value;
struct Dict;
struct Function;
using List = std::vector<Value>;
using ListPtr = std::shared_ptr<List>;
using DictPtr = std::shared_ptr<Dict>;
using FunctionPtr = std::shared_ptr<Function>;

// Deepest JSON accepted by Value::from_json.
inline constexpr int kMaxJsonDepth = 200;

struct Undefined {};
struct None {};

class Value {
  public:
    Value() = default;  // undefined
    Value(None) : v_(None{}) {}
    Value(bool b) : v_(b) {}
    Value(int i) : v_(int64_t{i}) {}
    Value(int64_t i) : v_(i) {}
    Value(size_t i) : v_(static_cast<int64_t>(i)) {}
    Value(double d) : v_(d) {}
    Value(std::string s) : v_(std::move(s)) {}
    Value(std::string_view s) : v_(std::string(s)) {}
    Value(const char* s) : v_(std::string(s)) {}
    Value(ListPtr l, bool tuple = false) : v_(std::move(l)), tuple_(tuple) {}
    Value(DictPtr d) : v_(std::move(d)) {}
    Value(FunctionPtr f) : v_(std::move(f)) {}

    static Value list(List items = {}, bool tuple = false);
    static Value dict();
    static Value namespace_object();
    static Value from_json(const nlohmann::ordered_json& j);

    bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
    bool is_none() const { return std::holds_alternative<None>(v_); }
    bool is_bool() const { return std::holds_alternative<bool>(v_); }
    bool is_int() const { return std::holds_alternative<int64_t>(v_); }
    bool is_float() const { return std::holds_alternative<double>(v_); }
    bool is_number() const { return is_int() || is_float(); }  // bools excluded
    bool is_string() const { return std::holds_alternative<std::string>(v_); }
    bool is_list() const { return std::holds_alternative<ListPtr>(v_); }
    bool is_tuple() const { return is_list() && tuple_; }
    bool is_dict() const { return std::holds_alternative<DictPtr>(v_); }
    bool is_namespace() const;
    bool is_function() const { return std::holds_alternative<FunctionPtr>(v_); }

    bool as_bool() const { return std::get<bool>(v_); }
    int64_t as_int() const { return std::get<int64_t>(v_); }
    double as_float() const { return std::get<double>(v_); }
    double as_number() const;  // int, float or bool as a double
    const std::string& as_string() const { return std::get<std::string>(v_); }
    const List& as_list() const { return *std::get<ListPtr>(v_); }
    const ListPtr& list_ptr() const { return std::get<ListPtr>(v_); }
    Dict& as_dict() const { return *std::get<DictPtr>(v_); }
    const Function& as_function() const { return *std::get<FunctionPtr>(v_); }

    bool truthy() const;
    std::string type_name() const;  // Python's: "str", "int", "dict", ...

    // Python str(): None -> "None", True -> "True", lists and dicts as repr.
    // Undefined prints as "".
    std::string str() const;
    // Python repr(): strings quoted.
    std::string repr() const;

    // The value as JSON (undefined and functions become null).
    nlohmann::ordered_json to_json() const;

    // Deep equality with Python's rules (1 == 1.0 == True).
    bool equals(const Value& other) const;

  private:
    std::variant<Undefined, None, bool, int64_t, double, std::string, ListPtr, DictPtr, FunctionPtr> v_;
    bool tuple_ = false;
};

// An insertion-ordered dict with string keys (what JSON gives; other keys are
// converted with str()). Also the storage of namespace() objects.
struct Dict {
    std::vector<std::pair<std::string, Value>> items;
    std::unordered_map<std::string, size_t> index;
    bool is_namespace = false;

    const Value* find(std::string_view key) const;
    void set(const std::string& key, Value v);
    size_t size() const { return items.size(); }
};

struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keyword;

    const Value* kwarg(std::string_view name) const;
    // Positional i, else keyword name, else undefined.
    Value get(size_t i, std::string_view name) const;
};

class Interpreter;

// A built-in function or a macro. The interpreter is passed so that macros
// can render and limits can be enforced.
struct Function {
    std::string name;
    std::function<Value(Interpreter&, const CallArgs&, int line)> call;
};

// Options of tojson / json.dumps.
struct JsonDumpOptions {
    int indent = -1;  // < 0: none
    std::string item_separator = ", ";
    std::string key_separator = ": ";
    bool ensure_ascii = false;
    bool sort_keys = false;
};
std::string json_dumps(const Value& v, const JsonDumpOptions& options);
// Python's repr() of a float ("0.5", "1e-07", "100000.0", "inf").
std::string python_float_repr(double d);
// Python's repr() of a str.
std::string python_string_repr(std::string_view s);

}  // namespace moeserve::jinja
