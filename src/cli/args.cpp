#include "cli/args.h"

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
