// Writing the KV cache and attending over it.
//
// Numerics follow llama.cpp's CPU flash-attention path: K and V are rounded
// to the cache type when stored; for each query, q is converted to K's dot
// partner type (f16 for an f16 cache, Q8_0/Q8_1 for quantized ones) and
// scored with the same vec_dot kernels as the matmuls; softmax and the V sum
// are f32. With a quantized cache, Q/K (and V) are multiplied by a
// Walsh-Hadamard matrix as llama.cpp does, which spreads outliers before
// quantization and leaves the exact scores unchanged.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

void rotate_chunks(float* x, int64_t n, int chunk) {
    for (int64_t i = 0; i + chunk <= n; i += chunk) hadamard_transform(x + i, chunk);
}

}  // namespace

void CpuBackend::store_kv(KvCache& cache, int layer, const float* k, const float* v, std::span<const int32_t> cells) {
    const int64_t n_k = cache.config().n_embd_k[layer];
    const int64_t n_v = cache.config().n_embd_v[layer];
    const int k_chunk = cache.k_rotation_chunk(), v_chunk = cache.v_rotation_chunk();
    pool_.parallel_for(static_cast<int64_t>(cells.size()), [&](int64_t b, int64_t e) {
        std::vector<float> tmp(std::max(n_k, n_v));
        for (int64_t t = b; t < e; ++t) {
            const float* kt = k + t * n_k;
            if (k_chunk) {
                std::copy(kt, kt + n_k, tmp.begin());
                rotate_chunks(tmp.data(), n_k, k_chunk);
                kt = tmp.data();
            }
            quantize_row_activation(cache.type_k(), kt, cache.k_row(layer, cells[t]), n_k);
            if (n_v == 0) continue;
            const float* vt = v + t * n_v;
            if (v_chunk) {
                std::copy(vt, vt + n_v, tmp.begin());
                rotate_chunks(tmp.data(), n_v, v_chunk);
                vt = tmp.data();
            }
            quantize_row_activation(cache.type_v(), vt, cache.v_row(layer, cells[t]), n_v);
        }
    });
}

void CpuBackend::attention(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                           const AttentionRows& rows, float scale, float* out) {
    const KvCacheConfig& cfg = cache.config();
    const int64_t n_embd_k = cfg.n_embd_k[layer], n_embd_v = cfg.n_embd_v[layer];
    const int dk = cfg.head_dim_k, dv = cfg.head_dim_v;
    const int n_head_kv = static_cast<int>(n_embd_k / dk);
    const int group = n_head / n_head_kv;  // query heads per KV head
    const GgmlType qtype = vec_dot_type(cache.type_k());
    const VecDotFn dot = vec_dot_kernel(cache.type_k());
    const size_t q_head_bytes = ggml_row_bytes(qtype, dk);
    const size_t k_head_bytes = ggml_row_bytes(cache.type_k(), dk);
    const size_t v_head_bytes = ggml_row_bytes(cache.type_v(), dv);
    const int k_chunk = cache.k_rotation_chunk(), v_chunk = cache.v_rotation_chunk();

    // One work item = one token and one KV head with its group of query heads,
    // so each K and V row is read once for the whole group.
    pool_.parallel_for(n_tokens * n_head_kv, [&](int64_t b, int64_t e) {
        std::vector<float> qf(dk), vf(dv), scores, acc(static_cast<size_t>(group) * dv);
        std::vector<uint8_t> qq(q_head_bytes * group);
        for (int64_t item = b; item < e; ++item) {
            const int64_t t = item / n_head_kv;
            const int g = static_cast<int>(item % n_head_kv);
            const int32_t* cells = rows.cells[t];
            const int64_t n = rows.n_cells[t];
            for (int j = 0; j < group; ++j) {
                const float* qh = q + (t * n_head + g * group + j) * dk;
                std::copy(qh, qh + dk, qf.begin());
                if (k_chunk) rotate_chunks(qf.data(), dk, k_chunk);
                quantize_row_activation(qtype, qf.data(), qq.data() + j * q_head_bytes, dk);
            }
            // Scores for every cell and head of the group, then softmax per head.
            scores.resize(static_cast<size_t>(n) * group);
            for (int64_t c = 0; c < n; ++c) {
                const uint8_t* kr = cache.k_row(layer, cells[c]) + g * k_head_bytes;
                for (int j = 0; j < group; ++j)
                    scores[j * n + c] = dot(kr, qq.data() + j * q_head_bytes, dk) * scale;
            }
            for (int j = 0; j < group; ++j) {
                float* s = scores.data() + j * n;
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t c = 0; c < n; ++c) mx = std::max(mx, s[c]);
                double sum = 0.0;
                for (int64_t c = 0; c < n; ++c) {
                    s[c] = std::exp(s[c] - mx);
                    sum += s[c];
                }
                const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
                for (int64_t c = 0; c < n; ++c) s[c] *= inv;
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t c = 0; c < n; ++c) {
                dequantize_row(cache.type_v(), cache.v_row(layer, cells[c]) + g * v_head_bytes, vf.data(), dv);
                for (int j = 0; j < group; ++j) {
                    const float p = scores[j * n + c];
                    float* a = acc.data() + j * dv;
                    for (int i = 0; i < dv; ++i) a[i] += p * vf[i];
                }
            }
            for (int j = 0; j < group; ++j) {
                float* o = out + (t * n_head + g * group + j) * dv;
                std::copy(acc.begin() + j * dv, acc.begin() + (j + 1) * dv, o);
                if (v_chunk) rotate_chunks(o, dv, v_chunk);  // H·H = I undoes the V rotation
            }
        }
    });
    (void)n_embd_v;
}

}  // namespace moeserve
