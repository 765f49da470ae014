// The numbers `moeserve load` reports for one round (one concurrency): what
// each request measured, and the round's summary (requests/s, tokens/s,
// time to first token and inter-token latency percentiles, errors by kind).
// Header-only because the test binary links moeserve_core but not src/cli/.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace moeserve::cli {

// What one streaming request measured. Times are seconds from sending the
// request.
struct RequestSample {
    bool ok = false;
    std::string error_kind;      // e.g. "HTTP 503", "connection failed"; empty when ok
    std::string error_message;   // the server's or client's words, for the report
    double ttft_s = 0;           // -> first streamed content
    double total_s = 0;          // -> end of the stream
    int64_t tokens = 0;          // generated (the server's usage, else content chunks)
    int64_t prompt_tokens = 0;   // the server's usage count (0 when it sends none)
    std::vector<double> gaps_s;  // between successive content chunks
};

// Linear interpolation between the closest ranks (numpy's default): rank
// p/100 * (n-1) in the sorted values. NaN for no values.
inline double percentile(std::vector<double> values, double p) {
    if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
    std::sort(values.begin(), values.end());
    const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
    const size_t lo = static_cast<size_t>(rank);
    const size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

struct Distribution {
    size_t count = 0;
    // NaN when count is 0.
    double mean = std::numeric_limits<double>::quiet_NaN();
    double p50 = mean, p90 = mean, p99 = mean, max = mean;
};

inline Distribution summarize(const std::vector<double>& values) {
    Distribution d;
    d.count = values.size();
    if (values.empty()) return d;
    double sum = 0;
    for (double v : values) sum += v;
    d.mean = sum / static_cast<double>(values.size());
    d.p50 = percentile(values, 50);
    d.p90 = percentile(values, 90);
    d.p99 = percentile(values, 99);
    d.max = *std::max_element(values.begin(), values.end());
    return d;
}

struct ErrorCount {
    std::string kind;
    int count = 0;
    std::string example;  // the first message of this kind
};

struct RoundStats {
    int concurrency = 0;
    int requests = 0;
    int ok = 0;
    std::vector<ErrorCount> errors;  // by kind, most frequent first
    double duration_s = 0;           // wall time of the whole round
    double requests_per_s = 0;       // successful requests per second of the round
    int64_t generated_tokens = 0;    // over successful requests
    double prompt_tokens_per_request = 0;
    double tokens_per_s = 0;                // aggregate: generated tokens / duration
    Distribution per_request_tokens_per_s;  // each request's decode rate after its first token
    Distribution ttft_ms;                   // time to first token
    Distribution itl_ms;                    // inter-token latency: every gap of every request, pooled

    int failed() const { return requests - ok; }
};

inline RoundStats summarize_round(int concurrency, const std::vector<RequestSample>& samples, double duration_s) {
    RoundStats r;
    r.concurrency = concurrency;
    r.requests = static_cast<int>(samples.size());
    r.duration_s = duration_s;
    std::vector<double> ttft, itl, per_request;
    int64_t prompt_tokens = 0;
    std::map<std::string, size_t> error_index;
    for (const auto& s : samples) {
        if (!s.ok) {
            auto [it, inserted] = error_index.emplace(s.error_kind, r.errors.size());
            if (inserted) r.errors.push_back({s.error_kind, 0, s.error_message});
            ++r.errors[it->second].count;
            continue;
        }
        ++r.ok;
        r.generated_tokens += s.tokens;
        prompt_tokens += s.prompt_tokens;
        ttft.push_back(s.ttft_s * 1000.0);
        for (double g : s.gaps_s) itl.push_back(g * 1000.0);
        if (s.tokens > 1 && s.total_s > s.ttft_s)
            per_request.push_back(static_cast<double>(s.tokens - 1) / (s.total_s - s.ttft_s));
    }
    std::stable_sort(r.errors.begin(), r.errors.end(),
                     [](const ErrorCount& a, const ErrorCount& b) { return a.count > b.count; });
    const double wall = std::max(duration_s, 1e-9);
    r.requests_per_s = r.ok / wall;
    r.tokens_per_s = static_cast<double>(r.generated_tokens) / wall;
    r.prompt_tokens_per_request = r.ok ? static_cast<double>(prompt_tokens) / r.ok : 0.0;
    r.per_request_tokens_per_s = summarize(per_request);
    r.ttft_ms = summarize(ttft);
    r.itl_ms = summarize(itl);
    return r;
}

}  // namespace moeserve::cli
