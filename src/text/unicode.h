// Unicode facts the tokenizers need, with llama.cpp's exact conventions:
// decoding UTF-8 (an invalid byte reads as U+FFFD and skips one byte), the class
// of each code point (Unicode 15.1 general categories, White_Space), and GPT-2's
// byte <-> printable-character mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::text {

// Class bits of a code point. Exactly one of the category bits is set; WHITESPACE
// may be added. Unassigned code points are UNDEFINED.
namespace cp_class {
inline constexpr uint16_t NUMBER = 0x01;       // \p{N}
inline constexpr uint16_t LETTER = 0x02;       // \p{L}
inline constexpr uint16_t SEPARATOR = 0x04;    // \p{Z}
inline constexpr uint16_t MARK = 0x08;         // \p{M}
inline constexpr uint16_t PUNCTUATION = 0x10;  // \p{P}
inline constexpr uint16_t SYMBOL = 0x20;       // \p{S}
inline constexpr uint16_t CONTROL = 0x40;      // \p{Cc}, \p{Cf}, \p{Co}, \p{Cs}
inline constexpr uint16_t UNDEFINED = 0x80;    // \p{Cn}, and anything past U+10FFFF
inline constexpr uint16_t WHITESPACE = 0x100;  // \p{White_Space}
inline constexpr uint16_t CATEGORY_MASK = 0xFF;
}  // namespace cp_class

inline constexpr uint32_t kReplacementChar = 0xFFFD;
inline constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Class bits of `cp`.
uint16_t cp_classes(uint32_t cp);

// Length of the UTF-8 sequence a byte starts, judged by its high nibble only (as
// llama.cpp does): 1 for ASCII and stray continuation bytes, 2/3/4 for lead bytes.
inline size_t utf8_len_from_lead(uint8_t byte) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[byte >> 4];
}

// Decodes UTF-8 like llama.cpp: a well-formed sequence gives its code point
// (overlong forms and surrogates are accepted, as there); a byte that does not
// start one gives U+FFFD and decoding resumes at the next byte. Sequences that
// would decode past U+10FFFF also give U+FFFD for their first byte (llama.cpp
// aborts on those).
void decode_utf8(std::string_view text, std::vector<uint32_t>& out);

// Appends the UTF-8 encoding of cp (cp <= U+10FFFF; surrogates are encoded too).
void append_utf8(std::string& out, uint32_t cp);

// Length of the longest prefix of `bytes` that does not end inside an incomplete
// but so-far valid UTF-8 sequence. Bytes that can never become valid are not held.
size_t utf8_complete_prefix(std::string_view bytes);

// GPT-2's byte-level alphabet: each byte value maps to one printable code point.
const std::string& byte_to_unicode(uint8_t byte);  // UTF-8 of the code point
// Inverse mapping of a code point, or -1 when it is not in the alphabet.
int unicode_to_byte(uint32_t cp);

namespace detail {
struct CpRange {
    uint32_t first;
    uint16_t classes;
};
extern const CpRange kCpRanges[];
extern const size_t kCpRangeCount;
}  // namespace detail

}  // namespace moeserve::text
