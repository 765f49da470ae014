// libFuzzer target for the tokenizer, on fixture vocabularies: three
// byte-level BPE ones with their families' special tokens (Qwen3, Nemotron,
// GLM) and llama's SentencePiece one. The first byte picks the vocabulary and
// the flags; the rest is either text to encode or token ids to decode.
//
//   encode: tokenize(text, add_special, parse_special) gives ids inside the
//           vocabulary; they decode without an exception, and decoding them
//           one at a time with StreamingDetokenizer gives the same bytes.
//   decode: two bytes per id (modulo the vocabulary size): detokenize and
//           the streaming detokenizer agree, and every piece renders.
//
// Run with `make fuzz` (FUZZ_SECONDS=60 by default); seeds in
// tests/fuzz/corpus/tokenizer_fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_fixtures.h"
#include "text/tokenizer.h"

namespace {

using moeserve::TokenId;
using moeserve::Tokenizer;

const Tokenizer& tokenizer(unsigned which) {
    static const Tokenizer tokenizers[] = {
        Tokenizer::from_file(moeserve::fuzz::fixture("models/qwen3moe-tiny-s1-q8_0.gguf")),
        Tokenizer::from_file(moeserve::fuzz::fixture("models/nemotron-h-moe-tiny-s1-q8_0.gguf")),
        Tokenizer::from_file(moeserve::fuzz::fixture("models/glm47flash-tiny-s1-q8_0.gguf")),
        Tokenizer::from_file(moeserve::fuzz::fixture("vocab/ggml-vocab-llama-spm.gguf")),
    };
    return tokenizers[which % 4];
}

// The streaming detokenizer must give exactly what detokenize gives.
void check_decode(const Tokenizer& tok, const std::vector<TokenId>& ids, bool render_special) {
    const std::string whole = tok.detokenize(ids, render_special);
    moeserve::StreamingDetokenizer stream(tok, render_special);
    std::string streamed;
    for (TokenId id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != whole) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    const Tokenizer& tok = tokenizer(mode & 3);
    const bool add_special = mode & 4, parse_special = mode & 8, render_special = mode & 16, decode = mode & 32;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const auto n_tokens = static_cast<TokenId>(tok.n_tokens());

    std::vector<TokenId> ids;
    if (decode) {
        for (size_t i = 0; i + 1 < rest.size(); i += 2) {
            const unsigned v = static_cast<uint8_t>(rest[i]) | static_cast<unsigned>(static_cast<uint8_t>(rest[i + 1]))
                                                                   << 8;
            ids.push_back(static_cast<TokenId>(v % static_cast<unsigned>(n_tokens)));
        }
        for (TokenId id : ids) (void)tok.token_to_piece(id, render_special, /*lstrip=*/id % 2 == 0);
    } else {
        ids = tok.tokenize(rest, add_special, parse_special);
        for (TokenId id : ids)
            if (id < 0 || id >= n_tokens) std::abort();
        if (!add_special && !rest.empty() && ids.empty()) std::abort();  // text never vanishes
    }
    check_decode(tok, ids, render_special);
    return 0;
}
