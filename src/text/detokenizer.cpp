#include "text/detokenizer.h"

#include "text/tokenizer.h"
#include "text/unicode.h"

namespace moeserve {

namespace text {

std::string clean_up_spaces(std::string_view in) {
    // Pass 1: " ?", " !", " .", " ," lose the space.
    std::string a;
    a.reserve(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == ' ' && i + 1 < in.size()) {
            char n = in[i + 1];
            if (n == '?' || n == '!' || n == '.' || n == ',') continue;
        }
        a += c;
    }
    // Pass 2: " ' " becomes "'"; the dropped trailing space cannot serve as the
    // leading space of another match.
    std::string b;
    b.reserve(a.size());
    bool zeroed_prev = false;
    for (size_t i = 0; i < a.size(); ++i) {
        char c = a[i];
        if (i >= 1 && c == '\'' && i + 1 < a.size() && !zeroed_prev && a[i - 1] == ' ' && a[i + 1] == ' ') {
            b.pop_back();
            b += c;
            ++i;  // skip the space after
            zeroed_prev = true;
            continue;
        }
        zeroed_prev = false;
        b += c;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it).
    std::string out;
    out.reserve(b.size());
    for (size_t i = 0; i < b.size(); ++i) {
        char c = b[i];
        if (i >= 1 && c == '\'' && b[i - 1] == ' ' && i + 1 < b.size()) {
            char x1 = b[i + 1];
            bool drop = x1 == 's' || x1 == 'm';
            if (!drop && x1 != 't' && x1 != 'd' && i + 2 < b.size()) {
                char x2 = b[i + 2];
                drop = (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e');
            }
            if (drop) out.pop_back();
        }
        out += c;
    }
    return out;
}

void SpaceCleaner::Pass::write(char c, std::string& out) {
    if (holding) out += ' ';
    holding = c == ' ';
    if (!holding) out += c;
}

// Each run consumes its queue as far as the lookahead allows and writes into
// the next pass's queue (or the output).
void SpaceCleaner::run1(std::string& out, bool at_end) {
    Pass& p = p1_;
    size_t i = 0;
    for (; i < p.queue.size(); ++i) {
        char c = p.queue[i];
        if (c == '?' || c == '!' || c == '.' || c == ',') p.drop_held();
        p.write(c, out);
    }
    p.queue.clear();
    if (at_end && p.holding) {
        out += ' ';
        p.holding = false;
    }
}

void SpaceCleaner::run2(std::string& out, bool at_end) {
    Pass& p = p2_;
    size_t i = 0;
    while (i < p.queue.size()) {
        char c = p.queue[i];
        if (!p.started) {
            p.write(c, out);
            p.prev = c;
            p.started = true;
            ++i;
            continue;
        }
        if (c == '\'' && p.prev == ' ') {
            if (i + 1 >= p.queue.size()) {
                if (!at_end) break;  // wait for the next byte
            } else if (p.queue[i + 1] == ' ') {
                p.drop_held();
                p.write(c, out);
                p.prev = '\0';
                i += 2;
                continue;
            }
        }
        p.write(c, out);
        p.prev = c;
        ++i;
    }
    p.queue.erase(0, i);
    if (at_end && p.holding) {
        out += ' ';
        p.holding = false;
    }
}

void SpaceCleaner::run3(std::string& out, bool at_end) {
    Pass& p = p3_;
    size_t i = 0;
    while (i < p.queue.size()) {
        char c = p.queue[i];
        if (!p.started) {
            p.write(c, out);
            p.prev = c;
            p.started = true;
            ++i;
            continue;
        }
        if (c == '\'' && p.prev == ' ') {
            const size_t have = p.queue.size() - i;  // this byte and what follows
            if (have < 2) {
                if (!at_end) break;
            } else {
                char x1 = p.queue[i + 1];
                if (x1 == 's' || x1 == 'm') {
                    p.drop_held();
                } else if (x1 != 't' && x1 != 'd') {
                    if (have < 3) {
                        if (!at_end) break;
                    } else {
                        char x2 = p.queue[i + 2];
                        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) p.drop_held();
                    }
                }
            }
        }
        p.write(c, out);
        p.prev = c;
        ++i;
    }
    p.queue.erase(0, i);
    if (at_end && p.holding) {
        out += ' ';
        p.holding = false;
    }
}

void SpaceCleaner::push(std::string_view in, std::string& out) {
    p1_.queue.append(in);
    run1(p2_.queue, false);
    run2(p3_.queue, false);
    run3(out, false);
}

void SpaceCleaner::finish(std::string& out) {
    run1(p2_.queue, true);
    run2(p3_.queue, true);
    run3(out, true);
    *this = SpaceCleaner();
}

}  // namespace text

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool render_special)
    : tokenizer_(tokenizer), render_special_(render_special) {}

std::string StreamingDetokenizer::push(TokenId id) {
    const bool lstrip = first_ && tokenizer_.vocab().add_space_prefix();
    std::string piece = tokenizer_.token_to_piece(id, render_special_, lstrip);
    first_ = false;
    if (tokenizer_.vocab().clean_spaces())
        cleaner_.push(piece, pending_);
    else
        pending_ += piece;
    size_t n = text::utf8_complete_prefix(pending_);
    std::string out = pending_.substr(0, n);
    pending_.erase(0, n);
    return out;
}

std::string StreamingDetokenizer::flush() {
    if (tokenizer_.vocab().clean_spaces()) cleaner_.finish(pending_);
    std::string out = std::move(pending_);
    pending_.clear();
    first_ = true;
    return out;
}

}  // namespace moeserve
