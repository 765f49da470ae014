#include "chat/jinja_parser.h"

#include <initializer_list>

#include "chat/jinja_lexer.h"

namespace moeserve::jinja {
namespace {

class Parser {
  public:
    explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

    Body parse_template() {
        Body body = parse_body({});
        if (cur().kind != TokenKind::Eof) fail("unexpected '" + describe(cur()) + "'");
        return body;
    }

  private:
    struct DepthGuard {
        Parser& p;
        explicit DepthGuard(Parser& parser) : p(parser) {
            if (++p.depth_ > kMaxParseDepth) throw TemplateError(p.cur().line, "template nested too deeply");
        }
        ~DepthGuard() { --p.depth_; }
    };

    const Token& cur() const { return t_[i_]; }
    const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
    void advance() {
        if (i_ + 1 < t_.size()) ++i_;
    }
    [[noreturn]] void fail(const std::string& msg) const { throw TemplateError(cur().line, msg); }

    static std::string describe(const Token& t) {
        switch (t.kind) {
            case TokenKind::Text:
                return "text";
            case TokenKind::BlockBegin:
                return "{%";
            case TokenKind::BlockEnd:
                return "%}";
            case TokenKind::VarBegin:
                return "{{";
            case TokenKind::VarEnd:
                return "}}";
            case TokenKind::String:
                return "string";
            case TokenKind::Int:
            case TokenKind::Float:
                return "number";
            case TokenKind::Eof:
                return "end of template";
            default:
                return t.text;
        }
    }

    bool is_op(std::string_view op) const { return cur().kind == TokenKind::Op && cur().text == op; }
    bool is_name(std::string_view n) const { return cur().kind == TokenKind::Name && cur().text == n; }
    bool accept_op(std::string_view op) {
        if (!is_op(op)) return false;
        advance();
        return true;
    }
    bool accept_name(std::string_view n) {
        if (!is_name(n)) return false;
        advance();
        return true;
    }
    void expect_op(std::string_view op) {
        if (!accept_op(op)) fail("expected '" + std::string(op) + "', got '" + describe(cur()) + "'");
    }
    std::string expect_name(const char* what) {
        if (cur().kind != TokenKind::Name) fail(std::string("expected ") + what + ", got '" + describe(cur()) + "'");
        std::string n = cur().text;
        advance();
        return n;
    }
    void expect_block_end() {
        if (cur().kind != TokenKind::BlockEnd) fail("expected '%}', got '" + describe(cur()) + "'");
        advance();
    }

    // Statements until one of end_names starts a block; leaves the parser on
    // that name (after its '{%'). With no end names, runs to the end.
    Body parse_body(std::initializer_list<std::string_view> end_names) {
        DepthGuard guard(*this);
        Body body;
        for (;;) {
            const Token& tok = cur();
            if (tok.kind == TokenKind::Eof) {
                if (end_names.size() == 0) return body;
                std::string names;
                for (auto n : end_names) names += (names.empty() ? "'" : " or '") + std::string(n) + "'";
                fail("unexpected end of template, expected " + names);
            }
            if (tok.kind == TokenKind::Text) {
                auto s = std::make_unique<Stmt>(Stmt::Kind::Text, tok.line);
                s->text = tok.text;
                body.push_back(std::move(s));
                advance();
            } else if (tok.kind == TokenKind::VarBegin) {
                auto s = std::make_unique<Stmt>(Stmt::Kind::Print, tok.line);
                advance();
                s->expr = parse_tuple_expression();
                if (cur().kind != TokenKind::VarEnd) fail("expected '}}', got '" + describe(cur()) + "'");
                advance();
                body.push_back(std::move(s));
            } else if (tok.kind == TokenKind::BlockBegin) {
                const Token& name = peek();
                if (name.kind == TokenKind::Name)
                    for (auto n : end_names)
                        if (name.text == n) {
                            advance();
                            return body;
                        }
                advance();
                body.push_back(parse_statement());
            } else {
                fail("unexpected '" + describe(tok) + "'");
            }
        }
    }

    StmtPtr parse_statement() {
        int line = cur().line;
        if (cur().kind != TokenKind::Name) fail("expected a statement name after '{%'");
        std::string kw = cur().text;
        advance();
        if (kw == "if") return parse_if(line);
        if (kw == "for") return parse_for(line);
        if (kw == "set") return parse_set(line);
        if (kw == "macro") return parse_macro(line);
        if (kw == "break" || kw == "continue") {
            expect_block_end();
            return std::make_unique<Stmt>(kw == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, line);
        }
        if (kw == "filter") {
            auto s = std::make_unique<Stmt>(Stmt::Kind::FilterBlock, line);
            auto block = std::make_unique<Expr>(Expr::Kind::Name, line);
            block->name = "__block__";
            auto first = std::make_unique<Expr>(Expr::Kind::Filter, line);
            first->name = parse_dotted_name("a filter name");
            first->args.push_back(std::move(block));
            if (is_op("(")) parse_call_args(*first);
            s->expr = parse_filter_chain(std::move(first), true);
            expect_block_end();
            s->body = parse_body({"endfilter"});
            advance();
            expect_block_end();
            return s;
        }
        if (kw == "call") {
            auto s = std::make_unique<Stmt>(Stmt::Kind::CallBlock, line);
            if (is_op("(")) s->params = parse_params();
            s->expr = parse_expression();
            if (s->expr->kind != Expr::Kind::Call) fail("expected a macro call after 'call'");
            expect_block_end();
            s->body = parse_body({"endcall"});
            advance();
            expect_block_end();
            return s;
        }
        if (kw == "generation") {
            auto s = std::make_unique<Stmt>(Stmt::Kind::Scope, line);
            expect_block_end();
            s->body = parse_body({"endgeneration"});
            advance();
            expect_block_end();
            return s;
        }
        throw TemplateError(line, "unknown statement '" + kw + "'");
    }

    StmtPtr parse_if(int line) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::If, line);
        ExprPtr cond = parse_tuple_expression();
        expect_block_end();
        for (;;) {
            Body body = parse_body({"elif", "else", "endif"});
            s->branches.emplace_back(std::move(cond), std::move(body));
            std::string which = cur().text;
            advance();
            if (which == "elif") {
                cond = parse_tuple_expression();
                expect_block_end();
                continue;
            }
            if (which == "else") {
                expect_block_end();
                s->else_body = parse_body({"endif"});
                advance();
            }
            expect_block_end();
            return s;
        }
    }

    std::vector<std::string> parse_targets() {
        std::vector<std::string> names;
        bool paren = accept_op("(");
        do {
            names.push_back(expect_name("a variable name"));
        } while (accept_op(","));
        if (paren) expect_op(")");
        return names;
    }

    StmtPtr parse_for(int line) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::For, line);
        s->targets = parse_targets();
        if (!accept_name("in")) fail("expected 'in' in for loop, got '" + describe(cur()) + "'");
        s->expr = parse_or();
        if (is_op(",")) {
            auto tuple = std::make_unique<Expr>(Expr::Kind::Tuple, line);
            tuple->args.push_back(std::move(s->expr));
            while (accept_op(",")) {
                if (is_name("if") || cur().kind == TokenKind::BlockEnd) break;
                tuple->args.push_back(parse_or());
            }
            s->expr = std::move(tuple);
        }
        if (accept_name("if")) s->filter = parse_expression();
        if (accept_name("recursive")) fail("recursive loops are not supported");
        expect_block_end();
        s->body = parse_body({"else", "endfor"});
        if (cur().text == "else") {
            advance();
            expect_block_end();
            s->else_body = parse_body({"endfor"});
        }
        advance();
        expect_block_end();
        return s;
    }

    StmtPtr parse_set(int line) {
        std::string first = expect_name("a variable name after 'set'");
        if (accept_op(".")) {
            auto s = std::make_unique<Stmt>(Stmt::Kind::Set, line);
            s->targets.push_back(first);
            s->attr = expect_name("an attribute name");
            expect_op("=");
            s->expr = parse_tuple_expression();
            expect_block_end();
            return s;
        }
        std::vector<std::string> targets{first};
        while (accept_op(",")) targets.push_back(expect_name("a variable name"));
        if (accept_op("=")) {
            auto s = std::make_unique<Stmt>(Stmt::Kind::Set, line);
            s->targets = std::move(targets);
            s->expr = parse_tuple_expression();
            expect_block_end();
            return s;
        }
        if (targets.size() != 1) fail("a block 'set' takes one variable name");
        auto s = std::make_unique<Stmt>(Stmt::Kind::SetBlock, line);
        s->targets = std::move(targets);
        if (is_op("|")) {
            s->expr = parse_filter_chain(std::make_unique<Expr>(Expr::Kind::Name, line), true);
            ExprPtr* inner = &s->expr;
            while ((*inner)->kind == Expr::Kind::Filter) inner = &(*inner)->args[0];
            (*inner)->name = "__block__";
        }
        expect_block_end();
        s->body = parse_body({"endset"});
        advance();
        expect_block_end();
        return s;
    }

    std::vector<std::pair<std::string, ExprPtr>> parse_params() {
        std::vector<std::pair<std::string, ExprPtr>> params;
        expect_op("(");
        while (!is_op(")")) {
            if (!params.empty()) expect_op(",");
            if (is_op(")")) break;
            std::string name = expect_name("a parameter name");
            ExprPtr def;
            if (accept_op("=")) def = parse_expression();
            params.emplace_back(std::move(name), std::move(def));
        }
        expect_op(")");
        return params;
    }

    StmtPtr parse_macro(int line) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::Macro, line);
        s->text = expect_name("a macro name");
        s->params = parse_params();
        expect_block_end();
        s->body = parse_body({"endmacro"});
        advance();
        if (cur().kind == TokenKind::Name) advance();  // {% endmacro name %}
        expect_block_end();
        return s;
    }

    // expression [, expression ...] -> a tuple when a comma follows.
    ExprPtr parse_tuple_expression() {
        int line = cur().line;
        ExprPtr e = parse_expression();
        if (!is_op(",")) return e;
        auto tuple = std::make_unique<Expr>(Expr::Kind::Tuple, line);
        tuple->args.push_back(std::move(e));
        while (accept_op(",")) {
            if (cur().kind == TokenKind::BlockEnd || cur().kind == TokenKind::VarEnd) break;
            tuple->args.push_back(parse_expression());
        }
        return tuple;
    }

    ExprPtr parse_expression() {
        DepthGuard guard(*this);
        ExprPtr e = parse_or();
        while (is_name("if")) {
            int line = cur().line;
            advance();
            auto c = std::make_unique<Expr>(Expr::Kind::Cond, line);
            c->args.push_back(std::move(e));
            c->args.push_back(parse_or());
            c->args.push_back(accept_name("else") ? parse_expression() : nullptr);
            e = std::move(c);
        }
        return e;
    }

    ExprPtr binary(Expr::Kind kind, const std::string& op, ExprPtr l, ExprPtr r, int line) {
        auto b = std::make_unique<Expr>(kind, line);
        b->name = op;
        b->args.push_back(std::move(l));
        b->args.push_back(std::move(r));
        return b;
    }

    ExprPtr parse_or() {
        ExprPtr e = parse_and();
        while (is_name("or")) {
            int line = cur().line;
            advance();
            e = binary(Expr::Kind::Or, "or", std::move(e), parse_and(), line);
        }
        return e;
    }

    ExprPtr parse_and() {
        ExprPtr e = parse_not();
        while (is_name("and")) {
            int line = cur().line;
            advance();
            e = binary(Expr::Kind::And, "and", std::move(e), parse_not(), line);
        }
        return e;
    }

    ExprPtr parse_not() {
        if (is_name("not")) {
            DepthGuard guard(*this);
            auto n = std::make_unique<Expr>(Expr::Kind::Not, cur().line);
            advance();
            n->args.push_back(parse_not());
            return n;
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        ExprPtr e = parse_math1();
        for (;;) {
            int line = cur().line;
            if (cur().kind == TokenKind::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                                cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
                std::string op = cur().text;
                advance();
                e = binary(Expr::Kind::Binary, op, std::move(e), parse_math1(), line);
            } else if (is_name("in")) {
                advance();
                e = binary(Expr::Kind::Binary, "in", std::move(e), parse_math1(), line);
            } else if (is_name("not") && peek().kind == TokenKind::Name && peek().text == "in") {
                advance();
                advance();
                e = binary(Expr::Kind::Binary, "not in", std::move(e), parse_math1(), line);
            } else {
                return e;
            }
        }
    }

    ExprPtr parse_math1() {
        ExprPtr e = parse_concat();
        while (is_op("+") || is_op("-")) {
            std::string op = cur().text;
            int line = cur().line;
            advance();
            e = binary(Expr::Kind::Binary, op, std::move(e), parse_concat(), line);
        }
        return e;
    }

    ExprPtr parse_concat() {
        ExprPtr e = parse_math2();
        while (is_op("~")) {
            int line = cur().line;
            advance();
            e = binary(Expr::Kind::Binary, "~", std::move(e), parse_math2(), line);
        }
        return e;
    }

    ExprPtr parse_math2() {
        ExprPtr e = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            std::string op = cur().text;
            int line = cur().line;
            advance();
            e = binary(Expr::Kind::Binary, op, std::move(e), parse_pow(), line);
        }
        return e;
    }

    ExprPtr parse_pow() {
        ExprPtr e = parse_unary(true);
        while (is_op("**")) {
            int line = cur().line;
            advance();
            e = binary(Expr::Kind::Binary, "**", std::move(e), parse_unary(true), line);
        }
        return e;
    }

    ExprPtr parse_unary(bool with_filter) {
        DepthGuard guard(*this);
        int line = cur().line;
        ExprPtr e;
        if (is_op("-") || is_op("+")) {
            auto u = std::make_unique<Expr>(is_op("-") ? Expr::Kind::Neg : Expr::Kind::Pos, line);
            advance();
            u->args.push_back(parse_unary(false));
            e = std::move(u);
        } else {
            e = parse_primary();
        }
        e = parse_postfix(std::move(e));
        if (with_filter) e = parse_filter_chain(std::move(e), false);
        return e;
    }

    ExprPtr parse_primary() {
        const Token& tok = cur();
        int line = tok.line;
        switch (tok.kind) {
            case TokenKind::Name: {
                auto e = std::make_unique<Expr>(Expr::Kind::Literal, line);
                const std::string& n = tok.text;
                if (n == "true" || n == "True")
                    e->value = Value(true);
                else if (n == "false" || n == "False")
                    e->value = Value(false);
                else if (n == "none" || n == "None")
                    e->value = Value(None{});
                else {
                    e->kind = Expr::Kind::Name;
                    e->name = n;
                }
                advance();
                return e;
            }
            case TokenKind::String: {
                std::string s;
                while (cur().kind == TokenKind::String) {
                    s += cur().text;
                    advance();
                }
                auto e = std::make_unique<Expr>(Expr::Kind::Literal, line);
                e->value = Value(std::move(s));
                return e;
            }
            case TokenKind::Int: {
                auto e = std::make_unique<Expr>(Expr::Kind::Literal, line);
                e->value = Value(tok.int_value);
                advance();
                return e;
            }
            case TokenKind::Float: {
                auto e = std::make_unique<Expr>(Expr::Kind::Literal, line);
                e->value = Value(tok.float_value);
                advance();
                return e;
            }
            case TokenKind::Op:
                if (tok.text == "(") {
                    advance();
                    if (accept_op(")")) return std::make_unique<Expr>(Expr::Kind::Tuple, line);
                    ExprPtr e = parse_expression();
                    if (is_op(",")) {
                        auto tuple = std::make_unique<Expr>(Expr::Kind::Tuple, line);
                        tuple->args.push_back(std::move(e));
                        while (accept_op(",")) {
                            if (is_op(")")) break;
                            tuple->args.push_back(parse_expression());
                        }
                        e = std::move(tuple);
                    }
                    expect_op(")");
                    return e;
                }
                if (tok.text == "[") {
                    advance();
                    auto e = std::make_unique<Expr>(Expr::Kind::List, line);
                    while (!is_op("]")) {
                        if (!e->args.empty()) expect_op(",");
                        if (is_op("]")) break;
                        e->args.push_back(parse_expression());
                    }
                    expect_op("]");
                    return e;
                }
                if (tok.text == "{") {
                    advance();
                    auto e = std::make_unique<Expr>(Expr::Kind::Dict, line);
                    while (!is_op("}")) {
                        if (!e->args.empty()) expect_op(",");
                        if (is_op("}")) break;
                        e->args.push_back(parse_expression());
                        expect_op(":");
                        e->args.push_back(parse_expression());
                    }
                    expect_op("}");
                    return e;
                }
                break;
            default:
                break;
        }
        fail("unexpected '" + describe(tok) + "' in expression");
    }

    ExprPtr parse_postfix(ExprPtr e) {
        for (;;) {
            int line = cur().line;
            if (is_op(".")) {
                advance();
                if (cur().kind == TokenKind::Int) {
                    auto g = std::make_unique<Expr>(Expr::Kind::GetItem, line);
                    auto idx = std::make_unique<Expr>(Expr::Kind::Literal, line);
                    idx->value = Value(cur().int_value);
                    advance();
                    g->args.push_back(std::move(e));
                    g->args.push_back(std::move(idx));
                    e = std::move(g);
                } else {
                    auto g = std::make_unique<Expr>(Expr::Kind::GetAttr, line);
                    g->name = expect_name("an attribute name after '.'");
                    g->args.push_back(std::move(e));
                    e = std::move(g);
                }
            } else if (is_op("[")) {
                advance();
                e = parse_subscript(std::move(e), line);
            } else if (is_op("(")) {
                e = parse_call(std::move(e));
            } else {
                return e;
            }
        }
    }

    ExprPtr parse_subscript(ExprPtr obj, int line) {
        DepthGuard guard(*this);
        ExprPtr parts[3];
        bool is_slice = false;
        if (!is_op(":")) parts[0] = parse_expression();
        if (accept_op(":")) {
            is_slice = true;
            if (!is_op(":") && !is_op("]")) parts[1] = parse_expression();
            if (accept_op(":") && !is_op("]")) parts[2] = parse_expression();
        }
        expect_op("]");
        if (!is_slice) {
            if (!parts[0]) fail("empty subscript");
            auto g = std::make_unique<Expr>(Expr::Kind::GetItem, line);
            g->args.push_back(std::move(obj));
            g->args.push_back(std::move(parts[0]));
            return g;
        }
        auto s = std::make_unique<Expr>(Expr::Kind::Slice, line);
        s->args.push_back(std::move(obj));
        for (auto& p : parts) s->args.push_back(std::move(p));
        return s;
    }

    void parse_call_args(Expr& call) {
        DepthGuard guard(*this);
        expect_op("(");
        bool first = true;
        while (!is_op(")")) {
            if (!first) expect_op(",");
            first = false;
            if (is_op(")")) break;
            if (cur().kind == TokenKind::Name && peek().kind == TokenKind::Op && peek().text == "=") {
                std::string key = cur().text;
                advance();
                advance();
                call.kwargs.emplace_back(std::move(key), parse_expression());
            } else {
                if (!call.kwargs.empty()) fail("positional argument after keyword argument");
                call.args.push_back(parse_expression());
            }
        }
        expect_op(")");
    }

    ExprPtr parse_call(ExprPtr callee) {
        auto c = std::make_unique<Expr>(Expr::Kind::Call, cur().line);
        c->args.push_back(std::move(callee));
        parse_call_args(*c);
        return c;
    }

    std::string parse_dotted_name(const char* what) {
        std::string n = expect_name(what);
        while (is_op(".") && peek().kind == TokenKind::Name) {
            advance();
            n += "." + cur().text;
            advance();
        }
        return n;
    }

    // Filters ("| f(args)"), tests ("is [not] t args") and calls after a value.
    ExprPtr parse_filter_chain(ExprPtr e, bool filters_only) {
        for (;;) {
            int line = cur().line;
            if (is_op("|")) {
                advance();
                auto f = std::make_unique<Expr>(Expr::Kind::Filter, line);
                f->name = parse_dotted_name("a filter name after '|'");
                f->args.push_back(std::move(e));
                if (is_op("(")) parse_call_args(*f);
                e = std::move(f);
            } else if (!filters_only && is_name("is")) {
                advance();
                auto t = std::make_unique<Expr>(Expr::Kind::Test, line);
                t->negated = accept_name("not");
                t->name = parse_dotted_name("a test name after 'is'");
                t->args.push_back(std::move(e));
                if (is_op("(")) {
                    parse_call_args(*t);
                } else if ((cur().kind == TokenKind::Name || cur().kind == TokenKind::String ||
                            cur().kind == TokenKind::Int || cur().kind == TokenKind::Float || is_op("[") ||
                            is_op("{")) &&
                           !(is_name("else") || is_name("or") || is_name("and") || is_name("if") || is_name("in") ||
                             is_name("not") || is_name("is"))) {
                    t->args.push_back(parse_postfix(parse_primary()));
                }
                e = std::move(t);
            } else if (!filters_only && is_op("(")) {
                e = parse_call(std::move(e));
            } else {
                return e;
            }
        }
    }

    std::vector<Token> t_;
    size_t i_ = 0;
    int depth_ = 0;
};

}  // namespace

Body parse(std::string_view source) {
    return Parser(lex(source)).parse_template();
}

}  // namespace moeserve::jinja
