// `moeserve load --plot`: an SVG (our own few lines of markup, no library)
// with one panel of aggregate throughput and one of latency, each against
// the concurrency of the rounds.
#pragma once

#include <string>
#include <vector>

#include "cli/load_stats.h"

namespace moeserve::cli {

struct PlotSeries {
    std::string name;
    std::vector<double> y;  // one per x; NaN: no point
};

struct PlotPanel {
    std::string title;
    std::string y_label;
    std::vector<PlotSeries> series;
    bool log_y = false;  // for values that span decades (latencies: ITL ms vs TTFT s)
};

// Panels side by side, sharing x (values >= 1, on a log2 scale with a tick at
// each value); y from 0 with round ticks, or over whole decades when log_y;
// a legend per panel; every series one <polyline> with a dot per point.
std::string render_line_panels_svg(const std::string& caption, const std::string& x_label, const std::vector<double>& x,
                                   const std::vector<PlotPanel>& panels);

// Throughput (aggregate tokens/s) and latency (TTFT p50, TTFT p99, ITL p50)
// against the rounds' concurrency; latency on a log scale, so that ITL
// (milliseconds) and TTFT (up to seconds under queueing) both stay readable.
std::string plot_load_rounds(const std::string& caption, const std::vector<RoundStats>& rounds);

}  // namespace moeserve::cli
