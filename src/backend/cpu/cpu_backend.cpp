// Elementwise and row ops of the CPU backend: embedding lookup, RMSNorm,
// RoPE, residual adds, the Hadamard transform.
#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/dequantize.h"

namespace moeserve {

std::unique_ptr<Backend> make_cpu_backend(int n_threads) {
    return std::make_unique<CpuBackend>(n_threads);
}

void CpuBackend::embed(const Weight& table, std::span<const int32_t> tokens, float* out) {
    const int64_t width = table.ne[0];
    pool_.parallel_for(static_cast<int64_t>(tokens.size()), [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t)
            dequantize_row(table.type, table.data + static_cast<size_t>(tokens[t]) * table.row_bytes, out + t * width,
                           width);
    });
}

void CpuBackend::rms_norm(const float* x, const float* w, float eps, int64_t n_rows, int64_t n, float* out) {
    auto rows = [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
            const float* xr = x + r * n;
            float* yr = out + r * n;
            // ggml sums the squares in double and takes the mean as float.
            double sum = 0.0;
            for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
            const float mean = static_cast<float>(sum / n);
            const float scale = 1.0f / std::sqrt(mean + eps);
            for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * w[i];
        }
    };
    if (n_rows * n < 16384)
        rows(0, n_rows);
    else
        pool_.parallel_for(n_rows, rows);
}

void CpuBackend::add(float* y, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuBackend::add_row_broadcast(float* y, const float* b, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; ++r) add(y + r * n, b, n);
}

void CpuBackend::copy_rows(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t n_rows,
                           int64_t width) {
    for (int64_t r = 0; r < n_rows; ++r) std::copy_n(src + r * src_stride, width, dst + r * dst_stride);
}

void CpuBackend::gather_rows(float* dst, const float* src, int64_t width, std::span<const int64_t> rows) {
    for (size_t i = 0; i < rows.size(); ++i) std::copy_n(src + rows[i] * width, width, dst + i * width);
}

void CpuBackend::fill(float* y, float value, int64_t n) {
    std::fill_n(y, n, value);
}

void CpuBackend::read(float* host_dst, const float* src, int64_t n) {
    if (host_dst != src) std::copy_n(src, n, host_dst);
}

namespace {

float yarn_corr_dim(int n_rot, int n_ctx_orig, float beta, float base) {
    return n_rot * std::log(n_ctx_orig / (beta * 2.0f * static_cast<float>(M_PI))) / (2.0f * std::log(base));
}

}  // namespace

void CpuBackend::rope(float* x, int64_t n_tokens, int n_head, int head_dim, std::span<const int32_t> positions,
                      const RopeParams& p) {
    const int n_rot = p.n_rot;
    const int half = n_rot / 2;
    const float theta_scale = std::pow(p.freq_base, -2.0f / n_rot);
    float corr_low = 0, corr_high = 0;
    if (p.ext_factor != 0.0f) {
        corr_low = std::max(0.0f, std::floor(yarn_corr_dim(n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
        corr_high = std::min(static_cast<float>(n_rot - 1),
                             std::ceil(yarn_corr_dim(n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
    }
    pool_.parallel_for(n_tokens, [&](int64_t b, int64_t e) {
        std::vector<float> cos_t(half), sin_t(half);
        for (int64_t t = b; t < e; ++t) {
            // Angles for this position, by repeated multiplication as ggml does.
            float theta_base = static_cast<float>(positions[t]);
            for (int i = 0; i < half; ++i) {
                const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
                const float theta_extrap = theta_base / ff;
                const float theta_interp = p.freq_scale * theta_extrap;
                float theta = theta_interp, mscale = p.attn_factor;
                if (p.ext_factor != 0.0f) {
                    const float y = (i - corr_low) / std::max(0.001f, corr_high - corr_low);
                    const float ramp = 1.0f - std::min(1.0f, std::max(0.0f, y));
                    const float mix = ramp * p.ext_factor;
                    // Explicit FMAs where GCC contracts ggml's expressions on an FMA
                    // machine, so that every build and the GPU compute the same angles.
                    theta = std::fma(theta_interp, 1 - mix, theta_extrap * mix);
                    mscale *= std::fma(0.1f, std::log(1.0f / p.freq_scale), 1.0f);
                }
                cos_t[i] = std::cos(theta) * mscale;
                sin_t[i] = std::sin(theta) * mscale;
                theta_base *= theta_scale;
            }
            for (int h = 0; h < n_head; ++h) {
                float* v = x + (t * n_head + h) * head_dim;
                for (int i = 0; i < half; ++i) {
                    // NORM pairs adjacent dims; NEOX pairs dim i with i + n_rot/2.
                    const int i0 = p.mode == RopeMode::Neox ? i : 2 * i;
                    const int i1 = p.mode == RopeMode::Neox ? i + half : 2 * i + 1;
                    const float x0 = v[i0], x1 = v[i1];
                    v[i0] = std::fma(x0, cos_t[i], -(x1 * sin_t[i]));
                    v[i1] = std::fma(x0, sin_t[i], x1 * cos_t[i]);
                }
            }
        }
    });
}

void hadamard_transform(float* x, int n) {
    for (int len = 1; len < n; len <<= 1)
        for (int i = 0; i < n; i += 2 * len)
            for (int j = i; j < i + len; ++j) {
                const float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    const float s = 1.0f / std::sqrt(static_cast<float>(n));
    for (int i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace moeserve
