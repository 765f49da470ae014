// Stop strings over growing generated text: finds a complete stop string
// (earliest match wins) and otherwise says how much of the text is safe to
// send, holding back a tail that could still become the start of one.
// Matching is on bytes, so a stop string may span token boundaries.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

class StopStrings {
  public:
    StopStrings() = default;
    explicit StopStrings(std::vector<std::string> stops);  // empty strings are dropped

    struct Scan {
        size_t safe_end = 0;             // text[0, safe_end) can be sent
        std::optional<size_t> match_at;  // a stop string starts here; the text ends at it
        std::string word;                // the stop string that matched
    };

    // text: all generated text so far; searched_to: how much of it an earlier
    // call already searched (matches are looked for only where they could end
    // after it).
    Scan scan(std::string_view text, size_t searched_to) const;

    bool empty() const { return stops_.empty(); }
    const std::vector<std::string>& strings() const { return stops_; }

  private:
    std::vector<std::string> stops_;
    size_t max_len_ = 0;
};

}  // namespace moeserve
