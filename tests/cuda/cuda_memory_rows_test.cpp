// CudaMemory's rows by index: the gather / scatter through the device
// staging block (many runs, rows of odd and aligned sizes, more rows than
// one piece) gives the bytes of one copy per row, and the few-runs path
// too. Skips without a device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_memory.h"

namespace moeserve {
namespace {

TEST(CudaMemoryRows, gathered_and_scattered_rows_are_the_rows) {
    if (cuda::device_count() == 0)
        GTEST_SKIP() << "no CUDA device: GPU tests run on the GPU machine (scripts/gpu-check.sh)";
    std::mt19937 rng(11);
    cuda::CudaMemory mem(0);
    // Row sizes: a q4_0 K row (18 bytes a block), q8_0 (34), f16 (256), and one
    // past a piece's byte budget in rows (8 MiB / 4,160 bytes < 3,000 rows).
    for (auto [row_bytes, n_cells, n_rows] :
         {std::tuple{size_t{18}, 4096, 1500}, std::tuple{size_t{34}, 512, 300}, std::tuple{size_t{256}, 1024, 700},
          std::tuple{size_t{4160}, 4096, 3000}, std::tuple{size_t{256}, 64, 3}}) {
        std::vector<uint8_t> host(static_cast<size_t>(n_cells) * row_bytes);
        for (auto& b : host) b = static_cast<uint8_t>(rng());
        DeviceBuffer data(mem, host.size());
        mem.upload(data.data(), host.data(), host.size());
        // A shuffled subset of the cells: almost every row its own run.
        std::vector<int32_t> cells(n_cells);
        std::iota(cells.begin(), cells.end(), 0);
        std::shuffle(cells.begin(), cells.end(), rng);
        cells.resize(n_rows);
        std::vector<uint8_t> packed(cells.size() * row_bytes);
        mem.download_rows(packed.data(), data.data(), row_bytes, cells);
        for (size_t i = 0; i < cells.size(); ++i)
            ASSERT_EQ(std::memcmp(packed.data() + i * row_bytes, host.data() + cells[i] * row_bytes, row_bytes), 0)
                << row_bytes << " row " << i;

        // Scatter other bytes to the same cells; the rest keeps its bytes.
        for (auto& b : packed) b = static_cast<uint8_t>(rng());
        mem.upload_rows(data.data(), packed.data(), row_bytes, cells);
        std::vector<uint8_t> back(host.size());
        mem.download(back.data(), data.data(), back.size());
        for (size_t i = 0; i < cells.size(); ++i)
            std::memcpy(host.data() + cells[i] * row_bytes, packed.data() + i * row_bytes, row_bytes);
        ASSERT_EQ(back, host) << row_bytes;
    }
}

}  // namespace
}  // namespace moeserve
