// The built-in library of the Jinja interpreter (internal to src/chat/):
// Jinja2's filters and tests, the Python methods templates call on str, dict
// and list values, and the globals (namespace, range, dict, raise_exception,
// strftime_now).
#pragma once

#include <string>
#include <string_view>

#include "chat/jinja_value.h"

namespace moeserve::jinja {

class Interpreter;

// Each throws TemplateError(line, ...) for an unknown name or bad arguments.
Value apply_filter(Interpreter& in, const std::string& name, const Value& input, const CallArgs& args, int line);
bool apply_test(Interpreter& in, const std::string& name, const Value& input, const CallArgs& args, int line);
bool has_test(const std::string& name);
// Calls obj.name(args) when obj is a str, dict or list with such a method;
// returns false (result untouched) when there is none.
bool call_method(Interpreter& in, const Value& obj, const std::string& name, const CallArgs& args, int line,
                 Value& result);
// A global function (namespace, range, ...), or undefined.
Value global_function(const std::string& name);

// Python semantics shared with the evaluator.
Value items_of(const Value& v, int line);                // dict -> list of (key, value) tuples
List iterate(const Value& v, int line);                  // what `for` iterates: list items, dict keys, str chars
Value python_index(const Value& obj, const Value& key);  // obj[key]; undefined when missing
Value python_slice(const Value& obj, const Value& start, const Value& stop, const Value& step, int line);
size_t python_length(const Value& v, int line);
bool python_contains(const Value& container, const Value& item, int line);
std::string python_strip(std::string_view s, const Value& chars, bool left, bool right);

}  // namespace moeserve::jinja
