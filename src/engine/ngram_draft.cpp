#include "engine/ngram_draft.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace moeserve {

std::vector<int32_t> ngram_simple_draft(std::span<const int32_t> history, int32_t sampled,
                                        const NgramDraftConfig& config) {
    const size_t len = history.size();
    const size_t n = static_cast<size_t>(std::max(1, config.size_n));
    const size_t m = static_cast<size_t>(std::max(1, config.size_m));
    if (len <= n + m + 1) return {};
    // The pattern: the last n - 1 tokens of the history, then the sampled one.
    auto matches_at = [&](size_t j) {
        for (size_t k = 0; k + 1 < n; ++k)
            if (history[j + k] != history[len - n + 1 + k]) return false;
        return history[j + n - 1] == sampled;
    };
    // The newest earlier occurrence; position 0 is never a match (as in llama.cpp,
    // where it means "none"), and the search starts where the pattern would end
    // at the history's last token.
    size_t at = 0;
    for (size_t j = len - n - 1; j > 0; --j)
        if (matches_at(j)) {
            at = j;
            break;
        }
    if (at == 0) return {};
    const size_t copy = std::min(m, len - (at + n));
    if (copy < n) return {};
    return std::vector<int32_t>(history.begin() + static_cast<std::ptrdiff_t>(at + n),
                                history.begin() + static_cast<std::ptrdiff_t>(at + n + copy));
}

int SpeculativeConfig::draft_max() const {
    int most = 0;
    for (DraftKind k : kinds)
        most = std::max(most, k == DraftKind::ngram_mod ? mod.n_max : std::min(n_max, ngram.size_m));
    return most;
}

const char* draft_kind_name(DraftKind kind) {
    return kind == DraftKind::ngram_mod ? "ngram-mod" : "ngram-simple";
}

std::vector<DraftKind> parse_spec_type(const std::string& value) {
    std::stringstream list(value);
    std::string kind;
    std::vector<DraftKind> kinds;
    while (std::getline(list, kind, ',')) {
        if (kind == "none") continue;
        DraftKind k;
        if (kind == "ngram-simple")
            k = DraftKind::ngram_simple;
        else if (kind == "ngram-mod")
            k = DraftKind::ngram_mod;
        else if (kind.rfind("draft", 0) == 0)
            throw std::invalid_argument("speculative type '" + kind +
                                        "' needs a draft model, which moeserve does not load; use ngram-simple or "
                                        "ngram-mod");
        else if (kind == "ngram-map-k" || kind == "ngram-map-k4v" || kind == "ngram-cache")
            throw std::invalid_argument("speculative type '" + kind +
                                        "' is not implemented in moeserve; use ngram-simple or ngram-mod");
        else
            throw std::invalid_argument("unknown speculative type '" + kind +
                                        "' (moeserve supports: none, ngram-simple, ngram-mod)");
        if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
    }
    return kinds;
}

}  // namespace moeserve
