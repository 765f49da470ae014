#include "text/unicode.h"

#include <algorithm>
#include <array>

namespace moeserve::text {

namespace {

// Two-stage lookup built once from the generated run table: 4352 pages of 256
// code points, identical pages shared.
class CpClassTable {
  public:
    CpClassTable() {
        std::vector<uint16_t> flat(kMaxCodepoint + 1, cp_class::UNDEFINED);
        for (size_t i = 0; i < detail::kCpRangeCount; ++i) {
            uint32_t end = i + 1 < detail::kCpRangeCount ? detail::kCpRanges[i + 1].first : kMaxCodepoint + 1;
            for (uint32_t cp = detail::kCpRanges[i].first; cp < end; ++cp) flat[cp] = detail::kCpRanges[i].classes;
        }
        for (uint32_t page = 0; page < kPages; ++page) {
            const uint16_t* src = &flat[page * 256];
            size_t found = blocks_.size() / 256;
            for (size_t b = 0; b < blocks_.size() / 256; ++b) {
                if (std::equal(src, src + 256, &blocks_[b * 256])) {
                    found = b;
                    break;
                }
            }
            if (found == blocks_.size() / 256) blocks_.insert(blocks_.end(), src, src + 256);
            page_[page] = static_cast<uint16_t>(found);
        }
    }
    uint16_t get(uint32_t cp) const {
        if (cp > kMaxCodepoint) return cp_class::UNDEFINED;
        return blocks_[size_t(page_[cp >> 8]) * 256 + (cp & 0xFF)];
    }

  private:
    static constexpr uint32_t kPages = (kMaxCodepoint + 1) / 256;
    std::array<uint16_t, kPages> page_{};
    std::vector<uint16_t> blocks_;
};

struct ByteAlphabet {
    std::array<std::string, 256> to_unicode;
    std::array<int, 512> from_cp;  // the alphabet lies below U+0200
    ByteAlphabet() {
        from_cp.fill(-1);
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
            append_utf8(to_unicode[b], cp);
            from_cp[cp] = b;
        }
    }
};

const ByteAlphabet& byte_alphabet() {
    static const ByteAlphabet alphabet;
    return alphabet;
}

}  // namespace

uint16_t cp_classes(uint32_t cp) {
    static const CpClassTable table;
    return table.get(cp);
}

void decode_utf8(std::string_view text, std::vector<uint32_t>& out) {
    const auto* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    out.reserve(out.size() + n);
    auto cont = [&](size_t i) { return i < n && (s[i] & 0xC0) == 0x80; };
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            out.push_back(b);
            i += 1;
        } else if ((b & 0xE0) == 0xC0 && cont(i + 1)) {
            out.push_back(uint32_t(b & 0x1F) << 6 | (s[i + 1] & 0x3F));
            i += 2;
        } else if ((b & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
            out.push_back(uint32_t(b & 0x0F) << 12 | uint32_t(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F));
            i += 3;
        } else if ((b & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
            uint32_t cp = uint32_t(b & 0x07) << 18 | uint32_t(s[i + 1] & 0x3F) << 12 | uint32_t(s[i + 2] & 0x3F) << 6 |
                          (s[i + 3] & 0x3F);
            if (cp <= kMaxCodepoint) {
                out.push_back(cp);
                i += 4;
            } else {
                out.push_back(kReplacementChar);
                i += 1;
            }
        } else {
            out.push_back(kReplacementChar);
            i += 1;
        }
    }
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

size_t utf8_complete_prefix(std::string_view bytes) {
    const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
    const size_t n = bytes.size();
    // An incomplete sequence is at most 3 bytes long: look back for its lead byte.
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80) continue;  // continuation byte, keep looking
        size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

const std::string& byte_to_unicode(uint8_t byte) {
    return byte_alphabet().to_unicode[byte];
}

int unicode_to_byte(uint32_t cp) {
    return cp < 512 ? byte_alphabet().from_cp[cp] : -1;
}

}  // namespace moeserve::text
