// How `moeserve load` prints its rounds: a detailed summary for one
// concurrency, a markdown table with one row per concurrency for several,
// or JSON (always one object with a "rounds" array).
#pragma once

#include <string>
#include <vector>

#include "cli/load_client.h"
#include "cli/load_stats.h"

namespace moeserve::cli {

struct LoadSettings {
    LoadRequestConfig request;
    int requests_per_round = 100;
    std::vector<int> concurrencies;
};

std::string format_load_summary(const LoadSettings& settings, const RoundStats& round);
std::string format_load_table(const LoadSettings& settings, const std::vector<RoundStats>& rounds);
std::string format_load_json(const LoadSettings& settings, const std::vector<RoundStats>& rounds);

}  // namespace moeserve::cli
