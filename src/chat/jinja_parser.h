// Jinja parser: tokens -> syntax tree, with Jinja2's operator precedence.
#pragma once

#include <string_view>

#include "chat/jinja_ast.h"

namespace moeserve::jinja {

// Nesting deeper than this (brackets, operators, blocks) is a syntax error,
// so that a hostile template cannot exhaust the stack.
inline constexpr int kMaxParseDepth = 128;

// Throws TemplateError naming the line and what was expected.
Body parse(std::string_view source);

}  // namespace moeserve::jinja
