// A slot's cache in a file, for POST /slots/{id}?action=save|restore
// (llama-server's --slot-save-path, spec server-behaviour §5.11): the
// tokens the slot holds and its sequence state (KV rows, recurrent state).
// The header records the cache's layout — layer count, K and V types, each
// layer's row sizes, the recurrent state's size — and a file whose layout
// differs from the running cache's is refused, since its bytes would be
// read as something else. The format is moeserve's own; llama.cpp's is
// internal to llama.cpp as well.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "memory/kv_cache.h"

namespace moeserve {

struct SlotFile {
    std::vector<int32_t> tokens;
    SequenceState state;
};

// Writes the file; returns the bytes written. Throws std::runtime_error
// naming the file when it cannot be written.
uint64_t write_slot_file(const std::string& path, const std::vector<int32_t>& tokens, const SequenceState& state,
                         const KvCache& cache);
// Reads a file written for a cache of the same layout. Throws
// std::runtime_error naming the file and what is wrong with it.
SlotFile read_slot_file(const std::string& path, const KvCache& cache, uint64_t* bytes_read = nullptr);

}  // namespace moeserve
