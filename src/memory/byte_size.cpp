#include "memory/byte_size.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <stdexcept>

namespace moeserve {

uint64_t parse_byte_size(const std::string& text) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    const std::string number = text.substr(0, i);
    std::string unit;
    for (size_t j = i; j < text.size(); ++j)
        if (text[j] != ' ') unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[j])));
    auto bad = [&]() {
        return std::invalid_argument(
            fmt::format("'{}' is not a size (examples: 24GiB, 24GB, 512MiB, 1073741824)", text));
    };
    if (number.empty() || number == ".") throw bad();
    double value = 0;
    try {
        size_t used = 0;
        value = std::stod(number, &used);
        if (used != number.size()) throw bad();
    } catch (const std::logic_error&) {
        throw bad();
    }
    double scale = 0;
    struct Unit {
        const char* name;
        double scale;
    };
    static const Unit units[] = {
        {"", 1},     {"b", 1},      {"k", 0x1p10},   {"kib", 0x1p10}, {"kb", 1e3},   {"m", 0x1p20},   {"mib", 0x1p20},
        {"mb", 1e6}, {"g", 0x1p30}, {"gib", 0x1p30}, {"gb", 1e9},     {"t", 0x1p40}, {"tib", 0x1p40}, {"tb", 1e12},
    };
    for (const Unit& u : units)
        if (unit == u.name) scale = u.scale;
    if (scale == 0) throw bad();
    const double bytes = std::round(value * scale);
    if (!std::isfinite(bytes) || bytes > 0x1p63) throw bad();
    return static_cast<uint64_t>(bytes);
}

std::string format_bytes(uint64_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes) / 1024;
    int u = 0;
    while (v >= 1024 && u < 3) v /= 1024, ++u;
    return fmt::format("{:.2f} {}", v, units[u]);
}

std::string format_param_count(int64_t n) {
    if (n >= 1000000000) return fmt::format("{:.2f} B", n / 1e9);
    if (n >= 1000000) return fmt::format("{:.2f} M", n / 1e6);
    return fmt::format("{:.1f} K", n / 1e3);
}

uint64_t available_memory_bytes() {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    uint64_t value = 0;
    while (in >> key >> value) {
        std::getline(in, unit);
        if (key == "MemAvailable:") return value * 1024;  // reported in kB (KiB)
    }
    return 0;
}

}  // namespace moeserve
