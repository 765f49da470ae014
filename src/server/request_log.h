// One line per HTTP request on stderr: method, path, status, tokens and time.
// Handlers note the tokens of the request being served on their thread; the
// logger, called on the same thread after the response is written, prints
// and resets them.
#pragma once

#include <chrono>
#include <cstdint>

namespace moeserve {

struct RequestLog {
    std::chrono::steady_clock::time_point start{};
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    bool cancelled = false;  // the client went away
};

inline RequestLog& request_log() {
    thread_local RequestLog log;
    return log;
}

}  // namespace moeserve
