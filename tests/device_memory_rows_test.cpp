// DeviceMemory's rows by index (download_rows / upload_rows), the KV cache's
// path for saving and restoring a sequence: rows come back packed in the
// order asked, go back to their cells, and the default form makes one copy
// per run of consecutive cells (what the CUDA form replaces by a gather on
// the device; its GPU test is tests/cuda/cuda_memory_rows_test.cpp).
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "counting_memory.h"
#include "memory/device_memory.h"

namespace moeserve {
namespace {

using test::CountingMemory;

TEST(DeviceMemoryRows, rows_by_index_come_back_packed_and_go_back_to_their_cells) {
    std::mt19937 rng(3);
    CountingMemory mem;
    for (size_t row_bytes : {size_t{1}, size_t{18}, size_t{34}, size_t{256}}) {
        const int n_cells = 64;
        DeviceBuffer data(mem, n_cells * row_bytes);
        auto* bytes = static_cast<uint8_t*>(data.data());
        for (size_t i = 0; i < n_cells * row_bytes; ++i) bytes[i] = static_cast<uint8_t>(rng());
        // Runs: 5..9, 20, 21, 40, then 2, 3 (out of order): four runs.
        const std::vector<int32_t> cells = {5, 6, 7, 8, 9, 20, 21, 40, 2, 3};
        std::vector<uint8_t> packed(cells.size() * row_bytes);
        mem.downloads = 0;
        mem.download_rows(packed.data(), data.data(), row_bytes, cells);
        EXPECT_EQ(mem.downloads, 4);
        for (size_t i = 0; i < cells.size(); ++i)
            ASSERT_EQ(std::memcmp(packed.data() + i * row_bytes, bytes + cells[i] * row_bytes, row_bytes), 0)
                << row_bytes << " " << i;

        // Back, into other cells: 30..39 (one run); the rest stays.
        std::vector<uint8_t> before(bytes, bytes + n_cells * row_bytes);
        std::vector<int32_t> to(cells.size());
        std::iota(to.begin(), to.end(), 30);
        mem.uploads = 0;
        mem.upload_rows(data.data(), packed.data(), row_bytes, to);
        EXPECT_EQ(mem.uploads, 1);
        for (int c = 0; c < n_cells; ++c) {
            const uint8_t* want =
                c >= 30 && c < 40 ? packed.data() + (c - 30) * row_bytes : before.data() + c * row_bytes;
            ASSERT_EQ(std::memcmp(bytes + c * row_bytes, want, row_bytes), 0) << row_bytes << " cell " << c;
        }
    }
}

TEST(DeviceMemoryRows, no_cells_copy_nothing) {
    CountingMemory mem;
    uint8_t row[4] = {};
    mem.download_rows(row, row, 4, {});
    mem.upload_rows(row, row, 4, {});
    EXPECT_EQ(mem.downloads + mem.uploads, 0);
}

}  // namespace
}  // namespace moeserve
