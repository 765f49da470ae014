// Matrix products straight from quantized weights. The activations of a
// batch are quantized once to the weight type's partner (Q8_K for K-quants
// and IQ4_XS, Q8_0/Q8_1 for the legacy types, f16 for F16 weights, ...),
// then every output is one vec_dot of a weight row with a quantized
// activation row. Work is a list of jobs (one per weight matrix) split into
// blocks of rows small enough to stay in L1 while all tokens of the batch
// stream past them; one list is one parallel pass, so a decode step pays few
// thread synchronisations. Where the weight type has a tile kernel (vec_dot.h),
// a prompt's activations are first packed into tiles of kDotTileRows tokens,
// and each weight block is unpacked once per tile instead of once per four
// tokens; tokens past the last full tile use the four-row, three- or
// two-row and single-row kernels, which give the same results.
#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"

namespace moeserve {
namespace {

constexpr int64_t kRowBlock = 16;

}  // namespace

void CpuBackend::quantize_rows(GgmlType type, const float* x, int64_t n_tokens, int64_t n, uint8_t* dst) {
    const size_t row = ggml_row_bytes(type, n);
    if (type == GgmlType::F32) {
        std::memcpy(dst, x, row * n_tokens);
        return;
    }
    auto rows = [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) quantize_row_activation(type, x + t * n, dst + t * row, n);
    };
    if (n_tokens < 4)
        rows(0, n_tokens);  // not worth a dispatch
    else
        pool_.parallel_for(n_tokens, rows);
}

const uint8_t* CpuBackend::quantize_activations(GgmlType type, const float* x, int64_t n_tokens, int64_t n,
                                                CacheLineVector<uint8_t>& buf) {
    const size_t bytes = ggml_row_bytes(type, n) * n_tokens;
    if (buf.size() < bytes) buf.resize(bytes);
    quantize_rows(type, x, n_tokens, n, buf.data());
    return buf.data();
}

namespace {

// Where a job's packed activation tiles are (kernel == nullptr: the job has none).
struct JobTiles {
    const VecDotTile* kernel = nullptr;
    size_t tile_bytes = 0;
    size_t offset = 0;  // of the first tile in the tile buffer
};

// Tiles of the jobs' activations; jobs that share their activations (the
// projections of one input) share the tiles. Returns the bytes needed.
// (A template because MatmulJob is private to CpuBackend.)
template <typename Job>
size_t plan_tiles(std::span<const Job> jobs, std::vector<JobTiles>& tiles) {
    size_t total = 0;
    tiles.assign(jobs.size(), JobTiles{});
    for (size_t j = 0; j < jobs.size(); ++j) {
        const auto& job = jobs[j];
        const VecDotTile* kernel = vec_dot_tile_kernel(job.w->type, job.w->ne[0]);
        if (!kernel || dot_tile_count(*kernel, job.n_tokens) == 0) continue;
        tiles[j] = {kernel, kernel->tile_bytes(job.w->ne[0]), total};
        // Shared only where the other job packed the same tiles (same layout,
        // same input, and as many of them).
        for (size_t i = 0; i < j; ++i)
            if (tiles[i].kernel && tiles[i].kernel->pack == kernel->pack &&
                tiles[i].kernel->min_partial == kernel->min_partial && jobs[i].xq == job.xq &&
                jobs[i].n_tokens == job.n_tokens && jobs[i].w->ne[0] == job.w->ne[0]) {
                tiles[j].offset = tiles[i].offset;
                break;
            }
        if (tiles[j].offset == total)
            total += tiles[j].tile_bytes * static_cast<size_t>(dot_tile_count(*kernel, job.n_tokens));
    }
    return total;
}

}  // namespace

void CpuBackend::run_matmul_jobs(std::span<const MatmulJob> jobs) {
    // Pack the prompt tiles first, in parallel, into the backend's buffer
    // (reused from call to call, freed with the backend, as the memory plan counts it).
    std::vector<JobTiles> tiles;
    const size_t tile_total = plan_tiles(jobs, tiles);
    if (tile_buf_.size() < tile_total) tile_buf_.resize(tile_total);
    uint8_t* const tile_data = tile_buf_.data();
    if (tile_total > 0) {
        std::vector<std::pair<size_t, int64_t>> packs;  // (job, tile) for each distinct tile
        for (size_t j = 0; j < jobs.size(); ++j) {
            if (!tiles[j].kernel) continue;
            bool shared = false;
            for (size_t i = 0; i < j && !shared; ++i) shared = tiles[i].kernel && tiles[i].offset == tiles[j].offset;
            if (shared) continue;
            for (int64_t t = 0; t < dot_tile_count(*tiles[j].kernel, jobs[j].n_tokens); ++t) packs.emplace_back(j, t);
        }
        pool_.parallel_for(static_cast<int64_t>(packs.size()), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                const auto [j, t] = packs[i];
                const MatmulJob& job = jobs[j];
                const int n_rows = static_cast<int>(std::min<int64_t>(kDotTileRows, job.n_tokens - t * kDotTileRows));
                tiles[j].kernel->pack(job.xq + t * kDotTileRows * job.xq_row_bytes, job.xq_row_bytes, n_rows,
                                      tile_data + tiles[j].offset + t * tiles[j].tile_bytes, job.w->ne[0]);
            }
        });
    }

    // first_block[j]: index of job j's first row block in the flat work list.
    std::vector<int64_t> first_block(jobs.size() + 1, 0);
    for (size_t j = 0; j < jobs.size(); ++j)
        first_block[j + 1] = first_block[j] + (jobs[j].w->ne[1] + kRowBlock - 1) / kRowBlock;
    pool_.parallel_for(first_block.back(), [&](int64_t b, int64_t e) {
        size_t j = std::upper_bound(first_block.begin(), first_block.end(), b) - first_block.begin() - 1;
        for (int64_t blk = b; blk < e; ++blk) {
            while (blk >= first_block[j + 1]) ++j;
            const MatmulJob& job = jobs[j];
            const Weight& w = *job.w;
            const VecDotFn dot = vec_dot_kernel(w.type);
            const VecDot4Fn dot4 = vec_dot4_kernel(w.type);
            const uint8_t* base = w.data + static_cast<size_t>(job.expert) * w.matrix_bytes;
            const int64_t r0 = (blk - first_block[j]) * kRowBlock, r1 = std::min(w.ne[1], r0 + kRowBlock);
            int64_t t = 0;
            if (const VecDotTile* tile = tiles[j].kernel) {  // kDotTileRows tokens x 4 weight rows per call
                for (int64_t i = 0; i < dot_tile_count(*tile, job.n_tokens); ++i, t += kDotTileRows) {
                    const uint8_t* packed = tile_data + tiles[j].offset + i * tiles[j].tile_bytes;
                    const int n_tok = static_cast<int>(std::min<int64_t>(kDotTileRows, job.n_tokens - t));
                    for (int64_t r = r0; r < r1; r += kDotTileWeightRows) {
                        const int n_rows = static_cast<int>(std::min<int64_t>(kDotTileWeightRows, r1 - r));
                        float o[kDotTileWeightRows * kDotTileRows];
                        tile->dot(base + r * w.row_bytes, w.row_bytes, n_rows, packed, o, w.ne[0]);
                        for (int v = 0; v < n_rows; ++v)
                            for (int k = 0; k < n_tok; ++k)
                                job.y[(t + k) * job.y_stride + r + v] = o[v * kDotTileRows + k];
                    }
                }
                t = std::min(t, job.n_tokens);
            }
            // Groups of 2-4 tokens: each weight block unpacked once for the group,
            // by the weight-rows kernel where the type has that form (it prefetches
            // the rows it reads next), else by the four-, three- or two-row kernels.
            const VecDotRowsFewFn rows_few = vec_dot_rows_few_kernel(w.type);
            auto group = [&](int count) {
                const void* a[4];
                for (int k = 0; k < count; ++k) a[k] = job.xq + (t + k) * job.xq_row_bytes;
                if (rows_few) {
                    for (int64_t r = r0; r < r1; r += kDotWeightRows) {
                        float* o[4];
                        for (int k = 0; k < count; ++k) o[k] = job.y + (t + k) * job.y_stride + r;
                        rows_few(base + r * w.row_bytes, w.row_bytes,
                                 static_cast<int>(std::min<int64_t>(kDotWeightRows, r1 - r)), a, count, o, w.ne[0]);
                    }
                    return;
                }
                const VecDotFewFn few = count == 4 ? nullptr : vec_dot_few_kernel(w.type, count);
                for (int64_t r = r0; r < r1; ++r) {
                    float o[4];
                    if (few)
                        few(base + r * w.row_bytes, a, o, w.ne[0]);
                    else
                        dot4(base + r * w.row_bytes, a, o, w.ne[0]);
                    for (int k = 0; k < count; ++k) job.y[(t + k) * job.y_stride + r] = o[k];
                }
            };
            if (rows_few || dot4)
                for (; t + 4 <= job.n_tokens; t += 4) group(4);
            if (const int left = static_cast<int>(job.n_tokens - t);
                (left == 2 || left == 3) && (rows_few || vec_dot_few_kernel(w.type, left))) {
                group(left);  // a decode step of 2-3 slots, or what a prompt leaves
                t = job.n_tokens;
            }
            const VecDotRowsFn dotw = vec_dot_rows_kernel(w.type);
            for (; t < job.n_tokens; ++t) {  // a decoded token, or a prompt's last few
                const uint8_t* a = job.xq + t * job.xq_row_bytes;
                float* yt = job.y + t * job.y_stride;
                int64_t r = r0;
                if (dotw)
                    for (; r < r1; r += kDotWeightRows)
                        dotw(base + r * w.row_bytes, w.row_bytes,
                             static_cast<int>(std::min<int64_t>(kDotWeightRows, r1 - r)), a, yt + r, w.ne[0]);
                for (; r < r1; ++r) yt[r] = dot(base + r * w.row_bytes, a, w.ne[0]);
            }
        }
    });
}

void CpuBackend::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, int expert) {
    const GgmlType act_type = vec_dot_type(w.type);
    const uint8_t* xq = quantize_activations(act_type, x, n_tokens, w.ne[0], act_buf_);
    const MatmulJob job{&w, expert, xq, ggml_row_bytes(act_type, w.ne[0]), n_tokens, y, w.ne[1]};
    run_matmul_jobs({&job, 1});
}

void CpuBackend::matmul_shared_input(const float* x, int64_t n_tokens, std::span<const Projection> projections) {
    // Quantize x once per distinct activation type (Q4_K_M mixes Q4_K and Q6_K,
    // both dotted with Q8_K, so usually once).
    std::vector<MatmulJob> jobs;
    std::vector<std::pair<GgmlType, size_t>> done;  // type -> offset in act_buf2_
    size_t total = 0;
    for (const auto& p : projections) {
        GgmlType t = vec_dot_type(p.w->type);
        if (std::find_if(done.begin(), done.end(), [&](auto& d) { return d.first == t; }) != done.end()) continue;
        done.emplace_back(t, total);
        total += ggml_row_bytes(t, p.w->ne[0]) * n_tokens;
    }
    if (act_buf2_.size() < total) act_buf2_.resize(total);
    for (auto& [t, off] : done) quantize_rows(t, x, n_tokens, projections[0].w->ne[0], act_buf2_.data() + off);
    for (const auto& p : projections) {
        GgmlType t = vec_dot_type(p.w->type);
        size_t off = std::find_if(done.begin(), done.end(), [&](auto& d) { return d.first == t; })->second;
        jobs.push_back({p.w, 0, act_buf2_.data() + off, ggml_row_bytes(t, p.w->ne[0]), n_tokens, p.y, p.w->ne[1]});
    }
    run_matmul_jobs(jobs);
}

}  // namespace moeserve
