// Multi-head latent attention over a Q4_0 or Q8_0 latent cache, with the
// bits llama.cpp's CPU flash-attention computes for a quantized cache (its
// one-query path, which it takes for every query, prompt or decode): for
// each query separately, in cache order, every visible row j is scored
// s = scale·(q8 · k_j) (latent_scores.h), then
//   s > M:  VKQ *= expf(M - s), M = s, vs = 1;  else vs = expf(s - M)
//   VKQ = fma(v_j, vs, VKQ),  S = S·ms + vs
// and the output is VKQ·(1/S). expf is the C library's (libm_expf.h). One
// deviation: a weight vs below 2^-126 counts as 0 (see kSmallestNormal).
//
// That walk is sequential per query, but the scores do not depend on it, and
// each column of VKQ is a chain of its own. Rows go in chunks, each in three
// steps: 1. the scores of the queries against the chunk's rows, 2. the
// softmax walk per query (the weights vs and rescales ms), 3. the V sums,
// 32-value slice by slice of the latent. A decoded token splits each step
// over all threads (rows, queries, slices), so a single token uses every
// thread; a prompt's queries go in passes of a few hundred, each thread
// taking its own query groups through all three steps without a barrier.
// The results depend on neither the thread count nor the chunking.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "backend/cpu/x86_intrinsics.h"

#include "backend/cpu/cache_line_vector.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/latent_scores.h"
#include "backend/cpu/libm_expf.h"
#include "backend/cpu/mla_quantized_layout.h"
#include "memory/kv_cache.h"
#include "quant/block_formats.h"
#include "quant/fp16.h"

namespace moeserve {
namespace {

using Layout = MlaQuantizedLayout;
constexpr int kSlice = Layout::kSlice;
constexpr int kGroupQueries = Layout::kGroupQueries;
constexpr int kScoreRows = Layout::kScoreRows;
static_assert(kSlice == kQK, "a phase-3 slice is one cache block");

// Values [b·32, b·32 + 32) of a cached row (its block b) as f32: (q - 8)·d
// for Q4_0, q·d for Q8_0, both exact in f32.
inline void block_to_f32(GgmlType type, const uint8_t* row, int b, float* dst) {
#if defined(__AVX512F__)
    if (type == GgmlType::Q4_0) {
        // Element j is the low nibble of qs[j], element j+16 the high one,
        // looked up among the block's 16 values (vpermps reads an index's low 4 bits).
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
        const __m512 codes = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
        const __m512 values = _mm512_mul_ps(codes, _mm512_set1_ps(fp16_to_fp32(blk.d)));
        const __m512i qs = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs)));
        _mm512_storeu_ps(dst, _mm512_permutexvar_ps(qs, values));
        _mm512_storeu_ps(dst + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(qs, 4), values));
    } else {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        const __m512 d = _mm512_set1_ps(fp16_to_fp32(blk.d));
        const __m128i* qs = reinterpret_cast<const __m128i*>(blk.qs);
        _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs))), d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs + 1))), d));
    }
#else
    if (type == GgmlType::Q4_0) {
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
        const float d = fp16_to_fp32(blk.d);
        for (int j = 0; j < kQK / 2; ++j) {
            dst[j] = static_cast<float>((blk.qs[j] & 0x0F) - 8) * d;
            dst[j + kQK / 2] = static_cast<float>((blk.qs[j] >> 4) - 8) * d;
        }
    } else {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        const float d = fp16_to_fp32(blk.d);
        for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(blk.qs[j]) * d;
    }
#endif
}

inline void prefetch_l1(const void* p) {
#if defined(__x86_64__)
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#else
    __builtin_prefetch(p, 0, 3);
#endif
}

// Weights vs below the smallest normal float are taken as 0: the one place
// where this differs from llama.cpp's bits. An x86 FMA with a subnormal
// operand takes a microcode assist of about 120 cycles, and a softmax whose
// scores spread by more than 87 makes such weights at every row; what they
// add (under 2^-103 each) moves only accumulators that are themselves below
// about 2^-78, and S ≥ 1 not at all.
constexpr float kSmallestNormal = 0x1p-126f;

// The softmax walk's weights for one query over rows [0, seen) of a chunk
// (s: its scores, turned into vs in place; rows [seen, n) get vs 0, ms 1):
// from the running maximum m, each row's vs = expf(s - M) (1 where s raised
// M) and ms = expf(M_before - s) where s raised M (else 1), marking those
// rows. Returns the new maximum.
float softmax_weights(float* s, float* ms, uint16_t* marks, int64_t seen, int64_t n, float m) {
    int64_t j = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    // Lane i takes lane i - k (lanes below k keep the fill): prefix maxima in four steps.
    const __m512i by1 = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
    const __m512i by2 = _mm512_setr_epi32(0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13);
    const __m512i by4 = _mm512_setr_epi32(0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m512i by8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7);
    for (; j < seen; j += 16) {
        const __mmask16 live =
            seen - j >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (seen - j)) - 1);
        const __m512 x = _mm512_mask_loadu_ps(neg_inf, live, s + j);  // -inf past seen: never a maximum
        __m512 t = x;
        t = _mm512_max_ps(t, _mm512_mask_permutexvar_ps(neg_inf, 0xFFFE, by1, t));
        t = _mm512_max_ps(t, _mm512_mask_permutexvar_ps(neg_inf, 0xFFFC, by2, t));
        t = _mm512_max_ps(t, _mm512_mask_permutexvar_ps(neg_inf, 0xFFF0, by4, t));
        t = _mm512_max_ps(t, _mm512_mask_permutexvar_ps(neg_inf, 0xFF00, by8, t));
        const __m512 before = _mm512_set1_ps(m);
        const __m512 after = _mm512_max_ps(t, before);                               // M after each row
        const __m512 prev = _mm512_mask_permutexvar_ps(before, 0xFFFE, by1, after);  // M before each row
        const __mmask16 rose = _mm512_cmp_ps_mask(x, prev, _CMP_GT_OQ);
        // vs: expf(s - M), 0 past seen (expf of NaN or -inf is 0 there); ms: expf(M_before - s) where M rose.
        __m512 vs = libm_expf16(_mm512_sub_ps(x, after));
        vs = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(vs, _mm512_set1_ps(kSmallestNormal), _CMP_GE_OQ), vs);
        const __m512 rs = libm_expf16(_mm512_maskz_sub_ps(rose, prev, x));
        _mm512_mask_storeu_ps(s + j, live, vs);
        _mm512_mask_storeu_ps(ms + j, live, rs);
        const __m256i mk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(marks + j));
        _mm256_mask_storeu_epi16(marks + j, live, _mm256_mask_mov_epi16(mk, rose, _mm256_set1_epi16(1)));
        m = _mm512_reduce_max_ps(after);
    }
    j = seen;
#else
    for (; j < seen; ++j) {
        float rise = 0.0f;  // expf(0) = 1: no rescale
        if (s[j] > m) {
            marks[j] = 1;
            rise = m - s[j];
            m = s[j];
        }
        const float w = libm_expf(s[j] - m);
        s[j] = w < kSmallestNormal ? 0.0f : w;
        ms[j] = libm_expf(rise);
    }
#endif
    std::fill(s + j, s + n, 0.0f);
    std::fill(ms + j, ms + n, 1.0f);
    return m;
}

// Phase 3 for NQ queries (NQ ≤ kGroupQueries) and one slice: acc[q][0:32]
// walks rows [0, n) of the chunk: where `rescale` marks a new maximum of any
// of them, every accumulator is first multiplied by its ms (1 for the others:
// exact), then fma(v, vs, acc). NQ is a template argument so that the
// accumulators stay in registers.
template <int NQ>
void sum_slice(const float* vs, const float* ms, int64_t ld, const uint16_t* rescale, const float* v, int64_t n,
               float* const* acc) {
#if defined(__AVX512F__)
    __m512 a[NQ][2];
    for (int q = 0; q < NQ; ++q) {
        a[q][0] = _mm512_loadu_ps(acc[q]);
        a[q][1] = _mm512_loadu_ps(acc[q] + 16);
    }
    for (int64_t j = 0; j < n; ++j) {
        const __m512 v0 = _mm512_loadu_ps(v + j * kSlice), v1 = _mm512_loadu_ps(v + j * kSlice + 16);
        if (rescale[j]) [[unlikely]]
            for (int q = 0; q < NQ; ++q) {
                const __m512 m = _mm512_set1_ps(ms[q * ld + j]);
                a[q][0] = _mm512_mul_ps(a[q][0], m);
                a[q][1] = _mm512_mul_ps(a[q][1], m);
            }
        for (int q = 0; q < NQ; ++q) {
            const __m512 w = _mm512_set1_ps(vs[q * ld + j]);
            a[q][0] = _mm512_fmadd_ps(v0, w, a[q][0]);
            a[q][1] = _mm512_fmadd_ps(v1, w, a[q][1]);
        }
    }
    for (int q = 0; q < NQ; ++q) {
        _mm512_storeu_ps(acc[q], a[q][0]);
        _mm512_storeu_ps(acc[q] + 16, a[q][1]);
    }
#else
    for (int64_t j = 0; j < n; ++j)
        for (int q = 0; q < NQ; ++q) {
            float* x = acc[q];
            if (rescale[j])
                for (int i = 0; i < kSlice; ++i) x[i] *= ms[q * ld + j];
            for (int i = 0; i < kSlice; ++i) x[i] = std::fma(v[j * kSlice + i], vs[q * ld + j], x[i]);
        }
#endif
}

using SumSliceFn = void (*)(const float*, const float*, int64_t, const uint16_t*, const float*, int64_t, float* const*);
template <int... N>
constexpr std::array<SumSliceFn, sizeof...(N)> sum_slice_table(std::integer_sequence<int, N...>) {
    return {&sum_slice<N + 1>...};
}
// sum_slice for 1..kGroupQueries queries.
constexpr auto kSumSlice = sum_slice_table(std::make_integer_sequence<int, kGroupQueries>{});

}  // namespace

void CpuBackend::attention_mla_quantized(const KvCache& cache, int layer, const float* q, int64_t n_tokens, int n_head,
                                         int n_latent, const AttentionRows& rows, float scale, float* out) {
    const int d = static_cast<int>(cache.config().n_embd_k[layer]);  // row width: latent + RoPE part
    const int r = n_latent;
    const GgmlType type = cache.type_k();
    const float neg_inf = -std::numeric_limits<float>::infinity();

    // One pass over the rows per run of consecutive tokens that share a cell
    // list (a decoded token, or a block of a prompt): a block's accumulators
    // and weights stay in L2 while it walks the rows.
    const int64_t block_tokens = Layout::block_tokens(n_head);
    for (int64_t t0 = 0; t0 < n_tokens;) {
        int64_t t1 = t0 + 1;
        while (t1 < n_tokens && t1 - t0 < block_tokens && rows.cells[t1] == rows.cells[t0]) ++t1;
        const int32_t* cells = rows.cells[t0];
        const int nq = static_cast<int>((t1 - t0) * n_head);  // query i: token t0 + i / n_head
        auto visible = [&](int i) { return static_cast<int64_t>(rows.n_cells[t0 + i / n_head]); };
        int64_t n_max = 0;
        // Later tokens seeing at least as many rows (a prompt chunk): the
        // queries that see a row are a suffix.
        bool growing = true;
        for (int64_t t = t0; t < t1; ++t) {
            growing = growing && (t == t0 || rows.n_cells[t] >= rows.n_cells[t - 1]);
            n_max = std::max<int64_t>(n_max, rows.n_cells[t]);
        }

        // Scratch kept across calls (no page faults per layer and token).
        LatentQueries& packed = mla_.queries;
        packed.reset(type, nq, d);
        pool_.parallel_for(nq, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) packed.pack(static_cast<int>(i), q + (t0 * n_head + i) * d);
        });
        std::vector<float>& run_max = mla_.m;  // per query: the running maximum M and sum S
        std::vector<float>& run_sum = mla_.s;
        run_max.assign(nq, neg_inf);
        run_sum.assign(nq, 0.0f);
        CacheLineVector<float>& acc = mla_.acc;  // per query: VKQ
        acc.resize(static_cast<size_t>(nq) * r);
        std::fill(acc.begin(), acc.end(), 0.0f);

        const Layout layout(nq, pool_.size());
        const int64_t chunk = layout.chunk;
        CacheLineVector<float>& scores = mla_.scores;  // then vs, in place
        CacheLineVector<float>& ms = mla_.ms;
        scores.resize(static_cast<size_t>(nq) * chunk);
        ms.resize(static_cast<size_t>(nq) * chunk);
        const int n_groups = layout.n_groups;
        std::vector<uint16_t>& rescale = mla_.marks;
        rescale.resize(static_cast<size_t>(n_groups) * chunk);
        std::vector<const uint8_t*>& row_ptrs = mla_.rows;  // per thread, a chunk's rows
        row_ptrs.resize(static_cast<size_t>(pool_.size()) * chunk);
        CacheLineVector<float>& values = mla_.values;  // per thread, a slice of a chunk's V rows as f32
        values.resize(static_cast<size_t>(pool_.size()) * chunk * kSlice);
        const int n_slices = r / kSlice;
        const size_t row_bytes = cache.k_row_bytes(layer) + 63;  // a row may straddle one more line

        // The three steps on chunk [c0, c0 + n), each over a range of the work.
        // 1. Scores of queries [qb, qe) against rows [ib, ie)·16 of the
        // chunk; queries that see none of an item's rows are skipped.
        auto score_rows = [&](const uint8_t* const* ptrs, int64_t c0, int64_t n, int64_t ib, int64_t ie, int qb,
                              int qe) {
            for (int64_t it = ib; it < ie; ++it) {
                const int64_t j0 = it * kScoreRows;
                // At depth the rows come from memory: fetch the next item's while this one is scored.
                for (int64_t j = j0 + kScoreRows; j < std::min(n, j0 + 2 * kScoreRows); ++j)
                    for (size_t at = 0; at < row_bytes; at += 64) prefetch_l1(ptrs[j] + at);
                const int rows_here = static_cast<int>(std::min<int64_t>(kScoreRows, n - j0));
                int first = qb;
                if (growing)
                    while (first < qe && visible(first) <= c0 + j0) ++first;
                if (first < qe)
                    score_latent_rows(packed, first, qe - first, ptrs + j0, rows_here, scale,
                                      scores.data() + first * chunk + j0, static_cast<int>(chunk));
            }
        };
        // 2. The softmax walk of groups [gb, ge), per query over its visible
        // rows of the chunk: scores become vs (0 past the query's rows), ms
        // holds the rescale at each new maximum, and each group of
        // kGroupQueries queries marks its rows with one.
        auto walk = [&](int64_t c0, int64_t n, int gb, int ge) {
            for (int g = gb; g < ge; ++g) {
                uint16_t* marks = rescale.data() + g * chunk;
                std::fill(marks, marks + n, uint16_t{0});
                const int q0 = g * kGroupQueries, qe = std::min(nq, q0 + kGroupQueries);
                int64_t longest = 0;
                for (int i = q0; i < qe; ++i) {
                    const int64_t seen = std::clamp<int64_t>(visible(i) - c0, 0, n);
                    longest = std::max(longest, seen);
                    run_max[i] =
                        softmax_weights(scores.data() + static_cast<size_t>(i) * chunk,
                                        ms.data() + static_cast<size_t>(i) * chunk, marks, seen, n, run_max[i]);
                }
                // S = S·ms + vs row by row, the group's chains side by side
                // (one query's chain alone would wait on each FMA).
                float sum[kGroupQueries];
                for (int i = q0; i < qe; ++i) sum[i - q0] = run_sum[i];
                for (int64_t j = 0; j < longest; ++j)
                    for (int i = q0; i < qe; ++i) {
                        const size_t at = static_cast<size_t>(i) * chunk + j;
                        sum[i - q0] = std::fma(sum[i - q0], ms[at], scores[at]);  // past a query's rows: 1·S + 0
                    }
                for (int i = q0; i < qe; ++i) run_sum[i] = sum[i - q0];
            }
        };
        // 3. V sums of groups [gb, ge) over latent slices [sb, se): each
        // slice of the chunk's rows converted once (into v) for all of them.
        auto sum_values = [&](const uint8_t* const* ptrs, int64_t c0, int64_t n, float* v, int sb, int se, int gb,
                              int ge) {
            for (int slice = sb; slice < se; ++slice) {
                for (int64_t j = 0; j < n; ++j) block_to_f32(type, ptrs[j], slice, v + j * kSlice);
                for (int g = gb; g < ge; ++g) {
                    const int qb = g * kGroupQueries, qn = std::min(kGroupQueries, nq - qb);
                    int64_t rows_needed = 0;  // the group's last visible row in this chunk
                    float* a[kGroupQueries];
                    for (int k = 0; k < qn; ++k) {
                        rows_needed = std::max(rows_needed, std::clamp<int64_t>(visible(qb + k) - c0, 0, n));
                        a[k] = acc.data() + static_cast<size_t>(qb + k) * r + slice * kSlice;
                    }
                    kSumSlice[qn - 1](scores.data() + static_cast<size_t>(qb) * chunk,
                                      ms.data() + static_cast<size_t>(qb) * chunk, chunk, rescale.data() + g * chunk, v,
                                      rows_needed, a);
                }
            }
        };
        auto chunk_rows = [&](const uint8_t** ptrs, int64_t c0, int64_t n) {
            for (int64_t j = 0; j < n; ++j) ptrs[j] = cache.k_row(layer, cells[c0 + j]);
        };

        if (layout.split_queries) {
            // Many query groups (a prompt): each thread walks all the rows for
            // its own groups, all three steps, with no barrier between; every
            // thread transposes and converts the rows, which its groups' work
            // amortizes.
            pool_.run([&](int thread, int n_threads) {
                const int gb = n_groups * thread / n_threads, ge = n_groups * (thread + 1) / n_threads;
                if (gb == ge) return;
                const uint8_t** ptrs = row_ptrs.data() + static_cast<size_t>(thread) * chunk;
                float* v = values.data() + static_cast<size_t>(thread) * chunk * kSlice;
                for (int64_t c0 = 0; c0 < n_max; c0 += chunk) {
                    const int64_t n = std::min(chunk, n_max - c0);
                    chunk_rows(ptrs, c0, n);
                    score_rows(ptrs, c0, n, 0, (n + kScoreRows - 1) / kScoreRows, gb * kGroupQueries,
                               std::min(nq, ge * kGroupQueries));
                    walk(c0, n, gb, ge);
                    sum_values(ptrs, c0, n, v, 0, n_slices, gb, ge);
                }
            });
        } else {
            // Few groups (a decoded token): each step split over all threads,
            // scores by rows, the walk by groups, the V sums by slices.
            const uint8_t** ptrs = row_ptrs.data();
            for (int64_t c0 = 0; c0 < n_max; c0 += chunk) {
                const int64_t n = std::min(chunk, n_max - c0);
                chunk_rows(ptrs, c0, n);
                pool_.parallel_for((n + kScoreRows - 1) / kScoreRows,
                                   [&](int64_t ib, int64_t ie) { score_rows(ptrs, c0, n, ib, ie, 0, nq); });
                pool_.parallel_for(
                    n_groups, [&](int64_t gb, int64_t ge) { walk(c0, n, static_cast<int>(gb), static_cast<int>(ge)); });
                pool_.run([&](int thread, int n_threads) {
                    float* v = values.data() + static_cast<size_t>(thread) * chunk * kSlice;
                    sum_values(ptrs, c0, n, v, n_slices * thread / n_threads, n_slices * (thread + 1) / n_threads, 0,
                               n_groups);
                });
            }
        }

        // out = VKQ · (1/S); a query that saw no row gives 0.
        pool_.parallel_for(nq, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                const float inv = run_sum[i] == 0.0f ? 0.0f : 1.0f / run_sum[i];
                const float* a = acc.data() + i * r;
                float* o = out + (t0 * n_head + i) * r;
                for (int x = 0; x < r; ++x) o[x] = a[x] * inv;
            }
        });
        t0 = t1;
    }
}

}  // namespace moeserve
