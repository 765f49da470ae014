#include "cli/load_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moeserve::cli {
namespace {

// Geometry of one panel, in SVG pixels.
constexpr double kPanelWidth = 480, kPanelHeight = 380, kCaptionHeight = 30;
constexpr double kLeft = 72, kRight = 20;  // plot area inside the panel
constexpr double kTop = 66, kBottom = 56;  // room for title + legend, tick labels + x label
constexpr double kInset = 16;              // between the y axis (or right edge) and the outermost points
constexpr double kCharWidth = 7;           // rough width of a 12 px character, for legend spacing
const char* kColors[] = {"#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"};

std::string escape_xml(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

// A step of 1, 2 or 5 times a power of ten giving about `target` intervals
// from 0 to vmax.
double nice_step(double vmax, int target) {
    const double raw = vmax / target;
    const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0})
        if (raw <= m * magnitude) return m * magnitude;
    return 10 * magnitude;
}

// The y scale of a panel: linear from 0, or logarithmic over whole decades.
struct YAxis {
    bool log = false;
    double lo = 0, hi = 1;
    std::vector<double> ticks;

    // On a log scale a 0 (an inter-token gap of chunks that arrived in one
    // read, say) is drawn on the floor of the axis rather than left out.
    bool shows(double v) const { return std::isfinite(v) && v >= 0; }
    // 0 at the bottom of the plot area, 1 at the top.
    double fraction(double v) const {
        if (log && v <= lo) return 0;
        return log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
    }
};

YAxis y_axis_for(const PlotPanel& panel) {
    YAxis a;
    a.log = panel.log_y;
    double vmin = INFINITY, vmax = 0;
    for (const auto& s : panel.series)
        for (double v : s.y)
            if (a.shows(v) && (!a.log || v > 0)) vmin = std::min(vmin, v), vmax = std::max(vmax, v);
    if (a.log) {
        if (vmax <= 0) vmin = vmax = 1;
        a.lo = std::pow(10.0, std::floor(std::log10(vmin)));
        a.hi = std::pow(10.0, std::ceil(std::log10(vmax)));
        if (a.hi <= a.lo) a.hi = a.lo * 10;
        // 1, 2, 5 in each decade when there are few decades, else decades only.
        const bool fine = a.hi / a.lo <= 1000 * 1.001;
        for (double decade = a.lo; decade <= a.hi * 1.001; decade *= 10)
            for (double m : {1.0, 2.0, 5.0})
                if ((m == 1.0 || fine) && decade * m <= a.hi * 1.001) a.ticks.push_back(decade * m);
        return a;
    }
    if (vmax <= 0) vmax = 1;
    const double step = nice_step(vmax, 5);
    a.hi = std::ceil(vmax / step - 1e-9) * step;
    for (int i = 0; i * step <= a.hi * (1 + 1e-9); ++i) a.ticks.push_back(i * step);
    return a;
}

std::string panel_svg(const PlotPanel& panel, double x0, double y0, const std::string& x_label,
                      const std::vector<double>& x, const std::vector<size_t>& order) {
    const double left = x0 + kLeft, right = x0 + kPanelWidth - kRight;
    const double top = y0 + kTop, bottom = y0 + kPanelHeight - kBottom;
    const double lx_min = std::log2(x[order.front()]), lx_max = std::log2(x[order.back()]);
    auto px = [&](double v) {
        if (lx_max <= lx_min) return (left + right) / 2;
        return left + kInset + (std::log2(v) - lx_min) / (lx_max - lx_min) * (right - left - 2 * kInset);
    };
    const YAxis axis = y_axis_for(panel);
    auto py = [&](double v) { return bottom - axis.fraction(v) * (bottom - top); };

    std::string out = "<g>\n";
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        (left + right) / 2, y0 + 20, escape_xml(panel.title));
    // Grid lines and y ticks.
    for (double v : axis.ticks) {
        const double y = py(v);
        out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#dddddd\"/>\n", left,
                           y, right, y);
        out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"black\"/>\n",
                           left - 5, y, left, y);
        out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", left - 8, y + 4, v);
    }
    // x ticks, one at each measured concurrency.
    for (size_t i : order) {
        const double x_px = px(x[i]);
        out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"black\"/>\n", x_px,
                           bottom, x_px, bottom + 5);
        out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:g}</text>\n", x_px, bottom + 18,
                           x[i]);
    }
    // Axes and their labels.
    out += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"black\"/>\n", left,
                       top, bottom);
    out += fmt::format("<line x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{1:.1f}\" y2=\"{2:.1f}\" stroke=\"black\"/>\n", left,
                       right, bottom);
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", (left + right) / 2,
                       bottom + 40, escape_xml(x_label));
    out += fmt::format(
        "<text x=\"{0:.1f}\" y=\"{1:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 {0:.1f} "
        "{1:.1f})\">{2}</text>\n",
        x0 + 18, (top + bottom) / 2, escape_xml(panel.y_label));
    // Legend, one row under the title.
    double lx = left;
    for (size_t s = 0; s < panel.series.size(); ++s) {
        const char* color = kColors[s % std::size(kColors)];
        const double ly = y0 + 42;
        out += fmt::format(
            "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n", lx,
            ly, lx + 20, ly, color);
        out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", lx + 25, ly + 4,
                           escape_xml(panel.series[s].name));
        lx += 40 + kCharWidth * static_cast<double>(panel.series[s].name.size());
    }
    // The series.
    for (size_t s = 0; s < panel.series.size(); ++s) {
        const char* color = kColors[s % std::size(kColors)];
        const auto& y = panel.series[s].y;
        std::string points, dots;
        for (size_t i : order) {
            if (i >= y.size() || !axis.shows(y[i])) continue;
            points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", px(x[i]), py(y[i]));
            dots +=
                fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(x[i]), py(y[i]), color);
        }
        out += fmt::format(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>\n",
            color, points, escape_xml(panel.series[s].name));
        out += dots;
    }
    out += "</g>\n";
    return out;
}

}  // namespace

std::string render_line_panels_svg(const std::string& caption, const std::string& x_label, const std::vector<double>& x,
                                   const std::vector<PlotPanel>& panels) {
    const double width = kPanelWidth * static_cast<double>(std::max<size_t>(panels.size(), 1));
    const double height = kCaptionHeight + kPanelHeight;
    std::string out = fmt::format(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:g}\" height=\"{1:g}\" viewBox=\"0 0 {0:g} {1:g}\" "
        "font-family=\"sans-serif\" font-size=\"12\">\n",
        width, height);
    out += fmt::format("<title>{}</title>\n", escape_xml(caption));
    out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    out += fmt::format("<text x=\"{:g}\" y=\"20\" text-anchor=\"middle\">{}</text>\n", width / 2, escape_xml(caption));
    // Points are joined in order of x, whatever order the rounds ran in.
    std::vector<size_t> order(x.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
    if (!order.empty())
        for (size_t p = 0; p < panels.size(); ++p)
            out += panel_svg(panels[p], kPanelWidth * static_cast<double>(p), kCaptionHeight, x_label, x, order);
    out += "</svg>\n";
    return out;
}

std::string plot_load_rounds(const std::string& caption, const std::vector<RoundStats>& rounds) {
    std::vector<double> x;
    PlotSeries tokens{"aggregate tokens/s", {}}, ttft50{"TTFT p50", {}}, ttft99{"TTFT p99", {}}, itl50{"ITL p50", {}};
    for (const auto& r : rounds) {
        x.push_back(r.concurrency);
        tokens.y.push_back(r.tokens_per_s);
        ttft50.y.push_back(r.ttft_ms.p50);
        ttft99.y.push_back(r.ttft_ms.p99);
        itl50.y.push_back(r.itl_ms.p50);
    }
    return render_line_panels_svg(caption, "concurrent clients (-c)", x,
                                  {{"Throughput", "generated tokens/s (all clients)", {tokens}, false},
                                   {"Latency", "milliseconds (log scale)", {ttft50, ttft99, itl50}, true}});
}

}  // namespace moeserve::cli
