#include "chat/jinja_lexer.h"

#include <charconv>
#include <cstdlib>

#include "chat/jinja_utf8.h"
#include "chat/jinja_value.h"

namespace moeserve::jinja {
namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_name_char(char c) {
    return is_name_start(c) || is_digit(c);
}

int count_newlines(std::string_view s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

std::string normalize_newlines(std::string_view src) {
    std::string out;
    out.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
        if (src[i] == '\r') {
            out += '\n';
            if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
        } else {
            out += src[i];
        }
    }
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

class Lexer {
  public:
    explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {
        if (!src_.empty() && src_.back() == '\n') src_.pop_back();  // keep_trailing_newline = False
    }

    std::vector<Token> run() {
        bool line_starting = true;
        while (pos_ < src_.size()) {
            size_t start = find_tag(pos_);
            std::string text = src_.substr(pos_, start == std::string::npos ? std::string::npos : start - pos_);
            int text_line = line_;
            line_ += count_newlines(text);
            if (start == std::string::npos) {
                push_text(std::move(text), text_line);
                pos_ = src_.size();
                break;
            }
            char kind = src_[start + 1];
            char modifier = start + 2 < src_.size() ? src_[start + 2] : '\0';
            if (modifier == '-') {
                size_t end = text.find_last_not_of(" \t\n\r\f\v");
                text.erase(end == std::string::npos ? 0 : end + 1);
            } else if (modifier != '+' && kind != '{') {
                size_t l_pos = text.rfind('\n');
                l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
                if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
                    text.find_first_not_of(" \t\f\v\r", l_pos) == std::string::npos)
                    text.erase(l_pos);
            }
            push_text(std::move(text), text_line);
            pos_ = start + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);

            bool strip_after = false, keep_newline = false;
            if (kind == '#') {
                size_t end = src_.find("#}", pos_);
                if (end == std::string::npos) throw TemplateError(line_, "unterminated comment (missing '#}')");
                strip_after = end > pos_ && src_[end - 1] == '-';
                keep_newline = end > pos_ && src_[end - 1] == '+';
                line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
                pos_ = end + 2;
            } else {
                tokens_.push_back({kind == '%' ? TokenKind::BlockBegin : TokenKind::VarBegin, "", line_});
                lex_tag(kind == '%', strip_after, keep_newline);
            }
            size_t before = pos_;
            if (strip_after) {
                while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
            } else if (kind != '{' && !keep_newline && pos_ < src_.size() && src_[pos_] == '\n') {
                ++pos_;  // trim_blocks
            }
            line_ += count_newlines(std::string_view(src_).substr(before, pos_ - before));
            line_starting = pos_ > before && src_[pos_ - 1] == '\n';
        }
        tokens_.push_back({TokenKind::Eof, "", line_});
        return std::move(tokens_);
    }

  private:
    size_t find_tag(size_t from) const {
        for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
            if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
        }
        return std::string::npos;
    }

    void push_text(std::string text, int line) {
        if (!text.empty()) tokens_.push_back({TokenKind::Text, std::move(text), line});
    }

    bool at(std::string_view s) const { return src_.compare(pos_, s.size(), s) == 0; }

    // Tokens of one {% %} or {{ }} tag, up to and including its closer.
    void lex_tag(bool block, bool& strip_after, bool& keep_newline) {
        int open_line = line_;
        int depth = 0;  // brackets opened inside the tag: "}}" in a dict literal is not a closer
        for (;;) {
            while (pos_ < src_.size() && is_space(src_[pos_])) {
                if (src_[pos_] == '\n') ++line_;
                ++pos_;
            }
            if (pos_ >= src_.size())
                throw TemplateError(
                    open_line, block ? "unterminated '{%' tag (missing '%}')" : "unterminated '{{' tag (missing '}}')");
            if (depth == 0) {
                const char* closer = block ? "%}" : "}}";
                if (src_[pos_] == '-' && at(std::string("-") + closer)) {
                    strip_after = true;
                    pos_ += 3;
                    tokens_.push_back({block ? TokenKind::BlockEnd : TokenKind::VarEnd, "", line_});
                    return;
                }
                if (block && at("+%}")) {
                    keep_newline = true;
                    pos_ += 3;
                    tokens_.push_back({TokenKind::BlockEnd, "", line_});
                    return;
                }
                if (at(closer)) {
                    pos_ += 2;
                    tokens_.push_back({block ? TokenKind::BlockEnd : TokenKind::VarEnd, "", line_});
                    return;
                }
            }
            char c = src_[pos_];
            if (is_name_start(c)) {
                size_t b = pos_;
                while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
                tokens_.push_back({TokenKind::Name, src_.substr(b, pos_ - b), line_});
            } else if (is_digit(c)) {
                lex_number();
            } else if (c == '\'' || c == '"') {
                lex_string(c);
            } else {
                static const char* kOps2[] = {"//", "**", "==", "!=", "<=", ">="};
                std::string op;
                for (const char* o : kOps2)
                    if (at(o)) op = o;
                if (op.empty()) {
                    if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos)
                        throw TemplateError(line_, std::string("unexpected character '") + c + "' in tag");
                    op = std::string(1, c);
                }
                if (op == "(" || op == "[" || op == "{") ++depth;
                if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
                pos_ += op.size();
                tokens_.push_back({TokenKind::Op, op, line_});
            }
        }
    }

    void lex_number() {
        size_t b = pos_;
        bool is_float = false;
        auto digits = [&] {
            while (pos_ < src_.size() && (is_digit(src_[pos_]) || src_[pos_] == '_')) ++pos_;
        };
        digits();
        if (pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
            is_float = true;
            ++pos_;
            digits();
        }
        if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
            size_t p = pos_ + 1;
            if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
            if (p < src_.size() && is_digit(src_[p])) {
                is_float = true;
                pos_ = p;
                digits();
            }
        }
        std::string text;
        for (size_t i = b; i < pos_; ++i)
            if (src_[i] != '_') text += src_[i];
        Token t{is_float ? TokenKind::Float : TokenKind::Int, text, line_};
        if (is_float) {
            t.float_value = std::strtod(text.c_str(), nullptr);
        } else {
            auto r = std::from_chars(text.data(), text.data() + text.size(), t.int_value);
            if (r.ec != std::errc()) throw TemplateError(line_, "integer literal too large: " + text);
        }
        tokens_.push_back(std::move(t));
    }

    void lex_string(char quote) {
        int start_line = line_;
        ++pos_;
        std::string out;
        for (;;) {
            if (pos_ >= src_.size()) throw TemplateError(start_line, "unterminated string literal");
            char c = src_[pos_++];
            if (c == quote) break;
            if (c == '\n') ++line_;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= src_.size()) throw TemplateError(start_line, "unterminated string literal");
            char e = src_[pos_++];
            switch (e) {
                case 'n':
                    out += '\n';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '\'':
                    out += '\'';
                    break;
                case '"':
                    out += '"';
                    break;
                case 'a':
                    out += '\a';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'v':
                    out += '\v';
                    break;
                case '0':
                case '1':
                case '2':
                case '3':
                case '4':
                case '5':
                case '6':
                case '7': {
                    int v = e - '0';
                    for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++k)
                        v = v * 8 + (src_[pos_++] - '0');
                    utf8_append(out, static_cast<uint32_t>(v));
                    break;
                }
                case '\n':
                    ++line_;
                    break;  // line continuation
                case 'x':
                case 'u':
                case 'U': {
                    int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    uint32_t v = 0;
                    for (int k = 0; k < n; ++k) {
                        int h = pos_ < src_.size() ? hex_value(src_[pos_]) : -1;
                        if (h < 0) throw TemplateError(line_, std::string("truncated \\") + e + " escape in string");
                        v = v * 16 + static_cast<uint32_t>(h);
                        ++pos_;
                    }
                    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) v = kReplacementChar;
                    utf8_append(out, v);
                    break;
                }
                default:
                    out += '\\';
                    out += e;
            }
        }
        tokens_.push_back({TokenKind::String, std::move(out), start_line});
    }

    std::string src_;
    size_t pos_ = 0;
    int line_ = 1;
    std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) {
    return Lexer(source).run();
}

}  // namespace moeserve::jinja
