// Jinja lexer: template source -> tokens, with Jinja2's whitespace rules as
// Hugging Face configures them (trim_blocks and lstrip_blocks on, `-` and `+`
// modifiers, one trailing newline of the source dropped). Comments vanish here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::jinja {

enum class TokenKind {
    Text,        // literal template text, whitespace rules already applied
    BlockBegin,  // {%
    BlockEnd,    // %}
    VarBegin,    // {{
    VarEnd,      // }}
    Name,
    String,  // text holds the unescaped value
    Int,
    Float,
    Op,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
    Eof,
};

struct Token {
    TokenKind kind = TokenKind::Eof;
    std::string text;
    int line = 1;
    int64_t int_value = 0;
    double float_value = 0.0;
};

// Throws TemplateError (with the line) for an unterminated tag, comment or
// string, or a character that cannot start a token.
std::vector<Token> lex(std::string_view source);

}  // namespace moeserve::jinja
