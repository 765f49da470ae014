// Turning token ids back into text, as llama.cpp does: each token's piece
// (byte-alphabet decoded for BPE, U+2581 -> space and <0xNN> -> byte for SPM,
// control tokens rendered only on request), the SPM leading space dropped, and
// for most BPE vocabularies clean_up_tokenization_spaces (" ." -> "." etc.).
// StreamingDetokenizer produces the same bytes one token at a time, holding
// back incomplete UTF-8 characters and undecided spaces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "text/vocab.h"

namespace moeserve {

class Tokenizer;

namespace text {

// llama.cpp's three clean-up passes over decoded text: drop a space before
// ? ! . , ; turn " ' " into "'"; drop the space in " 's", " 'm", " 're", " 've".
std::string clean_up_spaces(std::string_view text);

// The same clean-up, fed a byte at a time. Output is final when written.
class SpaceCleaner {
  public:
    void push(std::string_view in, std::string& out);
    void finish(std::string& out);  // the input has ended; flush what was held

  private:
    // One pass: a queue of unprocessed input and the last written byte, held
    // back while a later byte may still remove it.
    struct Pass {
        std::string queue;
        bool started = false;
        char prev = 0;
        bool holding = false;
        void write(char c, std::string& out);
        void drop_held() { holding = false; }
    };
    void run1(std::string& out, bool at_end);
    void run2(std::string& out, bool at_end);
    void run3(std::string& out, bool at_end);

    Pass p1_, p2_, p3_;
};

}  // namespace text

class StreamingDetokenizer {
  public:
    // The tokenizer must outlive this object.
    StreamingDetokenizer(const Tokenizer& tokenizer, bool render_special);

    // Text completed by this token: whole UTF-8 characters only, and nothing the
    // clean-up of a later token could still change. Throws std::out_of_range for
    // an id outside the vocabulary.
    std::string push(TokenId id);
    // Everything still held back (an incomplete character at the very end is
    // returned as its bytes). The detokenizer can be reused afterwards.
    std::string flush();

  private:
    const Tokenizer& tokenizer_;
    bool render_special_;
    bool first_ = true;
    text::SpaceCleaner cleaner_;
    std::string pending_;
};

}  // namespace moeserve
