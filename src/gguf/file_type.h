// general.file_type (llama_ftype): a label for the dominant weight type of a
// file. Only a label: every tensor carries its own type.
#pragma once

#include <cstdint>
#include <string>

namespace moeserve {

// "Q4_K - Medium" for 15; "unknown (N)" for values llama.cpp does not define.
std::string file_type_name(uint32_t ftype);

}  // namespace moeserve
