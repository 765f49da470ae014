// Mamba2 ops of the CPU backend (spec architectures §6.7): the causal
// depthwise conv over each sequence's rolling conv state, the selective scan
// and the gated grouped RMSNorm.
//
// The scan runs token by token, as llama.cpp's ggml_ssm_scan does, with the
// same f32 operations ((S*dA) + (B*x*dt), then an FMA dot with C). Work is
// split over (sequence, head) pairs: one head's state [P][N] (16-32 KiB)
// stays in L1 while all of that sequence's tokens of the batch stream past
// it, so a long prefill costs about one pass over the state per token and
// head, with no re-reads from memory.
#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "memory/kv_cache.h"

namespace moeserve {
namespace {

inline float silu(float x) {
    return x / (1.0f + std::exp(-x));
}

// The tokens of a batch grouped by sequence, each group in batch order
// (which is position order within a sequence).
struct SeqGroups {
    std::vector<int32_t> seq;     // per group: the sequence id
    std::vector<int64_t> start;   // per group: its first entry in tokens; one extra at the end
    std::vector<int64_t> tokens;  // token indices, group by group
};

SeqGroups group_by_seq(std::span<const int32_t> seq_ids) {
    SeqGroups g;
    std::vector<int64_t> count;
    std::vector<int> group_of(seq_ids.size());
    for (size_t t = 0; t < seq_ids.size(); ++t) {
        auto it = std::find(g.seq.begin(), g.seq.end(), seq_ids[t]);
        if (it == g.seq.end()) {
            g.seq.push_back(seq_ids[t]);
            count.push_back(0);
            it = g.seq.end() - 1;
        }
        group_of[t] = static_cast<int>(it - g.seq.begin());
        ++count[group_of[t]];
    }
    g.start.assign(g.seq.size() + 1, 0);
    for (size_t i = 0; i < g.seq.size(); ++i) g.start[i + 1] = g.start[i] + count[i];
    g.tokens.resize(seq_ids.size());
    std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
    for (size_t t = 0; t < seq_ids.size(); ++t) g.tokens[fill[group_of[t]]++] = static_cast<int64_t>(t);
    return g;
}

// One row of the scan: s[i] = s[i]*dA + b[i]*xdt for i < n, returns Σ s[i]*c[i].
inline float scan_row(float* s, const float* b, const float* c, float dA, float xdt, int n) {
    int i = 0;
    float sum = 0.0f;
#if defined(__AVX2__)  // 8 lanes: the scan is ~1% of a forward pass, wider gains nothing
    const __m256 vdA = _mm256_set1_ps(dA), vx = _mm256_set1_ps(xdt);
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 st =
            _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(s + i), vdA), _mm256_mul_ps(_mm256_loadu_ps(b + i), vx));
        _mm256_storeu_ps(s + i, st);
        acc = _mm256_fmadd_ps(st, _mm256_loadu_ps(c + i), acc);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    sum = _mm_cvtss_f32(h);
#endif
    for (; i < n; ++i) {
        s[i] = s[i] * dA + b[i] * xdt;
        sum += s[i] * c[i];
    }
    return sum;
}

// ln(1 + e^v), or v above 20 (llama.cpp's threshold).
inline float softplus(float v) {
    return v > 20.0f ? v : std::log1p(std::exp(v));
}

}  // namespace

void CpuBackend::ssm_conv(KvCache& cache, int layer, const float* x, int64_t x_stride, int64_t n_tokens,
                          std::span<const int32_t> seq_ids, const Weight& conv, const Weight& bias, float* out) {
    const int K = static_cast<int>(conv.ne[0]);  // kernel length
    const int64_t C = conv.ne[1];                // channels
    const float* w = conv.f32();                 // [C][K], oldest tap first
    const float* b = bias ? bias.f32() : nullptr;
    const SeqGroups groups = group_by_seq(seq_ids.first(n_tokens));
    const int64_t n_groups = static_cast<int64_t>(groups.seq.size());
    constexpr int64_t kBlock = 64;  // channels per work item
    const int64_t n_blocks = (C + kBlock - 1) / kBlock;
    auto items = [&](int64_t begin, int64_t end) {
        // win: [K-1][kBlock] the rolling window, wt: [K][kBlock] the taps, both channel-fastest
        std::vector<float> win(static_cast<size_t>(std::max(K - 1, 1)) * kBlock), wt(static_cast<size_t>(K) * kBlock),
            sum(kBlock);
        for (int64_t item = begin; item < end; ++item) {
            const int64_t gi = item / n_blocks;
            const int64_t c0 = (item % n_blocks) * kBlock, nc = std::min(kBlock, C - c0);
            float* state = cache.conv_state(layer, groups.seq[gi]);  // [C][K-1]
            for (int64_t j = 0; j < nc; ++j) {
                for (int k = 0; k < K - 1; ++k) win[k * kBlock + j] = state[(c0 + j) * (K - 1) + k];
                for (int k = 0; k < K; ++k) wt[k * kBlock + j] = w[(c0 + j) * K + k];
            }
            for (int64_t i = groups.start[gi]; i < groups.start[gi + 1]; ++i) {
                const int64_t t = groups.tokens[i];
                const float* xt = x + t * x_stride + c0;
                std::fill(sum.begin(), sum.end(), 0.0f);
                for (int k = 0; k < K - 1; ++k)
                    for (int64_t j = 0; j < nc; ++j) sum[j] += win[k * kBlock + j] * wt[k * kBlock + j];
                float* o = out + t * C + c0;
                for (int64_t j = 0; j < nc; ++j) {
                    float s = sum[j] + xt[j] * wt[(K - 1) * kBlock + j];
                    if (b) s += b[c0 + j];
                    o[j] = silu(s);
                }
                // Drop the oldest input, append this one.
                for (int k = 0; k + 1 < K - 1; ++k)
                    std::copy_n(win.begin() + (k + 1) * kBlock, nc, win.begin() + k * kBlock);
                if (K > 1) std::copy_n(xt, nc, win.begin() + (K - 2) * kBlock);
            }
            for (int64_t j = 0; j < nc; ++j)
                for (int k = 0; k < K - 1; ++k) state[(c0 + j) * (K - 1) + k] = win[k * kBlock + j];
        }
    };
    const int64_t n_items = n_groups * n_blocks;
    if (n_items * n_tokens < 64)
        items(0, n_items);
    else
        pool_.parallel_for(n_items, items);
}

void CpuBackend::ssm_scan(KvCache& cache, int layer, const float* xbc, const float* dt, int64_t dt_stride,
                          int64_t n_tokens, std::span<const int32_t> seq_ids, const SsmParams& p, float* y) {
    const int H = p.n_head, P = p.head_dim, N = p.d_state, G = p.n_group;
    const int64_t d_inner = static_cast<int64_t>(H) * P;
    const int64_t C = d_inner + 2 * static_cast<int64_t>(G) * N;  // xbc row width
    const int heads_per_group = H / G;
    const SeqGroups groups = group_by_seq(seq_ids.first(n_tokens));
    const int64_t n_items = static_cast<int64_t>(groups.seq.size()) * H;
    pool_.parallel_for(n_items, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
            const int64_t gi = item / H;
            const int h = static_cast<int>(item % H), g = h / heads_per_group;
            float* S = cache.ssm_state(layer, groups.seq[gi]) + static_cast<int64_t>(h) * P * N;  // [P][N]
            for (int64_t i = groups.start[gi]; i < groups.start[gi + 1]; ++i) {
                const int64_t t = groups.tokens[i];
                const float* xh = xbc + t * C + static_cast<int64_t>(h) * P;           // x: [P]
                const float* B = xbc + t * C + d_inner + static_cast<int64_t>(g) * N;  // B: [N]
                const float* Cm = B + static_cast<int64_t>(G) * N;                     // C: [N]
                const float sp = softplus(dt[t * dt_stride + h] + p.dt_bias[h]);
                const float dA = std::exp(sp * p.a[h]);
                float* yh = y + t * d_inner + static_cast<int64_t>(h) * P;
                for (int r = 0; r < P; ++r) {
                    const float v = scan_row(S + static_cast<int64_t>(r) * N, B, Cm, dA, xh[r] * sp, N);
                    yh[r] = v + xh[r] * p.d[h];
                }
            }
        }
    });
}

void CpuBackend::gated_group_norm(float* y, const float* z, int64_t z_stride, const float* w, float eps, int64_t n_rows,
                                  int64_t n, int n_group) {
    const int64_t gs = n / n_group;  // group size
    auto rows = [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            float* yr = y + r * n;
            const float* zr = z + r * z_stride;
            for (int64_t i = 0; i < n; ++i) yr[i] = silu(zr[i]) * yr[i];
            for (int g = 0; g < n_group; ++g) {
                float* s = yr + g * gs;
                double sum = 0.0;  // as ggml: squares summed in double, the mean taken as float
                for (int64_t i = 0; i < gs; ++i) sum += static_cast<double>(s[i]) * s[i];
                const float mean = static_cast<float>(sum / gs);
                const float scale = 1.0f / std::sqrt(mean + eps);
                for (int64_t i = 0; i < gs; ++i) s[i] = (s[i] * scale) * w[g * gs + i];
            }
        }
    };
    if (n_rows * n < 16384)
        rows(0, n_rows);
    else
        pool_.parallel_for(n_rows, rows);
}

}  // namespace moeserve
