// Byte sizes as users write and read them: parsing "24GiB", "24GB",
// "512MiB" or plain bytes, printing MiB/GiB with two decimals as llama.cpp
// does, and the memory this machine has available now.
#pragma once

#include <cstdint>
#include <string>

namespace moeserve {

// "24GiB", "1.5 GiB", "24GB" (10^9), "512MiB", "64K" (binary), "1000" (bytes).
// Throws std::invalid_argument naming the text when it is not a size.
uint64_t parse_byte_size(const std::string& text);

// "512 B", "3.25 MiB", "17.28 GiB": the largest binary unit that keeps the
// number at least 1.
std::string format_bytes(uint64_t bytes);

// A parameter count: "30.53 B", "2.65 M", "260.1 K".
std::string format_param_count(int64_t n);

// MemAvailable from /proc/meminfo, in bytes; 0 when it cannot be read.
uint64_t available_memory_bytes();

}  // namespace moeserve
