// The chat layer (src/chat/): OpenAI chat requests -> prompt text, and model
// output -> OpenAI assistant messages, matching llama-server --jinja for
// Qwen3, Qwen3-Coder, GLM-4.7-Flash and Nemotron-3-Nano (and any template
// that stays within the same Jinja subset).
//
//   ChatTemplate       chat_template.h  load (GGUF vocab, file, name/source),
//                                       normalize a request like llama.cpp,
//                                       render, detect the template family
//   ChatSyntax         chat_output.h    how to read one request's output
//   parse_chat_output  chat_output.h    whole output -> reasoning_content,
//                                       content, tool_calls
//   ChatStreamParser   chat_output.h    text chunks -> OpenAI streaming deltas
//                                       (concatenated, equal to the whole parse)
//   jinja::Template    jinja_template.h the Jinja2 interpreter (Hugging Face
//                                       settings, bounded by RenderLimits)
//
// Internals: jinja_lexer.h, jinja_parser.h, jinja_ast.h, jinja_interpreter.h,
// jinja_builtins.h (filters, tests, methods, globals), jinja_value.h (Python
// data model, json.dumps), jinja_utf8.h, tool_arguments.h (typing XML-style
// argument values from the tool's JSON schema).
#pragma once

#include "chat/chat_output.h"
#include "chat/chat_template.h"
#include "chat/jinja_template.h"
