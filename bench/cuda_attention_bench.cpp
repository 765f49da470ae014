// GPU speed of decode attention alone (src/backend/cuda/cuda_attention*.cu,
// cuda_mla.cu): one decoded token over a cache filled to a depth, for each
// kernel form and cache type, timed with CUDA events (each call on another
// copy of the layer, so that its rows come from memory as in a model's pass,
// not from the L2) and reported against the bytes of cache the step has to
// read and the card's measured device-to-device copy bandwidth. The model
// benchmark (`moeserve bench -d`) says how much a layer's attention adds at
// depth; this says which kernel and which cache type cost it, without the
// rest of the pass around it.
//
// Shapes: Qwen3-30B-A3B's attention (32 query heads, 4 KV heads, head dim
// 128), Nemotron-3-Nano's (32 / 2 / 128) and GLM-4.7-Flash's MLA (20 heads
// over a 576-value latent row, 512 of them V).
//
//   build-gpu/cuda_attention_bench [--depths 4096,32768,131072] [--forms auto,mma,f32,vec,lane,tile,tile2,fa2,fa2p]
//                                  [--tokens 1,8] [--min-chunks 64,256] [--blocks-per-sm 4,8] [--reps 20]
//
// MOESERVE_CUDA_ATTENTION selects the form per row (as in the engine);
// "auto" is the engine's default choice. --tokens decodes that many
// sequences at once, each over its own depth cells (a server's parallel
// slots). --min-chunks and --blocks-per-sm sweep how the cells are split
// over blocks (MOESERVE_CUDA_ATTENTION_MIN_CHUNK, _BLOCKS_PER_SM; default:
// the engine's). Built in every build; without CUDA
// it only says so.
#if defined(MOESERVE_WITH_CUDA)

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_ops.h"
#include "memory/kv_cache.h"
#include "quant/ggml_type.h"

namespace moeserve {
namespace {

struct Gpu {
    cudaStream_t stream = nullptr;
    std::unique_ptr<cuda::Scratch> scratch;
    cuda::Context ctx;
    size_t l2_bytes = 0;
    Gpu() {
        MOESERVE_CUDA_CHECK(cudaSetDevice(0));
        MOESERVE_CUDA_CHECK(cudaStreamCreate(&stream));
        scratch = std::make_unique<cuda::Scratch>(stream);
        int v = 0;
        MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0));
        ctx.sm_count = v;
        MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
        ctx.shared_mem_per_block_optin = static_cast<size_t>(v);
        MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, 0));
        l2_bytes = static_cast<size_t>(v);
        ctx.device = 0;
        ctx.stream = stream;
        ctx.scratch = scratch.get();
    }
};

// A device buffer freed with its owner.
template <class T>
struct Device {
    T* p = nullptr;
    explicit Device(size_t n) { MOESERVE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); }
    Device(const std::vector<T>& h) : Device(h.size()) {
        MOESERVE_CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    ~Device() { cudaFree(p); }
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;
};

std::vector<float> normal_floats(size_t n, std::mt19937& rng, float sigma) {
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

struct Shape {
    const char* name;
    int n_head, n_head_kv, dk, dv;
    bool mla;  // K-only latent cache: dk values per row (all heads), V its first dv
};

// One layer of cache filled to `depth` cells with random rows written by the
// GPU's own store_kv (so quantized caches hold real blocks, rotated as the
// engine rotates them), and one decoding token's query and cell list. And
// copies of the layer at other addresses, enough that a round over them reads
// twice the L2: a model's pass reads each layer's cache from memory (every
// layer has its own, and the weights stream through between them), where one
// layer read over and over would be timed from the L2 (at 32K cells a q4_0
// cache of Qwen3-30B-A3B's shape is 19 MB, an H200's L2 50 MB).
struct Filled {
    std::unique_ptr<KvCache> host;  // one cell: row sizes and rotation rules
    std::unique_ptr<Device<uint8_t>> k, v;
    cuda::KvLayer layer;
    std::vector<std::unique_ptr<Device<uint8_t>>> copies;
    std::vector<cuda::KvLayer> layers;  // layer, then the copies'
    std::unique_ptr<Device<int32_t>> cells, n_cells;
    std::unique_ptr<Device<int64_t>> offset;
    std::unique_ptr<Device<float>> q, out;
    cuda::AttentionCells view;
    double bytes = 0;  // cache bytes one call reads
    int n_tokens = 1;

    // tokens: sequences decoding at once, sequence i over cells i*depth .. (its own rows).
    Filled(Gpu& g, const Shape& s, GgmlType type, int64_t depth, int tokens, std::mt19937& rng) {
        const int64_t n_total = depth * tokens;
        KvCacheConfig c;
        c.n_cells = 1;
        c.type_k = type;
        c.type_v = type;
        const int64_t wk = s.mla ? s.dk : static_cast<int64_t>(s.n_head_kv) * s.dk;
        const int64_t wv = s.mla ? 0 : static_cast<int64_t>(s.n_head_kv) * s.dv;
        c.n_embd_k = {wk};
        c.n_embd_v = {wv};
        c.head_dim_k = s.dk;
        c.head_dim_v = s.mla ? 0 : s.dv;
        c.allow_rotation = !s.mla;  // as deepseek2.cpp: llama.cpp never rotates the latent
        host = std::make_unique<KvCache>(c);
        const size_t kb = host->k_row_bytes(0), vb = s.mla ? 0 : host->v_row_bytes(0);
        k = std::make_unique<Device<uint8_t>>(kb * n_total);
        v = std::make_unique<Device<uint8_t>>(std::max<size_t>(vb * n_total, 1));
        layer.k = k->p;
        layer.v = s.mla ? nullptr : v->p;
        layer.k_row_bytes = kb;
        layer.v_row_bytes = vb;
        layer.type_k = type;
        layer.type_v = type;
        layer.n_embd_k = wk;
        layer.n_embd_v = wv;
        layer.k_rot_chunk = host->k_rotation_chunk();
        layer.v_rot_chunk = host->v_rotation_chunk();
        // Rows in pieces of 4096 from one pool of random values, each piece
        // from another offset into it.
        const int64_t piece = 4096;
        const auto kf = normal_floats((piece + 64) * wk, rng, 1.0f);
        const auto vf = normal_floats((piece + 64) * std::max<int64_t>(wv, 1), rng, 1.0f);
        Device<float> dk(kf), dv(vf);
        std::vector<int32_t> all(n_total);
        for (int64_t i = 0; i < n_total; ++i) all[i] = static_cast<int32_t>(i);
        Device<int32_t> dall(all);
        for (int64_t c0 = 0; c0 < n_total; c0 += piece) {
            const int64_t n = std::min(piece, n_total - c0), shift = (c0 / piece) % 64;
            cuda::store_kv(g.ctx, layer, dk.p + shift * wk, s.mla ? nullptr : dv.p + shift * wv, dall.p + c0, n);
        }
        MOESERVE_CUDA_CHECK(cudaStreamSynchronize(g.stream));
        cells = std::make_unique<Device<int32_t>>(all);
        n_cells = std::make_unique<Device<int32_t>>(std::vector<int32_t>(tokens, static_cast<int32_t>(depth)));
        std::vector<int64_t> starts(tokens);
        for (int t = 0; t < tokens; ++t) starts[t] = t * depth;
        offset = std::make_unique<Device<int64_t>>(starts);
        const int64_t q_width = static_cast<int64_t>(s.n_head) * s.dk;
        q = std::make_unique<Device<float>>(normal_floats(q_width * tokens, rng, 1.0f));
        out = std::make_unique<Device<float>>(static_cast<size_t>(s.n_head) * s.dv * tokens);
        view = {cells->p, offset->p, n_cells->p, static_cast<int32_t>(depth), 1};
        bytes = static_cast<double>(n_total) * (kb + vb);
        n_tokens = tokens;
        const int n_layers = static_cast<int>(std::clamp(std::ceil(2.0 * g.l2_bytes / bytes), 1.0, 256.0));
        layers.push_back(layer);
        for (int i = 1; i < n_layers; ++i) {
            cuda::KvLayer l = layer;
            copies.push_back(std::make_unique<Device<uint8_t>>(kb * n_total));
            MOESERVE_CUDA_CHECK(cudaMemcpy(copies.back()->p, k->p, kb * n_total, cudaMemcpyDeviceToDevice));
            l.k = copies.back()->p;
            if (!s.mla) {
                copies.push_back(std::make_unique<Device<uint8_t>>(vb * n_total));
                MOESERVE_CUDA_CHECK(cudaMemcpy(copies.back()->p, v->p, vb * n_total, cudaMemcpyDeviceToDevice));
                l.v = copies.back()->p;
            }
            layers.push_back(l);
        }
    }
};

// Mean time of one attention call over `reps`, each on the next of f's
// copies of the layer (after an untimed round over all of them, which leaves
// in the L2 neither the next copy's rows nor the fill's written lines).
double time_attention(Gpu& g, const Shape& s, Filled& f, int reps) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.mla ? 256 : s.dk));
    size_t next = 0;
    auto call = [&] {
        const cuda::KvLayer& layer = f.layers[next++ % f.layers.size()];
        if (s.mla)
            cuda::attention_mla(g.ctx, layer, f.q->p, f.n_tokens, s.n_head, s.dv, f.view, scale, f.out->p);
        else
            cuda::attention(g.ctx, layer, f.q->p, f.n_tokens, s.n_head, s.n_head_kv, s.dk, s.dv, f.view, scale,
                            f.out->p);
        g.scratch->reset();
    };
    for (size_t i = 0; i < f.layers.size(); ++i) call();
    MOESERVE_CUDA_CHECK(cudaStreamSynchronize(g.stream));
    cudaEvent_t e0, e1;
    MOESERVE_CUDA_CHECK(cudaEventCreate(&e0));
    MOESERVE_CUDA_CHECK(cudaEventCreate(&e1));
    MOESERVE_CUDA_CHECK(cudaEventRecord(e0, g.stream));
    for (int i = 0; i < reps; ++i) call();
    MOESERVE_CUDA_CHECK(cudaEventRecord(e1, g.stream));
    MOESERVE_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    MOESERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms * 1e-3 / reps;
}

// How many times a named form has run (-1: not counted), so that a form
// that declines a shape and falls back is reported as such.
int64_t form_launches(const std::string& form) {
    if (form == "mma") return cuda::mma_attention_launches();
    if (form == "vec") return cuda::vec_attention_launches();
    if (form == "lane") return cuda::lane_attention_launches();
    if (form == "tile") return cuda::tile_attention_launches();
    if (form == "tile2") return cuda::tile2_attention_launches();
    if (form == "fa2") return cuda::fa2_attention_launches();
    if (form == "fa2p") return cuda::fa2p_attention_launches();
    return -1;
}

template <class T>
std::vector<T> parse_list(const std::string& s, T (*conv)(const std::string&)) {
    std::vector<T> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(conv(item));
    return out;
}

int run(int argc, char** argv) {
    std::vector<int64_t> depths = {4096, 32768, 131072};
    std::vector<std::string> forms = {"auto", "mma", "f32", "vec", "lane", "tile", "tile2", "fa2", "fa2p"};
    std::vector<int64_t> min_chunks = {0}, blocks_per_sm = {0};  // 0: the engine's default
    std::vector<int64_t> token_counts = {1};
    int reps = 20;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--depths" && has_value)
            depths = parse_list<int64_t>(argv[++i], [](const std::string& x) -> int64_t { return std::stoll(x); });
        else if (a == "--forms" && has_value)
            forms = parse_list<std::string>(argv[++i], [](const std::string& x) { return x; });
        else if (a == "--min-chunks" && has_value)
            min_chunks = parse_list<int64_t>(argv[++i], [](const std::string& x) -> int64_t { return std::stoll(x); });
        else if (a == "--blocks-per-sm" && has_value)
            blocks_per_sm =
                parse_list<int64_t>(argv[++i], [](const std::string& x) -> int64_t { return std::stoll(x); });
        else if (a == "--tokens" && has_value)
            token_counts =
                parse_list<int64_t>(argv[++i], [](const std::string& x) -> int64_t { return std::stoll(x); });
        else if (a == "--reps" && has_value)
            reps = std::max(1, std::atoi(argv[++i]));
        else {
            std::fprintf(
                stderr,
                "usage: cuda_attention_bench [--depths N,...] [--forms auto,mma,f32,vec,lane,tile,tile2,fa2,fa2p] "
                "[--min-chunks N,...] [--blocks-per-sm N,...] [--tokens N,...] [--reps N]\n"
                "unknown or incomplete argument: %s\n",
                a.c_str());
            return 2;
        }
    }
    Gpu g;
    cudaDeviceProp prop{};
    MOESERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double bw = cuda::measure_copy_bandwidth(0);  // read + write bytes per second
    std::printf("device: %s, %d SMs; copy bandwidth %.0f GB/s (read + write)\n\n", prop.name, prop.multiProcessorCount,
                bw / 1e9);
    std::printf(
        "| shape | cache | depth | sequences | form | min chunk | blocks/SM | us/call | cache MB read | GB/s | %% of "
        "copy "
        "BW |\n");
    std::printf("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    const Shape shapes[] = {{"qwen3-30b-a3b 32/4x128", 32, 4, 128, 128, false},
                            {"nemotron-3-nano 32/2x128", 32, 2, 128, 128, false},
                            {"glm-4.7-flash MLA 20x576", 20, 1, 576, 512, true}};
    std::mt19937 rng(7);
    // An environment switch for one row: a positive value set, 0 the engine's default.
    const auto set_env = [](const char* name, int64_t value) {
        if (value > 0)
            setenv(name, std::to_string(value).c_str(), 1);
        else
            unsetenv(name);
        return value > 0 ? std::to_string(value) : std::string("default");
    };
    for (const Shape& s : shapes)
        for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0})
            for (int64_t depth : depths)
                for (int64_t tokens : token_counts) {
                    Filled f(g, s, type, depth, static_cast<int>(tokens), rng);
                    for (const std::string& form : forms)
                        for (int64_t min_chunk : min_chunks)
                            for (int64_t per_sm : blocks_per_sm) {
                                if (form == "auto")
                                    unsetenv("MOESERVE_CUDA_ATTENTION");
                                else
                                    setenv("MOESERVE_CUDA_ATTENTION", form.c_str(), 1);
                                const std::string chunk = set_env("MOESERVE_CUDA_ATTENTION_MIN_CHUNK", min_chunk);
                                const std::string sm = set_env("MOESERVE_CUDA_ATTENTION_BLOCKS_PER_SM", per_sm);
                                const int64_t before = form_launches(form);
                                bool fell_back = false;
                                const auto row = [&] {
                                    return std::string("| ") + s.name + " | " + std::string(ggml_type_name(type)) +
                                           " | " + std::to_string(depth) + " | " + std::to_string(tokens) + " | " +
                                           form + (fell_back ? " (fell back)" : "") + " | " + chunk + " | " + sm +
                                           " | ";
                                };
                                double t = 0;
                                try {
                                    t = time_attention(g, s, f, reps);
                                    fell_back = before >= 0 && form_launches(form) == before;
                                } catch (const std::exception& e) {
                                    std::printf("%sfailed: %s | | | |\n", row().c_str(), e.what());
                                    continue;
                                }
                                const double gbs = f.bytes / t / 1e9;
                                std::printf("%s%.1f | %.1f | %.0f | %.0f%% |\n", row().c_str(), t * 1e6, f.bytes / 1e6,
                                            gbs, 100.0 * gbs * 1e9 / bw);
                                std::fflush(stdout);
                            }
                }
    unsetenv("MOESERVE_CUDA_ATTENTION");
    unsetenv("MOESERVE_CUDA_ATTENTION_MIN_CHUNK");
    unsetenv("MOESERVE_CUDA_ATTENTION_BLOCKS_PER_SM");
    return 0;
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) {
    if (moeserve::cuda::device_count() == 0) {
        std::puts("cuda_attention_bench: no CUDA device");
        return 0;
    }
    try {
        return moeserve::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cuda_attention_bench: %s\n", e.what());
        return 1;
    }
}

#else

#include <cstdio>

int main() {
    std::puts("cuda_attention_bench: built without CUDA (configure with -DMOESERVE_CUDA=ON)");
    return 0;
}

#endif
