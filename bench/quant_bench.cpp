// Throughput of the tensor-format kernels, in bytes of weight data consumed
// per second: dequantize_row (scalar and SIMD), vec_dot (every compiled
// level), the decode kernel of several weight rows (vec_dot_rows), the
// kernels a matmul of 1-4 tokens uses (vec_dot_tokens: a decode step of 1-4
// slots, or a prompt's last few tokens) and the prompt tile kernel (16
// tokens), each over a working set that fits in L2 (256 KiB) and one that does
// not (64 MiB, streamed from DRAM/L3 like a decode step's weights).
//
//   build-quant/quant_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/dequantize.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

constexpr int64_t kRow = 4096;  // elements per weight row (a typical n_embd)

const GgmlType kTypes[] = {GgmlType::Q4_0,   GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                           GgmlType::IQ4_NL, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS,
                           GgmlType::F16,    GgmlType::BF16, GgmlType::F32};

// Offsets of the fp16 scale fields in a block (set to a sane value so the
// float work runs on normal numbers).
std::vector<size_t> fp16_fields(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
            return {0, 2};
        case GgmlType::Q6_K:
            return {208};
        default:
            return {0};
    }
}

// rows x kRow weights of type t: random codes, fixed scales.
std::vector<uint8_t> make_weights(GgmlType t, int64_t rows) {
    const size_t row_bytes = ggml_row_bytes(t, kRow);
    std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
    std::mt19937 rng(1);
    if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) {
        std::normal_distribution<float> dist(0.0f, 0.05f);
        std::vector<float> x(kRow);
        for (int64_t r = 0; r < rows; ++r) {
            for (auto& v : x) v = dist(rng);
            quantize_row(t, x.data(), w.data() + r * row_bytes, kRow);
        }
        return w;
    }
    for (size_t i = 0; i < w.size(); i += 4) {
        const uint32_t v = static_cast<uint32_t>(rng());
        std::memcpy(w.data() + i, &v, std::min<size_t>(4, w.size() - i));
    }
    const size_t bs = static_cast<size_t>(ggml_type_info(t).type_size);
    for (size_t off = 0; off < w.size(); off += bs)
        for (size_t f : fp16_fields(t)) {
            const uint16_t d = 0x2A00;
            std::memcpy(w.data() + off + f, &d, 2);
        }
    return w;
}

std::vector<uint8_t> make_activation(GgmlType t) {
    std::mt19937 rng(2);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(kRow);
    for (auto& v : x) v = dist(rng);
    const GgmlType at = vec_dot_type(t);
    std::vector<uint8_t> a(ggml_row_bytes(at, kRow));
    quantize_row_activation(at, x.data(), a.data(), kRow);
    return a;
}

int64_t rows_for(GgmlType t, size_t bytes) {
    return std::max<int64_t>(1, static_cast<int64_t>(bytes / ggml_row_bytes(t, kRow)));
}

void bm_vec_dot(benchmark::State& state, GgmlType t, VecDotFn fn, size_t working_set) {
    const int64_t rows = rows_for(t, working_set);
    const auto w = make_weights(t, rows);
    const auto a = make_activation(t);
    const size_t row_bytes = ggml_row_bytes(t, kRow);
    for (auto _ : state) {
        float sum = 0;
        for (int64_t r = 0; r < rows; ++r) sum += fn(w.data() + r * row_bytes, a.data(), kRow);
        benchmark::DoNotOptimize(sum);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

// A decode step's products: the weight rows kDotWeightRows at a time against
// one activation row (vec_dot.h VecDotRowsFn), as a decoded token's matmuls run.
void bm_vec_dot_rows(benchmark::State& state, GgmlType t, VecDotRowsFn fn, size_t working_set) {
    const int64_t rows = rows_for(t, working_set);
    const auto w = make_weights(t, rows);
    const auto a = make_activation(t);
    const size_t row_bytes = ggml_row_bytes(t, kRow);
    std::vector<float> out(static_cast<size_t>(rows));
    for (auto _ : state) {
        for (int64_t r = 0; r < rows; r += kDotWeightRows) {
            const int n = static_cast<int>(std::min<int64_t>(kDotWeightRows, rows - r));
            fn(w.data() + r * row_bytes, row_bytes, n, a.data(), out.data() + r, kRow);
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

// n (1-4) activation rows against every weight row with the kernels the CPU
// matmul picks for n tokens: the weight-rows kernel's form for n where the
// type has one, else the four-row (n = 4), two/three-row or single-row
// kernel. Counter MAC/s as for the tile: against vec_dot_tile's, where a
// padded tile starts to pay (each tile kernel's min_partial).
void bm_vec_dot_tokens(benchmark::State& state, GgmlType t, int n, size_t working_set) {
    const int64_t rows = rows_for(t, working_set);
    const auto w = make_weights(t, rows);
    const auto a = make_activation(t);
    const size_t row_bytes = ggml_row_bytes(t, kRow);
    std::vector<uint8_t> act;
    for (int k = 0; k < n; ++k) act.insert(act.end(), a.begin(), a.end());
    const void* ap[4];
    for (int k = 0; k < n; ++k) ap[k] = act.data() + k * a.size();
    const VecDotRowsFewFn rows_few = n > 1 ? vec_dot_rows_few_kernel(t) : nullptr;
    const VecDotRowsFn rows_one = n == 1 ? vec_dot_rows_kernel(t) : nullptr;
    const VecDot4Fn dot4 = n == 4 ? vec_dot4_kernel(t) : nullptr;
    const VecDotFewFn few = n == 2 || n == 3 ? vec_dot_few_kernel(t, n) : nullptr;
    const VecDotFn dot = vec_dot_kernel(t);
    std::vector<float> out(static_cast<size_t>(kDotWeightRows * 4));
    for (auto _ : state) {
        for (int64_t r = 0; r < rows; r += kDotWeightRows) {
            const int m = static_cast<int>(std::min<int64_t>(kDotWeightRows, rows - r));
            const uint8_t* wr = w.data() + r * row_bytes;
            if (rows_few) {
                float* o[4];
                for (int k = 0; k < n; ++k) o[k] = out.data() + k * kDotWeightRows;
                rows_few(wr, row_bytes, m, ap, n, o, kRow);
            } else if (rows_one) {
                rows_one(wr, row_bytes, m, a.data(), out.data(), kRow);
            } else {
                for (int v = 0; v < m; ++v) {
                    if (dot4)
                        dot4(wr + v * row_bytes, ap, out.data(), kRow);
                    else if (few)
                        few(wr + v * row_bytes, ap, out.data(), kRow);
                    else
                        for (int k = 0; k < n; ++k) out[k] = dot(wr + v * row_bytes, ap[k], kRow);
                }
            }
            benchmark::DoNotOptimize(out.data());
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
    state.counters["MAC/s"] =
        benchmark::Counter(static_cast<double>(rows * kRow * n), benchmark::Counter::kIsIterationInvariantRate);
}

// A prompt's products: 16 activation rows packed into a tile once, then the
// weight rows against it kDotTileWeightRows at a time (vec_dot.h VecDotTile).
// Counter MAC/s: weight values times tokens per second.
void bm_vec_dot_tile(benchmark::State& state, GgmlType t, const VecDotTile& tile, size_t working_set) {
    const int64_t rows = rows_for(t, working_set);
    const auto w = make_weights(t, rows);
    const auto a = make_activation(t);
    const size_t row_bytes = ggml_row_bytes(t, kRow);
    std::vector<uint8_t> act;
    for (int k = 0; k < kDotTileRows; ++k) act.insert(act.end(), a.begin(), a.end());
    std::vector<uint8_t> packed(tile.tile_bytes(kRow));
    tile.pack(act.data(), a.size(), kDotTileRows, packed.data(), kRow);
    std::vector<float> out(static_cast<size_t>(kDotTileWeightRows * kDotTileRows));
    for (auto _ : state) {
        for (int64_t r = 0; r < rows; r += kDotTileWeightRows) {
            const int n = static_cast<int>(std::min<int64_t>(kDotTileWeightRows, rows - r));
            tile.dot(w.data() + r * row_bytes, row_bytes, n, packed.data(), out.data(), kRow);
            benchmark::DoNotOptimize(out.data());
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
    state.counters["MAC/s"] = benchmark::Counter(static_cast<double>(rows * kRow * kDotTileRows),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void bm_dequantize(benchmark::State& state, GgmlType t, bool simd, size_t working_set) {
    const int64_t rows = rows_for(t, working_set);
    const auto w = make_weights(t, rows);
    const size_t row_bytes = ggml_row_bytes(t, kRow);
    std::vector<float> out(kRow);
    for (auto _ : state) {
        for (int64_t r = 0; r < rows; ++r) {
            if (simd)
                dequantize_row(t, w.data() + r * row_bytes, out.data(), kRow);
            else
                dequantize_row_scalar(t, w.data() + r * row_bytes, out.data(), kRow);
            benchmark::DoNotOptimize(out.data());
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) {
    using namespace moeserve;
    const std::pair<const char*, size_t> sets[] = {{"L2_256KiB", 256u << 10}, {"DRAM_64MiB", 64u << 20}};
    for (auto [set_name, bytes] : sets) {
        for (GgmlType t : kTypes) {
            const std::string tn(ggml_type_name(t));
            for (SimdLevel level : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
                const VecDotFn fn = vec_dot_kernel(t, level);
                if (!fn) continue;
                benchmark::RegisterBenchmark(("vec_dot/" + tn + "/" + simd_level_name(level) + "/" + set_name).c_str(),
                                             [=](benchmark::State& s) { bm_vec_dot(s, t, fn, bytes); });
            }
            if (const VecDotRowsFn rows = vec_dot_rows_kernel(t))
                benchmark::RegisterBenchmark(("vec_dot_rows/" + tn + "/" + set_name).c_str(),
                                             [=](benchmark::State& s) { bm_vec_dot_rows(s, t, rows, bytes); });
            if (const VecDotTile* tile = vec_dot_tile_kernel(t, kRow)) {
                for (int n = 1; n <= 4; ++n)
                    benchmark::RegisterBenchmark(
                        ("vec_dot_tokens/" + tn + "/" + std::to_string(n) + "/" + set_name).c_str(),
                        [=](benchmark::State& s) { bm_vec_dot_tokens(s, t, n, bytes); });
                benchmark::RegisterBenchmark(("vec_dot_tile/" + tn + "/" + set_name).c_str(),
                                             [=](benchmark::State& s) { bm_vec_dot_tile(s, t, *tile, bytes); });
            }
            for (bool simd : {false, true})
                benchmark::RegisterBenchmark(
                    ("dequantize/" + tn + "/" + (simd ? "simd" : "scalar") + "/" + set_name).c_str(),
                    [=](benchmark::State& s) { bm_dequantize(s, t, simd, bytes); });
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
