// The tree-walking evaluator behind jinja::Template (internal to src/chat/):
// scopes, output buffers, limits, and the calls into the built-in filters,
// tests, methods and globals (jinja_builtins.h).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "chat/jinja_ast.h"
#include "chat/jinja_template.h"

namespace moeserve::jinja {

struct Scope {
    std::unordered_map<std::string, Value> vars;
    std::shared_ptr<Scope> parent;

    const Value* lookup(const std::string& name) const;
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
  public:
    explicit Interpreter(const RenderLimits& limits) : limits_(limits) {}

    std::string render(const Body& body, const Value& variables);

    // Accounting used by the built-ins. Each throws TemplateError at `line`
    // once its limit is passed.
    void charge_bytes(uint64_t n, int line);
    void charge_steps(uint64_t n, int line);
    void check_string(size_t size, int line) const;
    // Rejects a value nested deeper than the limit, or one that contains
    // `container` (a namespace being written to), which would form a cycle.
    void check_value(const Value& v, int line, const Dict* container = nullptr);
    const RenderLimits& limits() const { return limits_; }

    // Calls a function value (macro or built-in).
    Value call(const Value& callee, const CallArgs& args, int line);

  private:
    enum class Flow { Normal, Break, Continue };

    struct DepthGuard {
        Interpreter& in;
        DepthGuard(Interpreter& interp, int line) : in(interp) {
            if (++in.depth_ > in.limits_.max_depth)
                throw TemplateError(line, "render nested too deeply (recursion limit reached)");
        }
        ~DepthGuard() { --in.depth_; }
    };

    Flow exec_body(const Body& body, const ScopePtr& scope);
    Flow exec(const Stmt& s, const ScopePtr& scope);
    void exec_for(const Stmt& s, const ScopePtr& scope);
    void define_macro(const Stmt& s, const ScopePtr& scope);
    Value call_macro(const Stmt& s, const std::weak_ptr<Scope>& defining, const CallArgs& args, int line);
    std::string render_to_string(const Body& body, const ScopePtr& scope);

    Value eval(const Expr& e, const ScopePtr& scope);
    Value eval_binary(const Expr& e, const ScopePtr& scope);
    Value eval_call(const Expr& e, const ScopePtr& scope);
    CallArgs eval_args(const Expr& e, const ScopePtr& scope, size_t first);
    Value apply_filter_chain(const Expr& chain, const Value& input, const ScopePtr& scope);

    void emit(std::string_view s, int line);

    const RenderLimits& limits_;
    std::string* out_ = nullptr;
    size_t total_output_ = 0;
    uint64_t work_bytes_ = 0;
    uint64_t steps_ = 0;
    int depth_ = 0;
};

}  // namespace moeserve::jinja
