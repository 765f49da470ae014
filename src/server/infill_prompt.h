// /infill's prompt: llama-server's fill-in-the-middle layout (its
// format_prompt_infill) from the request's input_prefix, input_suffix,
// input_extra and prompt, with the model's FIM tokens (spec
// server-behaviour §5.13). The layout, repo-level (arXiv 2409.12186):
//
//   [FIM_REP]myproject\n                     only if the model has FIM_REP
//   [FIM_SEP]{filename}\n{text}  ...         one per input_extra chunk ("\n\n--- snippet ---\n\n"
//                                            instead of [FIM_SEP]{filename}\n without FIM_SEP)
//   [FIM_SEP]filename\n                      only if the model has FIM_SEP
//   [BOS] [FIM_PRE]{prefix}{prompt} [FIM_SUF]{suffix} [FIM_MID]
//
// (with --spm-infill the [FIM_SUF] part comes before the [FIM_PRE] part).
// Like llama-server it keeps the prefix's last 3/4 n_batch tokens, the
// suffix's first n_batch/4 - 2 - |prompt| tokens, and the extra context's
// last n_ctx - n_batch - 2 n_predict tokens. The prompt follows the prefix,
// not [FIM_MID], as llama.cpp's code does (its comment says otherwise).
#pragma once

#include <cstdint>
#include <vector>

#include "server/api_error.h"
#include "text/tokenizer.h"

namespace moeserve {

struct InfillLimits {
    int64_t n_batch = 2048;  // -b as given
    int64_t n_predict = -1;  // -n
    int64_t n_ctx = 0;       // the slot's context
    bool spm = false;        // --spm-infill
};

// Throws ApiError 501 "Infill is not supported by this model: ..." naming
// the missing tokens, as llama-server does.
void require_fim_tokens(const Vocab& vocab);

// Checks the request's infill fields (400 naming the field) and builds the
// prompt's tokens.
std::vector<int32_t> infill_prompt(const Tokenizer& tokenizer, const json& body, const InfillLimits& limits);

}  // namespace moeserve
