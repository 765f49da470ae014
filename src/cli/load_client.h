// One streaming /v1/chat/completions request of `moeserve load`, timed: when
// the first content arrived, the gap before each later content chunk, and the
// token counts of the server's usage chunk; or why it failed.
#pragma once

#include <functional>
#include <string>

#include "cli/load_stats.h"

namespace moeserve::cli {

struct LoadRequestConfig {
    std::string url;      // http://host:port, no trailing slash
    std::string model;    // the request's model field; empty: none sent
    std::string api_key;  // sent as a bearer token when not empty
    int max_tokens = 128;
    int prompt_words = 64;
    int shared_prefix_words = 0;  // a system message common to every request (0: none)
    double temperature = 0.0;
    int timeout_s = 600;
};

// A prompt of `words` words after a short instruction, distinct per index so
// that no server can answer one request from another's prefix cache.
std::string make_load_prompt(int index, int words);
// A system prompt of `words` words, the same for every request.
std::string make_shared_prefix(int words);

// The server's /metrics text; empty when it has none (not moeserve, or no --metrics) or
// cannot be reached.
std::string fetch_metrics(const LoadRequestConfig& config);

// Sends request `index` and waits for the end of its stream. on_content runs
// on this thread for every content chunk (for a progress display).
RequestSample send_streaming_request(const LoadRequestConfig& config, int index,
                                     const std::function<void()>& on_content = {});

}  // namespace moeserve::cli
