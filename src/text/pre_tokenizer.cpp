#include "text/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include "text/unicode.h"

namespace moeserve::text {

namespace {

// The regexes, as llama.cpp writes them (llama-vocab.cpp, llm_tokenizer_bpe).
const std::string kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const std::string kContractions = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";
const std::string kLlama3 =
    kContractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen2 =
    kContractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen35 =
    kContractions + R"(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kBailing =
    R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";
const std::string kUpperLower = R"(((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)";
const std::string kUpperLower2 = R"(((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)";
const std::string kTekken = R"([^\r\n\p{L}\p{N}]?)" + kUpperLower + R"(|[^\r\n\p{L}\p{N}]?)" + kUpperLower2 +
                            R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kGpt4o = R"([^\r\n\p{L}\p{N}]?)" + kUpperLower + kContractions + R"(?|[^\r\n\p{L}\p{N}]?)" +
                           kUpperLower2 + kContractions +
                           R"(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Cased letters of the DeepSeek LLM tokenizer (its literal character ranges).
const std::string kDeepseekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})"
    R"(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1})"
    R"(\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5})"
    R"(\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})"
    R"(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})"
    R"(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})"
    R"(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134})"
    R"(\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787})"
    R"(\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A})"
    R"(\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})"
    R"(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
const std::string kDeepseekPunct =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
const std::string kDeepseekCjk = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
const std::string kDeepseek3Cjk = R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)";
const std::string kDeepseek3Main =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kPoro = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";

struct NamedSpec {
    std::vector<std::string_view> names;
    PreTokenizerSpec spec;
};

const std::vector<NamedSpec>& named_specs() {
    static const std::vector<NamedSpec> specs = [] {
        auto spec = [](std::vector<std::string> r, bool clean, bool ignore_merges = false, bool add_bos = false,
                       bool no_bos = false) {
            return PreTokenizerSpec{std::move(r), clean, ignore_merges, add_bos, no_bos};
        };
        const std::vector<std::string> kDefault = {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"};
        const std::vector<std::string> kStarcoder = {R"(\p{N})", kGpt2};
        return std::vector<NamedSpec>{
            {{"default"}, spec(kDefault, true)},
            {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"},
             spec({kLlama3}, true, true, true)},
            {{"dbrx", "smaug-bpe"}, spec({kLlama3}, true)},
            {{"deepseek-llm"},
             spec({"[\r\n]", kDeepseekLetters, kDeepseekPunct, R"(\s+$)", kDeepseekCjk, R"(\p{N}+)"}, false)},
            {{"deepseek-coder"}, spec({"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepseekCjk, R"(\p{N})"}, false)},
            {{"deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"},
             spec({R"(\p{N}{1,3})", kDeepseek3Cjk, kDeepseek3Main}, false)},
            {{"falcon"}, spec({R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}, true)},
            {{"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"}, spec(kStarcoder, true)},
            {{"command-r", "smollm"}, spec(kStarcoder, false)},
            {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
              "modern-bert", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais"},
             spec({kGpt2}, true)},
            {{"trillion", "granite-docling"}, spec({kGpt2}, false)},
            {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2"},
             spec({kQwen2}, false)},
            {{"megrez", "stablelm2"}, spec({kQwen2}, true)},
            {{"qwen35"}, spec({kQwen35}, false)},
            {{"poro-chat"}, spec({kPoro}, false)},
            {{"bloom", "gpt3-finnish"}, spec({kPoro}, true)},
            {{"viking"}, spec({kPoro, R"(\p{N})"}, false)},
            {{"glm4", "chatglm-bpe"}, spec({kLlama3}, true, false, false, true)},
            {{"tekken"}, spec({kTekken}, false, true, true)},
            {{"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}, spec({kGpt4o}, false)},
            {{"bailingmoe", "bailingmoe2", "llada-moe"}, spec({kBailing}, false)},
        };
    }();
    return specs;
}

// ---------------------------------------------------------------------------
// Hand-written matchers for the two regexes llama.cpp does not run through a
// regex engine. They reproduce llama.cpp's matchers (unicode.cpp,
// unicode_regex_split_custom_gpt2/_llama3), including where those differ from
// the regex text: a code point past the piece counts as having no class.

struct Cursor {
    const uint32_t* cp;
    size_t begin, end;
    static constexpr uint32_t kOut = 0xFFFFFFFF;
    uint32_t at(size_t i) const { return i >= begin && i < end ? cp[i] : kOut; }
    uint16_t cls(size_t i) const { return i >= begin && i < end ? cp_classes(cp[i]) : 0; }
};

inline bool is_letter(uint16_t c) {
    return c & cp_class::LETTER;
}
inline bool is_number(uint16_t c) {
    return c & cp_class::NUMBER;
}
inline bool is_space(uint16_t c) {
    return c & cp_class::WHITESPACE;
}
// [^\s\p{L}\p{N}], and not past the end.
inline bool is_other(uint16_t c) {
    return c != 0 && !(c & (cp_class::WHITESPACE | cp_class::LETTER | cp_class::NUMBER));
}
inline uint32_t ascii_lower(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

// 's 't 're 've 'm 'll 'd at pos; returns the length matched (0 if none).
size_t match_contraction(const Cursor& c, size_t pos, bool any_case) {
    if (c.at(pos) != '\'' || pos + 1 >= c.end) return 0;
    uint32_t a = c.at(pos + 1), b = pos + 2 < c.end ? c.at(pos + 2) : Cursor::kOut;
    if (any_case) {
        a = ascii_lower(a);
        b = ascii_lower(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

void split_gpt2(const Cursor& c, std::vector<uint32_t>& out) {
    size_t prev = c.begin;
    auto emit = [&](size_t end) {
        if (end > prev) out.push_back(uint32_t(end - prev));
        prev = end;
    };
    size_t pos = c.begin;
    while (pos < c.end) {
        const uint32_t cp = c.at(pos);
        if (size_t n = match_contraction(c, pos, false)) {
            pos += n;
            emit(pos);
            continue;
        }
        uint16_t cls = cp == ' ' ? c.cls(pos + 1) : c.cls(pos);
        if (is_letter(cls) || is_number(cls) || is_other(cls)) {
            auto same = is_letter(cls) ? is_letter : is_number(cls) ? is_number : is_other;
            pos += (cp == ' ');
            while (same(c.cls(pos))) ++pos;
            emit(pos);
            continue;
        }
        size_t spaces = 0;
        while (is_space(c.cls(pos + spaces))) ++spaces;
        if (spaces > 1 && c.at(pos + spaces) != Cursor::kOut) {  // \s+(?!\S)
            pos += spaces - 1;
            emit(pos);
            continue;
        }
        pos += spaces > 0 ? spaces : 1;  // \s+, or a lone code point nothing matched
        emit(pos);
    }
}

void split_llama3(const Cursor& c, std::vector<uint32_t>& out) {
    size_t prev = c.begin;
    auto emit = [&](size_t end) {
        if (end > prev) out.push_back(uint32_t(end - prev));
        prev = end;
    };
    size_t pos = c.begin;
    while (pos < c.end) {
        const uint32_t cp = c.at(pos);
        const uint16_t cls = c.cls(pos);
        if (size_t n = match_contraction(c, pos, true)) {
            pos += n;
            emit(pos);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (!(cp == '\r' || cp == '\n' || is_number(cls)) && (is_letter(cls) || is_letter(c.cls(pos + 1)))) {
            ++pos;
            while (is_letter(c.cls(pos))) ++pos;
            emit(pos);
            continue;
        }
        // \p{N}{1,3}
        if (is_number(cls)) {
            size_t start = pos;
            while (is_number(c.cls(pos))) {
                if (++pos - start >= 3) {
                    emit(pos);
                    start = pos;
                }
            }
            emit(pos);
            continue;
        }
        // ' '?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the class of the code point
        // itself, not of the one after the space, for "not past the end")
        uint16_t cls2 = cp == ' ' ? c.cls(pos + 1) : cls;
        if (!(cls2 & (cp_class::WHITESPACE | cp_class::LETTER | cp_class::NUMBER)) && cls != 0) {
            pos += (cp == ' ');
            while (is_other(cls2)) cls2 = c.cls(++pos);
            while (c.at(pos) == '\r' || c.at(pos) == '\n') ++pos;
            emit(pos);
            continue;
        }
        size_t spaces = 0, last_newline_end = 0;
        while (is_space(c.cls(pos + spaces))) {
            uint32_t s = c.at(pos + spaces);
            if (s == '\r' || s == '\n') last_newline_end = pos + spaces + 1;
            ++spaces;
        }
        if (last_newline_end > 0) {  // \s*[\r\n]+
            pos = last_newline_end;
            emit(pos);
            continue;
        }
        if (spaces > 1 && c.at(pos + spaces) != Cursor::kOut) {  // \s+(?!\S)
            pos += spaces - 1;
            emit(pos);
            continue;
        }
        pos += spaces > 0 ? spaces : 1;
        emit(pos);
    }
}

}  // namespace

// ---------------------------------------------------------------------------

const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre) {
    for (const NamedSpec& s : named_specs())
        for (std::string_view n : s.names)
            if (n == pre) return &s.spec;
    return nullptr;
}

namespace {
constexpr std::string_view kCategoryNames[] = {"\\p{N}",  "\\p{L}",  "\\p{P}",  "\\p{M}",  "\\p{S}",
                                               "\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"};
// Class byte and ASCII members of each category, as llama.cpp substitutes them.
std::string_view category_class(std::string_view name) {
    if (name == "\\p{N}")
        return "\xD1"
               "0-9";
    if (name == "\\p{P}")
        return "\xD3"
               "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}";
    if (name == "\\p{M}") return "\xD4";
    if (name == "\\p{S}")
        return "\xD5"
               "\\$\\+<->^`\\|";
    return "\xD2"
           "A-Za-z";  // \p{L} and its subcategories
}
}  // namespace

bool regex_uses_categories(std::string_view regex) {
    for (std::string_view name : kCategoryNames)
        if (regex.find(name) != std::string_view::npos) return true;
    return false;
}

std::string collapse_regex(std::string_view re) {
    std::string out;
    bool inside = false;
    for (size_t i = 0; i < re.size(); ++i) {
        if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
            out += '[';
            inside = true;
            continue;
        }
        if (inside && re[i] == ']' && re[i - 1] != '\\') {
            out += ']';
            inside = false;
            continue;
        }
        if (re[i] == '\\' && i + 3 < re.size() && re[i + 1] == 'p' && re[i + 2] == '{') {
            size_t close = re.find('}', i + 3);
            if (close != std::string_view::npos && close <= i + 10) {
                std::string_view name = re.substr(i, close - i + 1);
                if (std::find(std::begin(kCategoryNames), std::end(kCategoryNames), name) != std::end(kCategoryNames)) {
                    if (!inside) out += '[';
                    out += category_class(name);
                    if (!inside) out += ']';
                    i = close;
                    continue;
                }
            }
        }
        out += re[i];
    }
    return out;
}

char collapse_codepoint(uint32_t cp) {
    if (cp < 128) return char(cp);
    uint16_t c = cp_classes(cp);
    if (c & cp_class::WHITESPACE) return '\x0B';
    switch (c & cp_class::CATEGORY_MASK) {
        case cp_class::NUMBER:
            return '\xD1';
        case cp_class::LETTER:
            return '\xD2';
        case cp_class::PUNCTUATION:
            return '\xD3';
        case cp_class::MARK:
            return '\xD4';
        case cp_class::SYMBOL:
            return '\xD5';
        default:
            return '\xD0';
    }
}

// ---------------------------------------------------------------------------

struct PreTokenizer::Step {
    enum class Kind { Gpt2, Llama3, Collapsed, Wide } kind;
    pcre2_code* code = nullptr;
    ~Step() {
        if (code) pcre2_code_free(code);
    }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& regexes) {
    for (const std::string& re : regexes) {
        auto step = std::make_unique<Step>();
        if (re == kGpt2) {
            step->kind = Step::Kind::Gpt2;
        } else if (re == kLlama3) {
            step->kind = Step::Kind::Llama3;
        } else {
            bool collapsed = regex_uses_categories(re);
            std::string pattern = collapsed ? collapse_regex(re) : re;
            uint32_t options = PCRE2_DOLLAR_ENDONLY | (collapsed ? 0 : PCRE2_UTF | PCRE2_NO_UTF_CHECK);
            int err = 0;
            PCRE2_SIZE err_offset = 0;
            step->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err,
                                       &err_offset, nullptr);
            if (!step->code) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(err, msg, sizeof msg);
                throw std::runtime_error("pre-tokenizer regex '" + re +
                                         "' does not compile: " + reinterpret_cast<const char*>(msg));
            }
            pcre2_jit_compile(step->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
            step->kind = collapsed ? Step::Kind::Collapsed : Step::Kind::Wide;
            (collapsed ? needs_collapsed_ : needs_wide_) = true;
        }
        steps_.push_back(std::move(step));
    }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

// Per-call PCRE2 state: match data and a JIT stack big enough for long words.
class MatchState {
  public:
    MatchState() {
        data_ = pcre2_match_data_create(1, nullptr);
        context_ = pcre2_match_context_create(nullptr);
        stack_ = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
        if (!data_ || !context_ || !stack_) throw std::bad_alloc();
        pcre2_jit_stack_assign(context_, nullptr, stack_);
    }
    ~MatchState() {
        pcre2_jit_stack_free(stack_);
        pcre2_match_context_free(context_);
        pcre2_match_data_free(data_);
    }
    MatchState(const MatchState&) = delete;
    MatchState& operator=(const MatchState&) = delete;

    // Appends the piece lengths (in bytes of `subject`) of one segment.
    void split(const pcre2_code* code, const char* subject, size_t length, std::vector<size_t>& pieces) {
        size_t start = 0, last_end = 0;
        while (start < length) {
            int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject), length, start, PCRE2_NO_UTF_CHECK, data_,
                                 context_);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(rc, msg, sizeof msg);
                throw std::runtime_error(std::string("pre-tokenizer: regex match failed: ") +
                                         reinterpret_cast<const char*>(msg));
            }
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
            size_t m_begin = ov[0], m_end = ov[1];
            if (m_begin > last_end) pieces.push_back(m_begin - last_end);
            if (m_end > m_begin) {
                pieces.push_back(m_end - m_begin);
                last_end = m_end;
                start = m_end;
            } else {
                last_end = m_begin;
                start = m_begin + 1;  // empty match: move on (bytes here are whole code points or
                                      // a UTF-8 lead byte; skip continuation bytes)
                while (start < length && (uint8_t(subject[start]) & 0xC0) == 0x80) ++start;
            }
        }
        if (last_end < length) pieces.push_back(length - last_end);
    }

  private:
    pcre2_match_data* data_ = nullptr;
    pcre2_match_context* context_ = nullptr;
    pcre2_jit_stack* stack_ = nullptr;
};

}  // namespace

void PreTokenizer::split(const std::vector<uint32_t>& cpts, std::vector<uint32_t>& lengths) const {
    if (cpts.empty()) return;
    std::vector<uint32_t> cur{uint32_t(cpts.size())}, next;

    std::string collapsed;
    if (needs_collapsed_) {
        collapsed.resize(cpts.size());
        for (size_t i = 0; i < cpts.size(); ++i) collapsed[i] = collapse_codepoint(cpts[i]);
    }
    // Code points for regexes without categories: non-ASCII white space reads as
    // \v (llama.cpp's std::wregex does not know it), surrogates as a private-use
    // character (PCRE2 cannot hold them; no such regex names either).
    std::string wide;
    std::vector<uint32_t> wide_offset;  // byte offset of each code point, plus the end
    if (needs_wide_) {
        wide_offset.reserve(cpts.size() + 1);
        for (uint32_t cp : cpts) {
            wide_offset.push_back(uint32_t(wide.size()));
            if (cp > 0x7F && (cp_classes(cp) & cp_class::WHITESPACE)) cp = 0x0B;
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
            append_utf8(wide, cp);
        }
        wide_offset.push_back(uint32_t(wide.size()));
    }

    std::unique_ptr<MatchState> state;
    std::vector<size_t> pieces;
    for (const auto& step : steps_) {
        next.clear();
        size_t begin = 0;
        for (uint32_t len : cur) {
            const size_t end = begin + len;
            switch (step->kind) {
                case Step::Kind::Gpt2:
                    split_gpt2(Cursor{cpts.data(), begin, end}, next);
                    break;
                case Step::Kind::Llama3:
                    split_llama3(Cursor{cpts.data(), begin, end}, next);
                    break;
                case Step::Kind::Collapsed: {
                    if (!state) state = std::make_unique<MatchState>();
                    pieces.clear();
                    state->split(step->code, collapsed.data() + begin, len, pieces);
                    for (size_t p : pieces) next.push_back(uint32_t(p));
                    break;
                }
                case Step::Kind::Wide: {
                    if (!state) state = std::make_unique<MatchState>();
                    pieces.clear();
                    const size_t b0 = wide_offset[begin];
                    state->split(step->code, wide.data() + b0, wide_offset[end] - b0, pieces);
                    // Byte lengths back to code point counts.
                    size_t cp = begin, byte = b0;
                    for (size_t p : pieces) {
                        const size_t cp_start = cp;
                        byte += p;
                        while (wide_offset[cp] < byte) ++cp;
                        next.push_back(uint32_t(cp - cp_start));
                    }
                    break;
                }
            }
            begin = end;
        }
        std::swap(cur, next);
    }
    lengths.insert(lengths.end(), cur.begin(), cur.end());
}

}  // namespace moeserve::text
