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

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "memory/kv_cache.h"
#include "quant/dequantize.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

void rotate_chunks(float* x, int64_t n, int chunk) {
    for (int64_t i = 0; i + chunk <= n; i += chunk) hadamard_transform(x + i, chunk);
}

// Σ a[i]*b[i] in f32.
inline float dot_f32(const float* a, const float* b, int n) {
    int i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    s = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__)
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// One head's row of K or V as f32: in place for F32, converted otherwise.
inline const float* row_as_f32(GgmlType type, const uint8_t* src, float* buf, int n) {
    switch (type) {
        case GgmlType::F32: return reinterpret_cast<const float*>(src);
        case GgmlType::F16: fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), buf, n); return buf;
        case GgmlType::BF16: bf16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), buf, n); return buf;
        default: dequantize_row(type, src, buf, n); return buf;
    }
}

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

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

    // Float caches (f32/f16/bf16): scores in f32 against K rows converted to
    // f32, as llama.cpp's tiled prompt path does. Quantized caches: q is
    // quantized to K's dot partner and scored with vec_dot, as llama.cpp's
    // one-query path does.
    const bool float_k = is_float_type(cache.type_k());

    // One work item = one token and one KV head with its group of query heads,
    // so each K and V row is read once for the whole group.
    pool_.parallel_for(n_tokens * n_head_kv, [&](int64_t b, int64_t e) {
        std::vector<float> qf(static_cast<size_t>(group) * dk), kbuf(dk), vbuf(dv), scores;
        std::vector<float> acc(static_cast<size_t>(group) * dv);
        std::vector<uint8_t> qq(q_head_bytes * group);
        for (int64_t item = b; item < e; ++item) {
            const int64_t t = item / n_head_kv;
            const int g = static_cast<int>(item % n_head_kv);
            const int32_t* cells = rows.cells[t];
            const int64_t n = rows.n_cells[t];
            for (int j = 0; j < group; ++j) {
                const float* qh = q + (t * n_head + g * group + j) * dk;
                float* qj = qf.data() + j * dk;
                std::copy(qh, qh + dk, qj);
                if (k_chunk) rotate_chunks(qj, dk, k_chunk);
                if (!float_k) quantize_row_activation(qtype, qj, qq.data() + j * q_head_bytes, dk);
            }
            // scores: [group, n] — every cell for every head of the group.
            scores.resize(static_cast<size_t>(n) * group);
            for (int64_t c = 0; c < n; ++c) {
                const uint8_t* kr = cache.k_row(layer, cells[c]) + g * k_head_bytes;
                if (float_k) {
                    const float* kf = row_as_f32(cache.type_k(), kr, kbuf.data(), dk);
                    for (int j = 0; j < group; ++j) scores[j * n + c] = dot_f32(qf.data() + j * dk, kf, dk) * scale;
                } else {
                    for (int j = 0; j < group; ++j)
                        scores[j * n + c] = dot(kr, qq.data() + j * q_head_bytes, dk) * scale;
                }
            }
            for (int j = 0; j < group; ++j) {
                float* sj = scores.data() + j * n;
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t c = 0; c < n; ++c) mx = std::max(mx, sj[c]);
                double sum = 0.0;
                for (int64_t c = 0; c < n; ++c) {
                    sj[c] = std::exp(sj[c] - mx);
                    sum += sj[c];
                }
                const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
                for (int64_t c = 0; c < n; ++c) sj[c] *= inv;
            }
            // acc[j] = Σ_c p[j][c] · V[c]
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t c = 0; c < n; ++c) {
                const float* vf = row_as_f32(cache.type_v(), cache.v_row(layer, cells[c]) + g * v_head_bytes,
                                             vbuf.data(), dv);
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
