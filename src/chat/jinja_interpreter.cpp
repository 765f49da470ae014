#include "chat/jinja_interpreter.h"

#include <fmt/format.h>

#include <cmath>

#include "chat/jinja_builtins.h"
#include "chat/jinja_parser.h"

namespace moeserve::jinja {

const Value* Scope::lookup(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
        auto it = s->vars.find(name);
        if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
}

Template::Template(std::string_view source) : body_(std::make_shared<const Body>(parse(source))) {}

std::string Template::render(const Value& variables, const RenderLimits& limits) const {
    Interpreter in(limits);
    return in.render(*body_, variables);
}

std::string Template::render(const nlohmann::ordered_json& variables, const RenderLimits& limits) const {
    return render(Value::from_json(variables), limits);
}

std::string Interpreter::render(const Body& body, const Value& variables) {
    auto root = std::make_shared<Scope>();
    if (variables.is_dict())
        for (const auto& [k, v] : variables.as_dict().items) root->vars[k] = v;
    std::string out;
    out_ = &out;
    exec_body(body, root);
    out_ = nullptr;
    return out;
}

void Interpreter::charge_bytes(uint64_t n, int line) {
    work_bytes_ += n;
    if (work_bytes_ > limits_.max_work_bytes)
        throw TemplateError(line, "render limit reached: too much string and list work");
}

void Interpreter::charge_steps(uint64_t n, int line) {
    steps_ += n;
    if (steps_ > limits_.max_steps)
        throw TemplateError(line, "render limit reached: too many steps or loop iterations");
}

void Interpreter::check_string(size_t size, int line) const {
    if (size > limits_.max_string_bytes)
        throw TemplateError(line, fmt::format("render limit reached: string of {} bytes", size));
}

void Interpreter::check_value(const Value& v, int line, const Dict* container) {
    auto walk = [&](auto& self, const Value& x, int depth) -> void {
        charge_steps(1, line);
        if (depth > limits_.max_value_depth) throw TemplateError(line, "value nested too deeply");
        if (x.is_list()) {
            for (const auto& e : x.as_list()) self(self, e, depth + 1);
        } else if (x.is_dict()) {
            if (&x.as_dict() == container) throw TemplateError(line, "cannot store a namespace inside itself");
            for (const auto& kv : x.as_dict().items) self(self, kv.second, depth + 1);
        }
    };
    walk(walk, v, 0);
}

void Interpreter::emit(std::string_view s, int line) {
    total_output_ += s.size();
    if (total_output_ > limits_.max_output_bytes)
        throw TemplateError(line, fmt::format("render limit reached: output over {} bytes", limits_.max_output_bytes));
    out_->append(s);
}

std::string Interpreter::render_to_string(const Body& body, const ScopePtr& scope) {
    std::string buffer;
    std::string* saved = out_;
    out_ = &buffer;
    try {
        exec_body(body, scope);
    } catch (...) {
        out_ = saved;
        throw;
    }
    out_ = saved;
    return buffer;
}

Interpreter::Flow Interpreter::exec_body(const Body& body, const ScopePtr& scope) {
    for (const auto& s : body) {
        Flow f = exec(*s, scope);
        if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const ScopePtr& scope) {
    DepthGuard guard(*this, s.line);
    charge_steps(1, s.line);
    switch (s.kind) {
        case Stmt::Kind::Text:
            emit(s.text, s.line);
            break;
        case Stmt::Kind::Print: {
            Value v = eval(*s.expr, scope);
            emit(v.str(), s.line);
            break;
        }
        case Stmt::Kind::If:
            for (const auto& [cond, body] : s.branches)
                if (eval(*cond, scope).truthy()) return exec_body(body, scope);
            return exec_body(s.else_body, scope);
        case Stmt::Kind::For:
            exec_for(s, scope);
            break;
        case Stmt::Kind::Set: {
            Value v = eval(*s.expr, scope);
            if (!s.attr.empty()) {
                const Value* ns = scope->lookup(s.targets[0]);
                if (!ns || !ns->is_namespace())
                    throw TemplateError(s.line, "cannot assign attribute '" + s.attr + "' on '" + s.targets[0] +
                                                    "': it is not a namespace()");
                check_value(v, s.line, &ns->as_dict());
                ns->as_dict().set(s.attr, std::move(v));
            } else if (s.targets.size() == 1) {
                scope->vars[s.targets[0]] = std::move(v);
            } else {
                List parts = iterate(v, s.line);
                if (parts.size() != s.targets.size())
                    throw TemplateError(
                        s.line, fmt::format("cannot unpack {} values into {} names", parts.size(), s.targets.size()));
                for (size_t i = 0; i < parts.size(); ++i) scope->vars[s.targets[i]] = parts[i];
            }
            break;
        }
        case Stmt::Kind::SetBlock: {
            Value v(render_to_string(s.body, scope));
            if (s.expr) v = apply_filter_chain(*s.expr, v, scope);
            scope->vars[s.targets[0]] = std::move(v);
            break;
        }
        case Stmt::Kind::FilterBlock: {
            Value v = apply_filter_chain(*s.expr, Value(render_to_string(s.body, scope)), scope);
            emit(v.str(), s.line);
            break;
        }
        case Stmt::Kind::Macro:
            define_macro(s, scope);
            break;
        case Stmt::Kind::CallBlock: {
            auto caller = std::make_shared<Function>();
            caller->name = "caller";
            std::weak_ptr<Scope> weak = scope;
            const Stmt* sp = &s;
            caller->call = [sp, weak](Interpreter& in, const CallArgs& args, int line) -> Value {
                ScopePtr parent = weak.lock();
                if (!parent) throw TemplateError(line, "caller() used outside its call block");
                auto inner = std::make_shared<Scope>();
                inner->parent = parent;
                for (size_t i = 0; i < sp->params.size(); ++i) {
                    Value v = args.get(i, sp->params[i].first);
                    if (v.is_undefined() && sp->params[i].second) v = in.eval(*sp->params[i].second, inner);
                    inner->vars[sp->params[i].first] = std::move(v);
                }
                return Value(in.render_to_string(sp->body, inner));
            };
            Value callee = eval(*s.expr->args[0], scope);
            CallArgs args = eval_args(*s.expr, scope, 1);
            args.keyword.emplace_back("caller", Value(caller));
            emit(call(callee, args, s.line).str(), s.line);
            break;
        }
        case Stmt::Kind::Break:
            return Flow::Break;
        case Stmt::Kind::Continue:
            return Flow::Continue;
        case Stmt::Kind::Scope:
            return exec_body(s.body, scope);
    }
    return Flow::Normal;
}

void Interpreter::exec_for(const Stmt& s, const ScopePtr& scope) {
    Value iterable = eval(*s.expr, scope);
    List items = iterate(iterable, s.line);
    charge_steps(items.size(), s.line);
    auto bind = [&](Scope& target, const Value& item) {
        if (s.targets.size() == 1) {
            target.vars[s.targets[0]] = item;
            return;
        }
        List parts = iterate(item, s.line);
        if (parts.size() != s.targets.size())
            throw TemplateError(
                s.line, fmt::format("cannot unpack {} values into {} loop variables", parts.size(), s.targets.size()));
        for (size_t i = 0; i < parts.size(); ++i) target.vars[s.targets[i]] = parts[i];
    };
    if (s.filter) {
        List kept;
        for (const auto& item : items) {
            auto probe = std::make_shared<Scope>();
            probe->parent = scope;
            bind(*probe, item);
            if (eval(*s.filter, probe).truthy()) kept.push_back(item);
        }
        items = std::move(kept);
    }
    if (items.empty()) {
        exec_body(s.else_body, scope);
        return;
    }
    const size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
        charge_steps(1, s.line);
        auto iter = std::make_shared<Scope>();
        iter->parent = scope;
        bind(*iter, items[i]);
        Value loop = Value::dict();
        Dict& d = loop.as_dict();
        d.set("index", Value(i + 1));
        d.set("index0", Value(i));
        d.set("revindex", Value(n - i));
        d.set("revindex0", Value(n - i - 1));
        d.set("first", Value(i == 0));
        d.set("last", Value(i + 1 == n));
        d.set("length", Value(n));
        d.set("depth", Value(1));
        d.set("depth0", Value(0));
        if (i > 0) d.set("previtem", items[i - 1]);
        if (i + 1 < n) d.set("nextitem", items[i + 1]);
        auto cycle = std::make_shared<Function>();
        cycle->name = "loop.cycle";
        cycle->call = [i](Interpreter&, const CallArgs& args, int line) -> Value {
            if (args.positional.empty()) throw TemplateError(line, "loop.cycle() needs at least one argument");
            return args.positional[i % args.positional.size()];
        };
        d.set("cycle", Value(cycle));
        iter->vars["loop"] = std::move(loop);
        if (exec_body(s.body, iter) == Flow::Break) break;
    }
}

void Interpreter::define_macro(const Stmt& s, const ScopePtr& scope) {
    auto fn = std::make_shared<Function>();
    fn->name = s.text;
    const Stmt* sp = &s;
    std::weak_ptr<Scope> weak = scope;
    fn->call = [sp, weak](Interpreter& in, const CallArgs& args, int line) {
        return in.call_macro(*sp, weak, args, line);
    };
    scope->vars[s.text] = Value(fn);
}

Value Interpreter::call_macro(const Stmt& s, const std::weak_ptr<Scope>& defining, const CallArgs& args, int line) {
    ScopePtr parent = defining.lock();
    if (!parent) throw TemplateError(line, "macro '" + s.text + "' called outside the scope that defined it");
    auto scope = std::make_shared<Scope>();
    scope->parent = parent;
    List varargs;
    for (size_t i = 0; i < args.positional.size(); ++i) {
        if (i < s.params.size())
            scope->vars[s.params[i].first] = args.positional[i];
        else
            varargs.push_back(args.positional[i]);
    }
    Value kwargs = Value::dict();
    for (const auto& [k, v] : args.keyword) {
        bool known = false;
        for (const auto& p : s.params) known |= p.first == k;
        if (known)
            scope->vars[k] = v;
        else if (k == "caller")
            scope->vars["caller"] = v;
        else
            kwargs.as_dict().set(k, v);
    }
    for (const auto& [name, def] : s.params)
        if (!scope->vars.count(name)) scope->vars[name] = def ? eval(*def, scope) : Value();
    scope->vars["varargs"] = Value::list(std::move(varargs));
    scope->vars["kwargs"] = std::move(kwargs);
    return Value(render_to_string(s.body, scope));
}

Value Interpreter::call(const Value& callee, const CallArgs& args, int line) {
    if (!callee.is_function()) {
        if (callee.is_undefined()) throw TemplateError(line, "called an undefined value");
        throw TemplateError(line, "'" + callee.type_name() + "' object is not callable");
    }
    DepthGuard guard(*this, line);
    return callee.as_function().call(*this, args, line);
}

CallArgs Interpreter::eval_args(const Expr& e, const ScopePtr& scope, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], scope));
    for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v, scope));
    return args;
}

Value Interpreter::apply_filter_chain(const Expr& chain, const Value& input, const ScopePtr& scope) {
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    inner->vars["__block__"] = input;
    return eval(chain, inner);
}

namespace {

std::string describe(const Expr& e) {
    if (e.kind == Expr::Kind::Name) return "'" + e.name + "'";
    if (e.kind == Expr::Kind::GetAttr && e.args[0]->kind == Expr::Kind::Name)
        return "'" + e.args[0]->name + "." + e.name + "'";
    return "a value";
}

int compare_values(const Value& a, const Value& b, const char* op, int line) {
    if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) {
        if ((a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool())) {
            int64_t x = a.is_int() ? a.as_int() : a.as_bool(), y = b.is_int() ? b.as_int() : b.as_bool();
            return x < y ? -1 : x > y ? 1 : 0;
        }
        double x = a.as_number(), y = b.as_number();
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) {
        int c = a.as_string().compare(b.as_string());
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.is_list() && b.is_list()) {
        const List &x = a.as_list(), &y = b.as_list();
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (x[i].equals(y[i])) continue;
            return compare_values(x[i], y[i], op, line);
        }
        return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    }
    throw TemplateError(line,
                        fmt::format("'{}' not supported between '{}' and '{}'", op, a.type_name(), b.type_name()));
}

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

}  // namespace

Value Interpreter::eval_binary(const Expr& e, const ScopePtr& scope) {
    const std::string& op = e.name;
    Value a = eval(*e.args[0], scope);
    Value b = eval(*e.args[1], scope);
    int line = e.line;
    if (op == "~") {
        std::string s = a.str();
        std::string t = b.str();
        check_string(s.size() + t.size(), line);
        charge_bytes(s.size() + t.size(), line);
        return Value(s + t);
    }
    if (op == "==") return Value(a.equals(b));
    if (op == "!=") return Value(!a.equals(b));
    if (op == "in") return Value(python_contains(b, a, line));
    if (op == "not in") return Value(!python_contains(b, a, line));
    if (op == "<") return Value(compare_values(a, b, "<", line) < 0);
    if (op == ">") return Value(compare_values(a, b, ">", line) > 0);
    if (op == "<=") return Value(compare_values(a, b, "<=", line) <= 0);
    if (op == ">=") return Value(compare_values(a, b, ">=", line) >= 0);

    if (a.is_undefined() || b.is_undefined())
        throw TemplateError(
            line, describe(a.is_undefined() ? *e.args[0] : *e.args[1]) + " is undefined (operator '" + op + "')");
    auto unsupported = [&]() -> TemplateError {
        return TemplateError(
            line, fmt::format("unsupported operand types for {}: '{}' and '{}'", op, a.type_name(), b.type_name()));
    };
    bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
    bool nums = (a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool());
    int64_t x = ints ? (a.is_int() ? a.as_int() : a.as_bool()) : 0;
    int64_t y = ints ? (b.is_int() ? b.as_int() : b.as_bool()) : 0;
    auto overflow = [&]() { return TemplateError(line, "integer overflow in '" + op + "'"); };

    if (op == "+") {
        if (ints) {
            int64_t r;
            if (__builtin_add_overflow(x, y, &r)) throw overflow();
            return Value(r);
        }
        if (nums) return Value(a.as_number() + b.as_number());
        if (a.is_string() && b.is_string()) {
            size_t n = a.as_string().size() + b.as_string().size();
            check_string(n, line);
            charge_bytes(n, line);
            return Value(a.as_string() + b.as_string());
        }
        if (a.is_list() && b.is_list()) {
            List r = a.as_list();
            r.insert(r.end(), b.as_list().begin(), b.as_list().end());
            charge_bytes(r.size() * sizeof(Value), line);
            return Value::list(std::move(r));
        }
        throw unsupported();
    }
    if (op == "-") {
        if (ints) {
            int64_t r;
            if (__builtin_sub_overflow(x, y, &r)) throw overflow();
            return Value(r);
        }
        if (nums) return Value(a.as_number() - b.as_number());
        throw unsupported();
    }
    if (op == "*") {
        if (ints) {
            int64_t r;
            if (__builtin_mul_overflow(x, y, &r)) throw overflow();
            return Value(r);
        }
        if (nums) return Value(a.as_number() * b.as_number());
        const Value* seq = a.is_string() || a.is_list() ? &a : b.is_string() || b.is_list() ? &b : nullptr;
        const Value* count = seq == &a ? &b : &a;
        if (seq && (count->is_int() || count->is_bool())) {
            int64_t n = count->is_int() ? count->as_int() : count->as_bool();
            if (n < 0) n = 0;
            if (seq->is_string()) {
                const std::string& s = seq->as_string();
                uint64_t total;
                if (__builtin_mul_overflow(static_cast<uint64_t>(s.size()), static_cast<uint64_t>(n), &total))
                    total = UINT64_MAX;
                check_string(static_cast<size_t>(total), line);
                charge_bytes(s.size() * static_cast<uint64_t>(n), line);
                std::string r;
                r.reserve(s.size() * static_cast<size_t>(n));
                for (int64_t i = 0; i < n; ++i) r += s;
                return Value(std::move(r));
            }
            const List& l = seq->as_list();
            if (!l.empty()) charge_bytes(l.size() * static_cast<uint64_t>(n) * sizeof(Value), line);
            List r;
            for (int64_t i = 0; i < n && !l.empty(); ++i) r.insert(r.end(), l.begin(), l.end());
            return Value::list(std::move(r));
        }
        throw unsupported();
    }
    if (op == "/") {
        if (!nums) throw unsupported();
        if (b.as_number() == 0.0) throw TemplateError(line, "division by zero");
        return Value(a.as_number() / b.as_number());
    }
    if (op == "//" || op == "%") {
        if (!nums) {
            if (op == "%" && a.is_string()) throw TemplateError(line, "string formatting with '%' is not supported");
            throw unsupported();
        }
        if (b.as_number() == 0.0) throw TemplateError(line, "division by zero");
        if (ints) {
            if (x == INT64_MIN && y == -1) throw overflow();
            int64_t q = floor_div(x, y);
            return op == "//" ? Value(q) : Value(x - q * y);
        }
        double p = a.as_number(), q = b.as_number();
        double fq = std::floor(p / q);
        return op == "//" ? Value(fq) : Value(p - fq * q);
    }
    if (op == "**") {
        if (!nums) throw unsupported();
        if (ints && y >= 0) {
            int64_t r = 1, base = x;
            for (int64_t k = y; k > 0; k >>= 1) {
                if (k & 1)
                    if (__builtin_mul_overflow(r, base, &r)) throw overflow();
                if (k > 1 && __builtin_mul_overflow(base, base, &base)) throw overflow();
            }
            return Value(r);
        }
        return Value(std::pow(a.as_number(), b.as_number()));
    }
    throw TemplateError(line, "unknown operator '" + op + "'");
}

Value Interpreter::eval_call(const Expr& e, const ScopePtr& scope) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::GetAttr) {
        Value obj = eval(*callee.args[0], scope);
        CallArgs args = eval_args(e, scope, 1);
        Value result;
        if (call_method(*this, obj, callee.name, args, e.line, result)) return result;
        if (obj.is_dict())
            if (const Value* fn = obj.as_dict().find(callee.name); fn && fn->is_function())
                return call(*fn, args, e.line);
        if (obj.is_undefined())
            throw TemplateError(e.line,
                                "cannot call '" + callee.name + "()': " + describe(*callee.args[0]) + " is undefined");
        throw TemplateError(e.line, "'" + obj.type_name() + "' object has no method '" + callee.name + "'");
    }
    Value fn = eval(callee, scope);
    CallArgs args = eval_args(e, scope, 1);
    if (fn.is_undefined()) throw TemplateError(e.line, describe(callee) + " is undefined and cannot be called");
    return call(fn, args, e.line);
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
    DepthGuard guard(*this, e.line);
    charge_steps(1, e.line);
    switch (e.kind) {
        case Expr::Kind::Literal:
            return e.value;
        case Expr::Kind::Name: {
            if (const Value* v = scope->lookup(e.name)) return *v;
            return global_function(e.name);
        }
        case Expr::Kind::List:
        case Expr::Kind::Tuple: {
            List items;
            items.reserve(e.args.size());
            for (const auto& a : e.args) items.push_back(eval(*a, scope));
            return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
        }
        case Expr::Kind::Dict: {
            Value d = Value::dict();
            for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
                Value k = eval(*e.args[i], scope);
                d.as_dict().set(k.str(), eval(*e.args[i + 1], scope));
            }
            return d;
        }
        case Expr::Kind::GetAttr: {
            Value obj = eval(*e.args[0], scope);
            if (obj.is_dict())
                if (const Value* v = obj.as_dict().find(e.name)) return *v;
            return Value();
        }
        case Expr::Kind::GetItem: {
            Value obj = eval(*e.args[0], scope);
            Value key = eval(*e.args[1], scope);
            return python_index(obj, key);
        }
        case Expr::Kind::Slice: {
            Value obj = eval(*e.args[0], scope);
            Value parts[3];
            for (int i = 0; i < 3; ++i)
                if (e.args[1 + i]) parts[i] = eval(*e.args[1 + i], scope);
            Value r = python_slice(obj, parts[0], parts[1], parts[2], e.line);
            if (r.is_list())
                charge_bytes(r.as_list().size() * sizeof(Value), e.line);
            else if (r.is_string())
                charge_bytes(r.as_string().size(), e.line);
            return r;
        }
        case Expr::Kind::Call:
            return eval_call(e, scope);
        case Expr::Kind::Filter: {
            Value input = eval(*e.args[0], scope);
            CallArgs args = eval_args(e, scope, 1);
            return apply_filter(*this, e.name, input, args, e.line);
        }
        case Expr::Kind::Test: {
            if (!has_test(e.name)) throw TemplateError(e.line, "unknown test '" + e.name + "'");
            Value input = eval(*e.args[0], scope);
            CallArgs args = eval_args(e, scope, 1);
            bool r = apply_test(*this, e.name, input, args, e.line);
            return Value(e.negated ? !r : r);
        }
        case Expr::Kind::Not:
            return Value(!eval(*e.args[0], scope).truthy());
        case Expr::Kind::Neg:
        case Expr::Kind::Pos: {
            Value v = eval(*e.args[0], scope);
            bool neg = e.kind == Expr::Kind::Neg;
            if (v.is_int() || v.is_bool()) {
                int64_t i = v.is_int() ? v.as_int() : v.as_bool();
                if (neg && i == INT64_MIN) throw TemplateError(e.line, "integer overflow in unary '-'");
                return Value(neg ? -i : i);
            }
            if (v.is_float()) return Value(neg ? -v.as_float() : v.as_float());
            throw TemplateError(
                e.line, std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" + v.type_name() + "'");
        }
        case Expr::Kind::Binary:
            return eval_binary(e, scope);
        case Expr::Kind::And: {
            Value a = eval(*e.args[0], scope);
            return a.truthy() ? eval(*e.args[1], scope) : a;
        }
        case Expr::Kind::Or: {
            Value a = eval(*e.args[0], scope);
            return a.truthy() ? a : eval(*e.args[1], scope);
        }
        case Expr::Kind::Cond: {
            if (eval(*e.args[1], scope).truthy()) return eval(*e.args[0], scope);
            return e.args[2] ? eval(*e.args[2], scope) : Value();
        }
    }
    return Value();
}

}  // namespace moeserve::jinja
