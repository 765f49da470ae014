#include "cli/args.h"

#include <algorithm>
#include <charconv>

namespace moeserve::cli {

bool Args::flag(std::initializer_list<const char*> names) {
    if (done()) return false;
    for (const char* n : names)
        if (args_[i_] == n) {
            last_flag_ = args_[i_++];
            return true;
        }
    return false;
}

std::string Args::value() {
    if (done()) throw UsageError("option " + last_flag_ + " needs a value");
    return args_[i_++];
}

int64_t Args::int_value() {
    std::string v = value();
    int64_t x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || p != v.data() + v.size())
        throw UsageError("option " + last_flag_ + " expects an integer, got '" + v + "'");
    return x;
}

int64_t Args::int_value(int64_t min, int64_t max) {
    const int64_t x = int_value();
    if (x < min || x > max)
        throw UsageError("option " + last_flag_ + " expects an integer from " + std::to_string(min) + " to " +
                         std::to_string(max) + ", got " + std::to_string(x));
    return x;
}

std::vector<std::string> Args::list_value() {
    const std::string v = value();
    std::vector<std::string> out;
    for (size_t start = 0; start <= v.size();) {
        const size_t comma = std::min(v.find(',', start), v.size());
        if (comma > start) out.push_back(v.substr(start, comma - start));
        start = comma + 1;
    }
    if (out.empty()) throw UsageError("option " + last_flag_ + " expects a comma-separated list, got '" + v + "'");
    return out;
}

double Args::float_value() {
    std::string v = value();
    try {
        size_t used = 0;
        double x = std::stod(v, &used);
        if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    throw UsageError("option " + last_flag_ + " expects a number, got '" + v + "'");
}

}  // namespace moeserve::cli
