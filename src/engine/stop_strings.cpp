#include "engine/stop_strings.h"

#include <algorithm>

namespace moeserve {

StopStrings::StopStrings(std::vector<std::string> stops) {
    for (auto& s : stops)
        if (!s.empty()) {
            max_len_ = std::max(max_len_, s.size());
            stops_.push_back(std::move(s));
        }
}

StopStrings::Scan StopStrings::scan(std::string_view text, size_t searched_to) const {
    Scan r;
    r.safe_end = text.size();
    if (stops_.empty()) return r;
    // A match ending after searched_to starts at or after searched_to - (max_len - 1).
    const size_t from = searched_to >= max_len_ ? searched_to - (max_len_ - 1) : 0;
    for (const auto& s : stops_) {
        size_t at = text.find(s, from);
        if (at != std::string_view::npos && (!r.match_at || at < *r.match_at)) {
            r.match_at = at;
            r.word = s;
        }
    }
    if (r.match_at) {
        r.safe_end = *r.match_at;
        return r;
    }
    // Hold back the longest tail that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const auto& s : stops_) {
        for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
            if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
                hold = k;
                break;
            }
        }
    }
    r.safe_end = text.size() - hold;
    return r;
}

}  // namespace moeserve
