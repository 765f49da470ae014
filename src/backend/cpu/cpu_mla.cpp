// Multi-head latent attention (MLA, absorbed form) and the per-head
// products around it (deepseek2; spec architectures §5.3).
//
// The cache holds one row per token and layer, [latent (R) | RoPE part], in
// the cache type; every query head scores that same row and V is its first R
// values. So a row is read and converted to f32 once for all heads (and, in a
// prompt batch, for a tile of consecutive tokens of one sequence too), then
// scored and accumulated with register-blocked f32 kernels. Softmax is the
// online (flash-attention) form in f32. A long context is split into chunks
// scored in parallel whose partial softmax states are merged at the end, so a
// single decoded token uses every thread (its chunks set by its row count
// alone: the same bits with any threads and beside any batch).
//
// Numerics: K and V in f32 after the cache rounding; Q in f32 for a float
// cache (llama.cpp's tiled flash-attention path for prompt batches) and
// rounded to K's dot partner type for a quantized one (its one-query path).
// Q4_0 and Q8_0 caches take cpu_mla_quantized.cpp instead, which computes
// llama.cpp's one-query path exactly.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/x86_intrinsics.h"

#include "backend/cpu/cache_line_vector.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/latent_scores.h"
#include "backend/cpu/vec_math.h"
#include "memory/kv_cache.h"
#include "quant/block_formats.h"
#include "quant/dequantize.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

constexpr int kRowBlock = 32;                  // cache rows converted and scored together
constexpr int kScoreQueries = 4;               // score_block register block: queries ...
constexpr int kScoreRows = 4;                  // ... × rows
constexpr int kScoreSlice = 8;                 // rows converted and scored against every query at a time
constexpr int kAccQueries = 10;                // accumulate_block register block: queries ...
constexpr int kAccVectors = 2;                 // ... × 16-value vectors of the latent
constexpr int kTileQueries = 64;               // query vectors (tokens × heads) sharing the converted rows
constexpr int64_t kMinSplitRows = 256;         // smallest chunk of rows worth its own partial state
constexpr int64_t kDecodeChunkRows = 1024;     // a decoded token's chunk of rows ...
constexpr int64_t kDecodeMaxChunks = 256;      // ... or longer, to keep at most this many
static_assert(kScoreSlice % kScoreRows == 0);  // slices leave the same rows to dot() as whole blocks

// Software prefetch of the next block's cache rows into L2, a few lines at a
// time from inside the kernels that work on the current block. At depth the
// rows come from DRAM; read on demand by row_to_f32 they stalled a thread for
// a quarter of the op's time, while the arithmetic on one block is long
// enough to hide the next block's fetch completely. Spread out, the
// prefetches never queue up behind the core's few outstanding-miss slots.
class RowPrefetch {
  public:
    // The next block: rows cells[0, n) of `layer`; `passes` kernel passes to spread them over.
    void start(const KvCache& cache, int layer, const int32_t* cells, int64_t n, int64_t passes) {
        cache_ = &cache;
        layer_ = layer;
        cells_ = cells;
        // A row need not start on a line: one more line covers its straddled end.
        lines_per_row_ = static_cast<int64_t>((cache.k_row_bytes(layer) + 63) / 64 + 1);
        n_rows_ = n;
        row_ = line_ = 0;
        const int64_t total = n * lines_per_row_;
        per_pass_ = passes > 0 ? (total + passes - 1) / passes : total;
    }
    // Issues the next few prefetches (all that are left, with finish).
    void step() {
        for (int64_t k = 0; k < per_pass_ && row_ < n_rows_; ++k) issue();
    }
    void finish() {
        while (row_ < n_rows_) issue();
    }

  private:
    // One line; rows and lines are counted, not divided out (a division per line cost more than the prefetch).
    void issue() {
        prefetch_l2(cache_->k_row(layer_, cells_[row_]) + line_ * 64);
        if (++line_ == lines_per_row_) {
            line_ = 0;
            ++row_;
        }
    }
    static void prefetch_l2(const void* p) {
#if defined(__x86_64__)
        _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#else
        __builtin_prefetch(p, 0, 2);
#endif
    }
    const KvCache* cache_ = nullptr;
    int layer_ = 0;
    const int32_t* cells_ = nullptr;
    int64_t lines_per_row_ = 1, n_rows_ = 0, row_ = 0, line_ = 0, per_pass_ = 0;
};

// One cached row as f32 (n values).
void row_to_f32(GgmlType type, const uint8_t* src, float* dst, int n) {
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, src, sizeof(float) * n);
            return;
        case GgmlType::F16:
            fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), dst, n);
            return;
#if defined(__AVX512F__)
        case GgmlType::Q8_0: {
            const auto* b = reinterpret_cast<const BlockQ8_0*>(src);
            for (int i = 0; i < n / kQK; ++i) {
                const __m512 d = _mm512_set1_ps(fp16_to_fp32(b[i].d));
                const __m128i* q = reinterpret_cast<const __m128i*>(b[i].qs);
                const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)));
                const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)));
                _mm512_storeu_ps(dst + i * kQK, _mm512_mul_ps(lo, d));
                _mm512_storeu_ps(dst + i * kQK + 16, _mm512_mul_ps(hi, d));
            }
            return;
        }
        case GgmlType::Q4_0: {
            // Element j is the low nibble of qs[j], element j+16 the high one; value (q - 8) * d.
            const auto* b = reinterpret_cast<const BlockQ4_0*>(src);
            const __m128i mask = _mm_set1_epi8(0x0F);
            const __m512i eight = _mm512_set1_epi32(8);
            for (int i = 0; i < n / kQK; ++i) {
                const __m512 d = _mm512_set1_ps(fp16_to_fp32(b[i].d));
                const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
                const __m512i lo = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(q, mask)), eight);
                const __m512i hi =
                    _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), mask)), eight);
                _mm512_storeu_ps(dst + i * kQK, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
                _mm512_storeu_ps(dst + i * kQK + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
            }
            return;
        }
#endif
        default:
            dequantize_row(type, src, dst, n);
            return;
    }
}

#if defined(__AVX512F__)

// 16 vectors -> one vector of their 16 horizontal sums, in order.
inline __m512 hsum16(const __m512 a[16]) {
    __m512 x[8], y[4], z[2];
    for (int i = 0; i < 8; ++i)
        x[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; ++i) {
        const __m512d p = _mm512_castps_pd(x[2 * i]), q = _mm512_castps_pd(x[2 * i + 1]);
        y[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p, q)), _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)));
    }
    for (int i = 0; i < 2; ++i)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
}

#endif

// max(init, x[0:n]).
inline float max_of(const float* x, int n, float init) {
#if defined(__AVX512F__)
    __m512 m = _mm512_set1_ps(init);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
        m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
    }
    return _mm512_reduce_max_ps(m);
#else
    for (int i = 0; i < n; ++i) init = std::max(init, x[i]);
    return init;
#endif
}

// x := e^(x - mx) over n values (e^-inf = 0); returns their sum.
inline float exp_sum(float* x, int n, float mx) {
#if defined(__AVX512F__)
    __m512 sum = _mm512_setzero_ps();
    const __m512 m = _mm512_set1_ps(mx);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m));
        _mm512_mask_storeu_ps(x + i, k, e);
        sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
#else
    // The AVX-512 path's numbers without AVX-512: the same exponential
    // (exp_ps, lane by lane) and the same 16 lanes of sums, reduced in
    // _mm512_reduce_add_ps's tree, so an AVX2 build attends exactly as an
    // AVX-512 one does.
    float lane[16] = {};
    for (int i = 0; i < n; ++i) {
        x[i] = exp_ps_lane(x[i] - mx);
        lane[i % 16] += x[i];
    }
    return reduce_add_16(lane);
#endif
}

// Σ a[i]*b[i], summed in exactly the order score_block's 4×4 kernel uses
// (16 lanes of FMAs, then hsum16's tree), so a score does not depend on
// which queries were blocked together.
inline float dot(const float* a, const float* b, int n) {
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    alignas(64) float v[16];
    _mm512_store_ps(v, acc);
    float l[4];
    for (int k = 0; k < 4; ++k) l[k] = (v[4 * k] + v[4 * k + 2]) + (v[4 * k + 1] + v[4 * k + 3]);
    return (l[0] + l[1]) + (l[2] + l[3]);
#else
    // The same 16 lanes of fused multiply-adds and the same tree.
    float v[16] = {};
    for (int i = 0; i < n; ++i) v[i % 16] = std::fma(a[i], b[i], v[i % 16]);
    float l[4];
    for (int k = 0; k < 4; ++k) l[k] = (v[4 * k] + v[4 * k + 2]) + (v[4 * k + 1] + v[4 * k + 3]);
    return (l[0] + l[1]) + (l[2] + l[3]);
#endif
}

#if defined(__AVX512F__)
// Horizontal sums of n accumulators, each in dot's order (16 at a time through hsum16).
inline void hsum_n(const __m512* acc, int n, float* out) {
    int k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(out + k, hsum16(acc + k));
    for (; k < n; ++k) {
        alignas(64) float v[16];
        _mm512_store_ps(v, acc[k]);
        float l[4];
        for (int c = 0; c < 4; ++c) l[c] = (v[4 * c] + v[4 * c + 2]) + (v[4 * c + 1] + v[4 * c + 3]);
        out[k] = (l[0] + l[1]) + (l[2] + l[3]);
    }
}

// One register block of score_block: QB queries × JB rows, QB·JB
// accumulators; per 16 values QB + JB loads for QB·JB FMAs.
template <int QB, int JB>
inline void score_pass(const float* Q, const float* K, int d, float scale, float* s, int ld) {
    const int d16 = d & ~15;
    const __mmask16 tail = static_cast<__mmask16>((1u << (d - d16)) - 1);
    __m512 acc[QB * JB];
    for (auto& a : acc) a = _mm512_setzero_ps();
    // Written out twice rather than as a lambda over acc: in an out-of-line
    // copy of this function GCC 12 stored all of the lambda's accumulators to
    // the stack on every step.
    for (int i = 0; i < d16; i += 16) {
        __m512 kv[JB];
        for (int b = 0; b < JB; ++b) kv[b] = _mm512_loadu_ps(K + b * d + i);
        for (int a = 0; a < QB; ++a) {
            const __m512 qv = _mm512_loadu_ps(Q + a * d + i);
            for (int b = 0; b < JB; ++b) acc[a * JB + b] = _mm512_fmadd_ps(qv, kv[b], acc[a * JB + b]);
        }
    }
    if (tail) {
        __m512 kv[JB];
        for (int b = 0; b < JB; ++b) kv[b] = _mm512_maskz_loadu_ps(tail, K + b * d + d16);
        for (int a = 0; a < QB; ++a) {
            const __m512 qv = _mm512_maskz_loadu_ps(tail, Q + a * d + d16);
            for (int b = 0; b < JB; ++b) acc[a * JB + b] = _mm512_fmadd_ps(qv, kv[b], acc[a * JB + b]);
        }
    }
    // sums[a*JB + b] = Q[a] · K[b]
    float sums[QB * JB];
    hsum_n(acc, QB * JB, sums);
    for (int a = 0; a < QB; ++a)
        for (int b = 0; b < JB; ++b) s[a * ld + b] = sums[a * JB + b] * scale;
}
#endif

// s[q][j] = (Q[q] · K[j]) * scale for nq queries (rows of Q, stride d) and nb
// rows of K (stride d); s has row stride ld. Each score is summed in dot's
// order, so it does not depend on which queries were blocked together.
void score_block(const float* Q, int nq, const float* K, int nb, int d, float scale, float* s, int ld,
                 RowPrefetch& prefetch) {
    int q0 = 0;
#if defined(__AVX512F__)
    for (; q0 + kScoreQueries <= nq; q0 += kScoreQueries) {
        int j0 = 0;
        for (; j0 + kScoreRows <= nb; j0 += kScoreRows) {
            prefetch.step();
            score_pass<kScoreQueries, kScoreRows>(Q + q0 * d, K + j0 * d, d, scale, s + q0 * ld + j0, ld);
        }
        for (; j0 < nb; ++j0)
            for (int a = 0; a < kScoreQueries; ++a)
                s[(q0 + a) * ld + j0] = dot(Q + (q0 + a) * d, K + j0 * d, d) * scale;
    }
#endif
    for (; q0 < nq; ++q0)
        for (int j = 0; j < nb; ++j) s[q0 * ld + j] = dot(Q + q0 * d, K + j * d, d) * scale;
}

#if defined(__AVX512F__)
// a[i0:r] += Σ_j p[j] * V[j][i0:r], one query, 16 values at a time.
inline void accumulate_one(const float* p, const float* V, int nb, int d, int i0, int r, float* a) {
    for (int i = i0; i < r; i += 16) {
        const __mmask16 k = r - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (r - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(k, a + i);
        for (int j = 0; j < nb; ++j)
            x = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(k, V + j * d + i), x);
        _mm512_mask_storeu_ps(a + i, k, x);
    }
}
#endif

#if defined(__AVX512F__)
// One register block of accumulate_block: QB queries × IV·16 values from i,
// QB·IV accumulators held over all nb rows; per row IV loads of V and QB
// broadcasts of p for QB·IV FMAs.
template <int QB, int IV>
inline void accumulate_pass(const float* p, int ld, const float* V, int nb, int d, int r, int i, float* acc) {
    __m512 a[QB * IV];
    for (int qa = 0; qa < QB; ++qa)
        for (int c = 0; c < IV; ++c) a[qa * IV + c] = _mm512_loadu_ps(acc + qa * r + i + 16 * c);
    for (int j = 0; j < nb; ++j) {
        const float* v = V + j * d + i;
        __m512 vv[IV];
        for (int c = 0; c < IV; ++c) vv[c] = _mm512_loadu_ps(v + 16 * c);
        for (int qa = 0; qa < QB; ++qa) {
            const __m512 w = _mm512_set1_ps(p[qa * ld + j]);
            for (int c = 0; c < IV; ++c) a[qa * IV + c] = _mm512_fmadd_ps(w, vv[c], a[qa * IV + c]);
        }
    }
    for (int qa = 0; qa < QB; ++qa)
        for (int c = 0; c < IV; ++c) _mm512_storeu_ps(acc + qa * r + i + 16 * c, a[qa * IV + c]);
}
#endif

// acc[q][0:r] += Σ_j p[q][j] * V[j][0:r] for nq queries (acc stride r, p
// stride ld) and nb rows of V (stride d). Every element is one fused
// multiply-add per row in row order, however the queries are blocked.
void accumulate_block(const float* p, int ld, int nq, const float* V, int nb, int d, int r, float* acc,
                      RowPrefetch& prefetch) {
#if defined(__AVX512F__)
    int q0 = 0;
    // kAccQueries queries × kAccVectors·16 values per pass: V is read from
    // L2 once per group of 10 queries (a decoded token's 20 heads: twice),
    // p is broadcast from L1; 12 loads per 20 FMAs.
    for (; q0 + kAccQueries <= nq; q0 += kAccQueries) {
        int i = 0;
        for (; i + 16 * kAccVectors <= r; i += 16 * kAccVectors) {
            prefetch.step();
            accumulate_pass<kAccQueries, kAccVectors>(p + q0 * ld, ld, V, nb, d, r, i, acc + q0 * r);
        }
        for (int qa = 0; qa < kAccQueries; ++qa)
            accumulate_one(p + (q0 + qa) * ld, V, nb, d, i, r, acc + (q0 + qa) * r);
    }
    for (; q0 + 4 <= nq; q0 += 4) {
        int i = 0;
        for (; i + 64 <= r; i += 64) accumulate_pass<4, 4>(p + q0 * ld, ld, V, nb, d, r, i, acc + q0 * r);
        for (int qa = 0; qa < 4; ++qa) accumulate_one(p + (q0 + qa) * ld, V, nb, d, i, r, acc + (q0 + qa) * r);
    }
    for (; q0 < nq; ++q0) accumulate_one(p + q0 * ld, V, nb, d, 0, r, acc + q0 * r);
#else
    for (int q0 = 0; q0 < nq; ++q0) {
        float* a = acc + q0 * r;
        for (int j = 0; j < nb; ++j) {
            const float w = p[q0 * ld + j];
            const float* v = V + j * d;
            for (int i = 0; i < r; ++i) a[i] = std::fma(w, v[i], a[i]);
        }
    }
#endif
}

// The running softmax state of a set of queries: max score m, sum of
// exp(score - m) l, and the weighted latent sum acc [nq][r].
struct SoftmaxState {
    float* m;
    float* l;
    float* acc;
};

}  // namespace

void CpuBackend::matmul_heads(const Weight& w, const float* x, int64_t n_tokens, int64_t x_token_stride,
                              int64_t x_head_stride, float* y) {
    const int64_t in = w.ne[0], out = w.ne[1];
    const int n_head = static_cast<int>(w.ne[2]);
    // Gather x head-major ([n_head, n_tokens, in]) so each head's rows are
    // contiguous, quantize to the weight's partner type once, then one job per head.
    std::vector<float> gathered(static_cast<size_t>(n_head * n_tokens * in));
    for (int h = 0; h < n_head; ++h)
        for (int64_t t = 0; t < n_tokens; ++t) {
            const float* src = x + t * x_token_stride + h * x_head_stride;
            std::copy(src, src + in, gathered.begin() + (h * n_tokens + t) * in);
        }
    const GgmlType act_type = vec_dot_type(w.type);
    const size_t row = ggml_row_bytes(act_type, in);
    const uint8_t* xq = quantize_activations(act_type, gathered.data(), n_head * n_tokens, in, act_buf_);
    std::vector<MatmulJob> jobs;
    jobs.reserve(n_head);
    for (int h = 0; h < n_head; ++h)
        jobs.push_back({&w, h, xq + h * n_tokens * row, row, n_tokens, y + h * out, n_head * out});
    run_matmul_jobs(jobs);
}

int64_t mla_decode_chunk_rows(int64_t n_cells) {
    const int64_t rows = std::max(kDecodeChunkRows, (n_cells + kDecodeMaxChunks - 1) / kDecodeMaxChunks);
    return (rows + kRowBlock - 1) / kRowBlock * kRowBlock;
}

void CpuBackend::attention_mla(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                               int n_latent, const AttentionRows& rows, float scale, float* out) {
    const int d = static_cast<int>(cache.config().n_embd_k[layer]);  // row width: latent + RoPE part
    const int r = n_latent;
    const GgmlType type = cache.type_k();
    if (has_latent_int_scores(type, d) && r % kQK == 0)
        return attention_mla_quantized(cache, layer, q, n_tokens, n_head, n_latent, rows, scale, out);

    // Tiles: runs of consecutive tokens of one sequence (same cell list), up
    // to kTileQueries query vectors; they share every row conversion.
    const int tile_tokens = std::max(1, kTileQueries / n_head);
    struct Tile {
        int64_t t0, t1, n_cells;  // tokens [t0, t1), rows [0, n_cells) of the longest
    };
    std::vector<Tile> tiles;
    for (int64_t t = 0; t < n_tokens;) {
        Tile tile{t, t + 1, rows.n_cells[t]};
        while (tile.t1 < n_tokens && tile.t1 - t < tile_tokens && rows.cells[tile.t1] == rows.cells[t]) {
            tile.n_cells = std::max<int64_t>(tile.n_cells, rows.n_cells[tile.t1]);
            ++tile.t1;
        }
        tiles.push_back(tile);
        t = tile.t1;
    }
    // Chunks: a decoded token's rows in chunks set by its row count alone
    // (mla_decode_chunk_rows); a prompt tile's split so that there are enough
    // work items for every thread. Each chunk keeps its own softmax state,
    // merged below.
    // A quantized cache is scored as llama.cpp's one-query flash-attention
    // path does: q rounded to K's dot partner type (Q8_0, or Q8_1 for
    // Q4_1/Q5_1). Rounding q once and scoring in f32 is the same product up
    // to the order of float additions.
    const bool float_cache = type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
    CacheLineVector<float> q_rounded;
    if (!float_cache) {
        const GgmlType qtype = vec_dot_type(type);
        q_rounded.resize(static_cast<size_t>(n_tokens) * n_head * d);
        pool_.parallel_for(n_tokens * n_head, [&](int64_t b, int64_t e) {
            std::vector<uint8_t> buf(ggml_row_bytes(qtype, d));
            for (int64_t i = b; i < e; ++i) {
                quantize_row_activation(qtype, q + i * d, buf.data(), d);
                dequantize_row(qtype, buf.data(), q_rounded.data() + i * d, d);
            }
        });
        q = q_rounded.data();
    }

    const int n_threads = pool_.size();
    struct Item {
        int tile;
        int64_t c0, c1;
        int64_t state;  // offset of its partial state in `partial`, in queries
    };
    std::vector<Item> items;
    std::vector<int> first_item(tiles.size() + 1);
    int64_t n_states = 0;
    for (size_t i = 0; i < tiles.size(); ++i) {
        const Tile& tl = tiles[i];
        first_item[i] = static_cast<int>(items.size());
        const int64_t nq = (tl.t1 - tl.t0) * n_head;
        if (tl.t1 - tl.t0 == 1) {
            // A decoded token: chunks that follow only its row count, so its
            // output is the same bits with any threads and beside any batch.
            const int64_t rows_per = mla_decode_chunk_rows(tl.n_cells);
            for (int64_t c0 = 0; c0 < tl.n_cells; c0 += rows_per) {
                items.push_back({static_cast<int>(i), c0, std::min(tl.n_cells, c0 + rows_per), n_states});
                n_states += nq;
            }
            continue;
        }
        int64_t n_split = 1;
        if (static_cast<int64_t>(tiles.size()) < 4 * n_threads) {
            const int64_t want = (4 * n_threads + static_cast<int64_t>(tiles.size()) - 1) / tiles.size();
            n_split = std::clamp<int64_t>(tl.n_cells / kMinSplitRows, 1, want);
        }
        for (int64_t s = 0; s < n_split; ++s) {
            items.push_back({static_cast<int>(i), tl.n_cells * s / n_split, tl.n_cells * (s + 1) / n_split, n_states});
            n_states += nq;
        }
    }
    first_item[tiles.size()] = static_cast<int>(items.size());
    // partial: per query of each item, m, l and acc[r].
    std::vector<float> partial(static_cast<size_t>(n_states) * (r + 2));
    const float neg_inf = -std::numeric_limits<float>::infinity();

    std::atomic<size_t> next{0};  // items are uneven (causal prompts), so threads take them one by one
    pool_.run([&](int, int) {
        CacheLineVector<float> kf(static_cast<size_t>(kRowBlock) * d), qf, s;
        RowPrefetch prefetch;
        for (size_t it; (it = next.fetch_add(1)) < items.size();) {
            const Item& item = items[it];
            const Tile& tl = tiles[item.tile];
            const int nq = static_cast<int>((tl.t1 - tl.t0) * n_head);
            const float* qt = q + tl.t0 * n_head * d;  // [nq, d], the tile's queries
            SoftmaxState st{partial.data() + item.state * (r + 2), nullptr, nullptr};
            st.l = st.m + nq;
            st.acc = st.l + nq;
            std::fill(st.m, st.m + nq, neg_inf);
            std::fill(st.l, st.l + nq, 0.0f);
            std::fill(st.acc, st.acc + static_cast<size_t>(nq) * r, 0.0f);
            s.resize(static_cast<size_t>(nq) * kRowBlock);
            const int32_t* cells = rows.cells[tl.t0];
            for (int64_t c = item.c0; c < item.c1; c += kRowBlock) {
                const int nb = static_cast<int>(std::min<int64_t>(kRowBlock, item.c1 - c));
                // The next block's rows are fetched while this one is scored and summed.
                const int64_t next_nb = std::clamp<int64_t>(item.c1 - c - kRowBlock, 0, kRowBlock);
                prefetch.start(cache, layer, next_nb > 0 ? cells + c + kRowBlock : cells, next_nb,
                               static_cast<int64_t>(nq / kScoreQueries) * (nb / kScoreRows) +
                                   (nq / kAccQueries) * (r / (16 * kAccVectors)));
                // kf: [nb, d] — the block's rows as f32, read once for all queries;
                // s: [nq, nb] scores. A slice of rows is converted and scored while
                // it is in L1 (the whole block as f32 is larger than L1, and
                // re-reading it from L2 once per query group made scoring wait).
                for (int j0 = 0; j0 < nb; j0 += kScoreSlice) {
                    const int n = std::min(kScoreSlice, nb - j0);
                    for (int j = j0; j < j0 + n; ++j)
                        row_to_f32(type, cache.k_row(layer, cells[c + j]), kf.data() + j * d, d);
                    score_block(qt, nq, kf.data() + j0 * d, n, d, scale, s.data() + j0, kRowBlock, prefetch);
                }
                // -inf past each token's own causal end.
                for (int qi = 0; qi < nq; ++qi) {
                    const int64_t visible = rows.n_cells[tl.t0 + qi / n_head] - c;
                    float* sq = s.data() + qi * kRowBlock;
                    for (int j = static_cast<int>(std::clamp<int64_t>(visible, 0, nb)); j < nb; ++j) sq[j] = neg_inf;
                    const float mx = max_of(sq, nb, st.m[qi]);
                    if (mx == neg_inf) {  // nothing visible yet in this block
                        std::fill(sq, sq + nb, 0.0f);
                        continue;
                    }
                    // corr rescales what was summed under the old maximum (nothing, on the first visible block).
                    const float corr = st.m[qi] == neg_inf ? 1.0f : std::exp(st.m[qi] - mx);
                    const float sum = exp_sum(sq, nb, mx);
                    st.l[qi] = st.l[qi] * corr + sum;
                    st.m[qi] = mx;
                    if (corr != 1.0f) {
                        float* a = st.acc + static_cast<size_t>(qi) * r;
                        for (int i = 0; i < r; ++i) a[i] *= corr;
                    }
                }
                // acc[q] += Σ_j p[q][j] · V[j], V[j] = the first r values of row j.
                accumulate_block(s.data(), kRowBlock, nq, kf.data(), nb, d, r, st.acc, prefetch);
                prefetch.finish();  // whatever the passes left (nq or nb not a multiple of the register blocks)
            }
        }
    });

    // Merge each tile's chunk states: o = Σ_s acc_s e^(m_s - M) / Σ_s l_s e^(m_s - M).
    pool_.parallel_for(static_cast<int64_t>(tiles.size()), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            const Tile& tl = tiles[i];
            const int nq = static_cast<int>((tl.t1 - tl.t0) * n_head);
            for (int qi = 0; qi < nq; ++qi) {
                float* o = out + (tl.t0 * n_head + qi) * r;
                float mx = neg_inf;
                for (int k = first_item[i]; k < first_item[i + 1]; ++k)
                    mx = std::max(mx, partial[items[k].state * (r + 2) + qi]);
                std::fill(o, o + r, 0.0f);
                float l = 0.0f;
                for (int k = first_item[i]; k < first_item[i + 1]; ++k) {
                    const float* base = partial.data() + items[k].state * (r + 2);
                    const float m = base[qi];
                    if (m == neg_inf) continue;
                    const float w = std::exp(m - mx);
                    l += base[nq + qi] * w;
                    const float* a = base + 2 * nq + static_cast<size_t>(qi) * r;
                    for (int x = 0; x < r; ++x) o[x] += a[x] * w;
                }
                const float inv = l > 0.0f ? 1.0f / l : 0.0f;
                for (int x = 0; x < r; ++x) o[x] *= inv;
            }
        }
    });
}

}  // namespace moeserve
