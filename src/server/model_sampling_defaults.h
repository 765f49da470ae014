// The sampling settings a model file recommends (general.sampling.* keys),
// read as llama.cpp reads them at load (spec server-behaviour §1.2): each
// replaces the server's default for a setting the user did not choose by
// flag or environment variable; a request's own fields still win.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "gguf/gguf_file.h"

namespace moeserve {

// Applies the file's recommendations to `sp` for the settings not in `given`
// (named as the keys are: temp, top_k, top_p, min_p, xtc_probability,
// xtc_threshold, penalty_last_n, penalty_repeat, mirostat, mirostat_tau,
// mirostat_eta, sequence). Returns "name=value" for each one applied. Values
// of the wrong kind (not a number; a sequence with no known sampler) are
// skipped, as llama.cpp skips what it cannot parse.
std::vector<std::string> apply_model_sampling_defaults(const GgufFile& file, const std::set<std::string>& given,
                                                       SamplingParams& sp);

}  // namespace moeserve
