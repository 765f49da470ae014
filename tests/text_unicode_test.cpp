// Code point classes, UTF-8 decoding with llama.cpp's rules for bad bytes,
// and the UTF-8 completeness test the streaming detokenizer relies on.
#include <gtest/gtest.h>

#include "text/unicode.h"

namespace moeserve::text {
namespace {

std::vector<uint32_t> decode(std::string_view s) {
    std::vector<uint32_t> out;
    decode_utf8(s, out);
    return out;
}

TEST(TextUnicode, classes_follow_unicode_15_1_general_categories) {
    EXPECT_EQ(cp_classes('a'), cp_class::LETTER);
    EXPECT_EQ(cp_classes('7'), cp_class::NUMBER);
    EXPECT_EQ(cp_classes(' '), cp_class::SEPARATOR | cp_class::WHITESPACE);
    EXPECT_EQ(cp_classes('\n'), cp_class::CONTROL | cp_class::WHITESPACE);
    EXPECT_EQ(cp_classes('~'), cp_class::SYMBOL);
    EXPECT_EQ(cp_classes('_'), cp_class::PUNCTUATION);
    EXPECT_EQ(cp_classes(0x4E2D), cp_class::LETTER);                            // 中
    EXPECT_EQ(cp_classes(0x0301), cp_class::MARK);                              // combining acute
    EXPECT_EQ(cp_classes(0x0661), cp_class::NUMBER);                            // Arabic-Indic one
    EXPECT_EQ(cp_classes(0x3000), cp_class::SEPARATOR | cp_class::WHITESPACE);  // ideographic space
    EXPECT_EQ(cp_classes(0x0085), cp_class::CONTROL | cp_class::WHITESPACE);
    EXPECT_EQ(cp_classes(0xFEFF), cp_class::CONTROL);  // not white space
    EXPECT_EQ(cp_classes(0x1F600), cp_class::SYMBOL);
    EXPECT_EQ(cp_classes(0xE000), cp_class::CONTROL);     // private use
    EXPECT_EQ(cp_classes(0xD800), cp_class::CONTROL);     // surrogate
    EXPECT_EQ(cp_classes(0x2EBF0), cp_class::LETTER);     // CJK extension I: new in 15.1
    EXPECT_EQ(cp_classes(0x1FA89), cp_class::UNDEFINED);  // assigned only in Unicode 16
    EXPECT_EQ(cp_classes(0x110000), cp_class::UNDEFINED);
}

TEST(TextUnicode, bad_bytes_decode_to_replacement_one_byte_at_a_time) {
    EXPECT_EQ(decode("a\xE4\xB8\xADz"), (std::vector<uint32_t>{'a', 0x4E2D, 'z'}));
    EXPECT_EQ(decode("\xFF"), (std::vector<uint32_t>{kReplacementChar}));
    EXPECT_EQ(decode("\xE4\xB8"), (std::vector<uint32_t>{kReplacementChar, kReplacementChar}));  // truncated
    EXPECT_EQ(decode("\x80x"), (std::vector<uint32_t>{kReplacementChar, 'x'}));
    EXPECT_EQ(decode("\xC0\x80"), (std::vector<uint32_t>{0}));           // overlong NUL, as llama.cpp
    EXPECT_EQ(decode("\xED\xA0\x80"), (std::vector<uint32_t>{0xD800}));  // surrogate, as llama.cpp
    EXPECT_EQ(decode("\xF4\x90\x80\x80").front(), kReplacementChar);     // past U+10FFFF
    EXPECT_EQ(decode(std::string("a\0b", 3)), (std::vector<uint32_t>{'a', 0, 'b'}));
}

TEST(TextUnicode, complete_prefix_holds_back_only_unfinished_characters) {
    EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
    EXPECT_EQ(utf8_complete_prefix("a\xE4\xB8"), 1u);
    EXPECT_EQ(utf8_complete_prefix("a\xE4"), 1u);
    EXPECT_EQ(utf8_complete_prefix("a\xE4\xB8\xAD"), 4u);
    EXPECT_EQ(utf8_complete_prefix("\xF0\x9F\x98"), 0u);
    EXPECT_EQ(utf8_complete_prefix("a\xFF"), 2u);      // never valid: not held
    EXPECT_EQ(utf8_complete_prefix("a\x80\x80"), 3u);  // stray continuation bytes: not held
    EXPECT_EQ(utf8_complete_prefix(""), 0u);
}

TEST(TextUnicode, gpt2_byte_alphabet_round_trips_every_byte) {
    EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");   // Ġ
    EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");  // Ċ
    EXPECT_EQ(byte_to_unicode('A'), "A");
    for (int b = 0; b < 256; ++b) {
        std::vector<uint32_t> cps = decode(byte_to_unicode(uint8_t(b)));
        ASSERT_EQ(cps.size(), 1u);
        EXPECT_EQ(unicode_to_byte(cps[0]), b);
    }
    EXPECT_EQ(unicode_to_byte(0x4E2D), -1);
}

}  // namespace
}  // namespace moeserve::text
