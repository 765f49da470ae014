// Server-sent events framing (spec server-behaviour §5.6): one `data:` line
// per JSON event and a blank line; `data: [DONE]` ends the OpenAI streams; a
// bare `:` comment keeps a silent connection alive.
#pragma once

#include <string>

#include "server/api_error.h"

namespace moeserve {

// Appends one event to `out`.
inline void append_sse_data(std::string& out, const json& event) {
    out += "data: ";
    out += event.dump(-1, ' ', false, json::error_handler_t::replace);
    out += "\n\n";
}
inline std::string sse_data(const json& event) {
    std::string out;
    append_sse_data(out, event);
    return out;
}
inline const char* sse_done() {
    return "data: [DONE]\n\n";
}
inline const char* sse_ping() {
    return ":\n\n";
}

}  // namespace moeserve
