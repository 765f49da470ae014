// Syntax tree of a parsed Jinja template: expressions and statements, each
// with the source line it came from for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace moeserve::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Expr {
    enum class Kind {
        Literal,  // value
        Name,     // name
        List,     // args: items
        Tuple,    // args: items
        Dict,     // args: key0, value0, key1, value1, ...
        GetAttr,  // args[0].name
        GetItem,  // args[0][args[1]]
        Slice,    // args[0][args[1]:args[2]:args[3]], missing parts null
        Call,     // args[0](args[1..], kwargs)
        Filter,   // args[0] | name(args[1..], kwargs)
        Test,     // args[0] is [not] name(args[1..])
        Not,      // not args[0]
        Neg,      // -args[0]
        Pos,      // +args[0]
        Binary,   // args[0] name args[1]; name is the operator ("+", "==", "in", "not in", "~", ...)
        And,      // args[0] and args[1]
        Or,       // args[0] or args[1]
        Cond,     // args[0] if args[1] else args[2] (args[2] may be null)
    };
    Kind kind;
    int line = 0;
    Value value;
    std::string name;
    std::vector<ExprPtr> args;
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
    bool negated = false;

    Expr(Kind k, int l) : kind(k), line(l) {}
};

struct Stmt {
    enum class Kind {
        Text,      // text
        Print,     // {{ expr }}
        If,        // branches (condition, body); else_body
        For,       // for targets in expr [if filter]: body [else: else_body]
        Set,       // set targets = expr, or set ns.attr = expr (attr non-empty)
        SetBlock,  // set targets[0] %}body{% endset, optional filter chain in expr (applied to Name "__block__")
        Macro,     // macro name(params) body
        Break,
        Continue,
        FilterBlock,  // filter chain in expr applied to the rendered body
        CallBlock,    // call macro (expr) with body available as caller()
        Scope,        // a transparent block (generation)
    };
    Kind kind;
    int line = 0;
    std::string text;
    ExprPtr expr;
    ExprPtr filter;  // For: inline filter
    std::vector<std::string> targets;
    std::string attr;  // Set on a namespace attribute: targets[0].attr
    std::vector<std::pair<ExprPtr, Body>> branches;
    Body body;
    Body else_body;
    std::vector<std::pair<std::string, ExprPtr>> params;  // Macro parameters with defaults (null: none)

    Stmt(Kind k, int l) : kind(k), line(l) {}
};

}  // namespace moeserve::jinja
