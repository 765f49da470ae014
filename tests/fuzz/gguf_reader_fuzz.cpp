// libFuzzer target for the GGUF reader: any byte string must either parse
// into a file whose tensors lie inside it, or raise GgufError. Run with
// `make fuzz` (FUZZ_SECONDS=60 by default).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        moeserve::GgufFile f = moeserve::GgufFile::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
        for (const auto& kv : f.metadata()) (void)kv.value.to_display();
        if (!f.header_only())
            for (const auto& t : f.tensors())
                if (f.data_offset() + t.offset + t.nbytes > f.file_size()) std::abort();
    } catch (const moeserve::GgufError&) {
    }
    return 0;
}
