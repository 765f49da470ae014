// GPU speed of the weight-reading ops (src/backend/cuda/cuda_matmul.cu,
// cuda_moe.cu) on Qwen3-30B-A3B shapes: matmul over a weight larger than L2
// (reported as weight bytes per second, to hold against the card's HBM
// bandwidth: ~3.35 TB/s on an H100 SXM) at decode batch sizes and at 512
// tokens, and one MoE layer (128 experts, top 8, n_embd 2048, n_ff 768,
// Q4_K gate/up, Q6_K down) at 1, 8 and 512 tokens (tokens per second of the
// layer; a 48-layer model runs 48 of them per token).
//
//   build-cuda/cuda_matmul_bench --benchmark_min_time=0.2
// Built in every build; without CUDA it only says so.
#if defined(MOESERVE_WITH_CUDA)

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_ops.h"
#include "quant/quantize.h"

namespace moeserve {
namespace {

struct Gpu {
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    std::unique_ptr<cuda::Scratch> scratch;
    cuda::Context ctx;
    Gpu() {
        MOESERVE_CUDA_CHECK(cudaStreamCreate(&stream));
        MOESERVE_CUBLAS_CHECK(cublasCreate(&cublas));
        MOESERVE_CUBLAS_CHECK(cublasSetStream(cublas, stream));
        scratch = std::make_unique<cuda::Scratch>(stream);
        ctx.stream = stream, ctx.cublas = cublas, ctx.scratch = scratch.get();
    }
};

Gpu& gpu() {
    static Gpu g;
    return g;
}

// A device weight {in, out, n_mat}: 256 rows of quantized N(0, 0.05) values
// repeated over every row and matrix (the speed does not depend on the values).
Weight device_weight(GgmlType type, int64_t in, int64_t out, int64_t n_mat, std::string name) {
    const size_t row_bytes = ggml_row_bytes(type, in);
    std::vector<uint8_t> one(row_bytes * out);
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.05f);
    std::vector<float> f(in);
    for (int64_t r = 0; r < out; ++r) {
        if (r >= 256) {
            std::memcpy(one.data() + r * row_bytes, one.data() + (r % 256) * row_bytes, row_bytes);
            continue;
        }
        for (float& v : f) v = dist(rng);
        if (type == GgmlType::F32)
            std::memcpy(one.data() + r * row_bytes, f.data(), row_bytes);
        else
            quantize_weight_row(type, f.data(), one.data() + r * row_bytes, in);
    }
    uint8_t* d = nullptr;
    MOESERVE_CUDA_CHECK(cudaMalloc(&d, one.size() * n_mat));
    for (int64_t m = 0; m < n_mat; ++m)
        MOESERVE_CUDA_CHECK(cudaMemcpy(d + m * one.size(), one.data(), one.size(), cudaMemcpyHostToDevice));
    Weight w;
    w.name = std::move(name);
    w.type = type;
    w.ne = {in, out, n_mat, 1};
    w.row_bytes = row_bytes;
    w.matrix_bytes = one.size();
    w.data = d;
    return w;
}

float* device_floats(int64_t n, float value) {
    std::vector<float> h(n, value);
    float* d = nullptr;
    MOESERVE_CUDA_CHECK(cudaMalloc(&d, n * sizeof(float)));
    MOESERVE_CUDA_CHECK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

// Runs op 10 times per iteration between CUDA events; reports per-op time.
template <class Op>
void time_op(benchmark::State& state, Op op) {
    Gpu& g = gpu();
    cudaEvent_t a, b;
    MOESERVE_CUDA_CHECK(cudaEventCreate(&a));
    MOESERVE_CUDA_CHECK(cudaEventCreate(&b));
    op();  // warm-up (scratch growth, cuBLAS heuristics)
    g.scratch->reset();
    for (auto _ : state) {
        MOESERVE_CUDA_CHECK(cudaEventRecord(a, g.stream));
        for (int i = 0; i < 10; ++i) {
            op();
            g.scratch->reset();
        }
        MOESERVE_CUDA_CHECK(cudaEventRecord(b, g.stream));
        MOESERVE_CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        MOESERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        state.SetIterationTime(ms / 1000.0 / 10);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
}

void bm_matmul(benchmark::State& state, GgmlType type, int64_t n_tokens) {
    const int64_t in = 4096, out = 32768;  // 134M weights: more than the 50 MB L2 at every type
    const Weight w = device_weight(type, in, out, 1, "w");
    float* x = device_floats(n_tokens * in, 0.01f);
    float* y = device_floats(n_tokens * out, 0.0f);
    time_op(state, [&] { cuda::matmul(gpu().ctx, w, x, n_tokens, y); });
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.matrix_bytes));
    state.counters["tok/s"] =
        benchmark::Counter(static_cast<double>(n_tokens * state.iterations()), benchmark::Counter::kIsRate);
    cudaFree(const_cast<uint8_t*>(w.data));
    cudaFree(x);
    cudaFree(y);
}

void bm_moe_layer(benchmark::State& state, int64_t n_tokens) {
    const int64_t n_embd = 2048, n_ff = 768, n_expert = 128;
    const Weight router = device_weight(GgmlType::F32, n_embd, n_expert, 1, "router");
    const Weight gate = device_weight(GgmlType::Q4_K, n_embd, n_ff, n_expert, "gate_exps");
    const Weight up = device_weight(GgmlType::Q4_K, n_embd, n_ff, n_expert, "up_exps");
    const Weight down = device_weight(GgmlType::Q6_K, n_ff, n_embd, n_expert, "down_exps");
    // Varied inputs, so that tokens spread over the experts.
    std::vector<float> hx(n_tokens * n_embd);
    std::mt19937 rng(2);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& v : hx) v = dist(rng);
    float* x = device_floats(n_tokens * n_embd, 0.0f);
    MOESERVE_CUDA_CHECK(cudaMemcpy(x, hx.data(), hx.size() * sizeof(float), cudaMemcpyHostToDevice));
    float* out = device_floats(n_tokens * n_embd, 0.0f);
    MoeParams p;
    p.n_expert = static_cast<int>(n_expert);
    p.n_expert_used = 8;
    time_op(state, [&] { cuda::moe_ffn(gpu().ctx, x, n_tokens, router, gate, up, down, p, out); });
    state.counters["tok/s"] =
        benchmark::Counter(static_cast<double>(n_tokens * state.iterations()), benchmark::Counter::kIsRate);
    for (const Weight* w : {&router, &gate, &up, &down}) cudaFree(const_cast<uint8_t*>(w->data));
    cudaFree(x);
    cudaFree(out);
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) {
    using namespace moeserve;
    if (cuda::device_count() == 0) {
        std::puts("cuda_matmul_bench: no CUDA device");
        return 0;
    }
    for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ4_XS, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::F16})
        for (int64_t n : {1, 2, 4, 8, 16, 512})
            benchmark::RegisterBenchmark(
                ("matmul/" + std::string(ggml_type_name(t)) + "/4096x32768/tokens:" + std::to_string(n)).c_str(),
                [=](benchmark::State& s) { bm_matmul(s, t, n); })
                ->UseManualTime();
    for (int64_t n : {1, 8, 32, 512})
        benchmark::RegisterBenchmark(("moe_ffn/qwen3-30b-a3b-layer/q4_K+q6_K/tokens:" + std::to_string(n)).c_str(),
                                     [=](benchmark::State& s) { bm_moe_layer(s, n); })
            ->UseManualTime();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

#else

#include <cstdio>

int main() {
    std::puts("cuda_matmul_bench: built without CUDA (configure with -DMOESERVE_CUDA=ON)");
    return 0;
}

#endif
