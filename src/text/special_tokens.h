// Cutting special tokens out of the input before tokenizing, as llama.cpp's
// tokenizer_st_partition does: each special token in turn, longest first, is
// found in every remaining piece of text; lstrip/rstrip attributes eat the
// white space next to it. Control and unknown tokens are cut only when special
// tokens are parsed; user-defined tokens are always cut.
#pragma once

#include <string_view>
#include <vector>

#include "text/vocab.h"

namespace moeserve::text {

struct Fragment {
    TokenId token = kNoToken;  // a special token, or kNoToken for text
    size_t offset = 0;         // text: byte range in the input
    size_t length = 0;
};

std::vector<Fragment> partition_special_tokens(const Vocab& vocab, std::string_view text, bool parse_special);

}  // namespace moeserve::text
