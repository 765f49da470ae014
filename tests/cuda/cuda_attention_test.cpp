// GPU store_kv and attention against the CPU backend: the cache bytes the GPU
// writes must equal the CPU's for every cache type (rotation included), and
// attention over identical cache contents must agree within float rounding.
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_ops.h"
#include "cuda_op_fixture.h"
#include "memory/kv_cache.h"
#include "quant/ggml_type.h"

namespace moeserve::cuda::test {
namespace {

using CudaAttention = CudaOpTest;

const GgmlType kCacheTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,  GgmlType::Q4_0,
                                GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL};

bool is_float(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

KvCacheConfig one_layer(GgmlType tk, GgmlType tv, int n_head_kv, int dk, int dv, int64_t n_cells) {
    KvCacheConfig c;
    c.n_cells = n_cells;
    c.type_k = tk;
    c.type_v = tv;
    c.n_embd_k = {static_cast<int64_t>(n_head_kv) * dk};
    c.n_embd_v = {static_cast<int64_t>(n_head_kv) * dv};
    c.head_dim_k = dk;
    c.head_dim_v = dv;
    return c;
}

// The layer's K and V bytes as device copies, described as a KvLayer.
struct DeviceLayer {
    DeviceLayer(const KvCache& cache)
        : k(cache.k_row_bytes(0) * cache.n_cells()), v(std::max<size_t>(cache.v_row_bytes(0) * cache.n_cells(), 1)) {
        const auto& cfg = cache.config();
        layer.k = k.get();
        layer.v = cfg.n_embd_v[0] ? v.get() : nullptr;
        layer.k_row_bytes = cache.k_row_bytes(0);
        layer.v_row_bytes = cache.v_row_bytes(0);
        layer.type_k = cache.type_k();
        layer.type_v = cache.type_v();
        layer.n_embd_k = cfg.n_embd_k[0];
        layer.n_embd_v = cfg.n_embd_v[0];
        layer.k_rot_chunk = cache.k_rotation_chunk();
        layer.v_rot_chunk = cache.v_rotation_chunk();
    }
    void upload_from(const KvCache& cache) {
        k.upload(std::vector<uint8_t>(cache.k_row(0, 0), cache.k_row(0, 0) + k.size()));
        if (layer.v) v.upload(std::vector<uint8_t>(cache.v_row(0, 0), cache.v_row(0, 0) + v.size()));
    }
    DeviceArray<uint8_t> k, v;
    KvLayer layer;
};

TEST_F(CudaAttention, store_kv_writes_the_cpu_bytes_for_every_cache_type) {
    std::mt19937 rng(10);
    for (int head_dim : {128, 64}) {
        for (GgmlType type : kCacheTypes) {
            const int n_kv = 3;
            const int64_t n_cells = 50, n_tokens = 23;
            KvCache cache(one_layer(type, type, n_kv, head_dim, head_dim, n_cells));
            SCOPED_TRACE(std::string(ggml_type_name(type)) + " head_dim " + std::to_string(head_dim) + " rotation " +
                         std::to_string(cache.k_rotation_chunk()) + "/" + std::to_string(cache.v_rotation_chunk()));
            if (!is_float(type)) {  // llama.cpp rotates quantized caches; the test must cover it
                EXPECT_EQ(cache.k_rotation_chunk(), head_dim);
                EXPECT_EQ(cache.v_rotation_chunk(), 64);
            }
            const int64_t width = n_kv * head_dim;
            auto k = normal_floats(n_tokens * width, rng), v = normal_floats(n_tokens * width, rng, 3.0f);
            std::fill(k.begin(), k.begin() + width, 0.0f);                    // an all-zero row
            k[width] = -0.0f;                                                 // a block starting with -0
            for (int i = 0; i < 32; ++i) v[2 * width + i] = 1e-3f * (i % 5);  // a small block with ties
            std::vector<int32_t> cells(n_cells);
            std::iota(cells.begin(), cells.end(), 0);
            std::shuffle(cells.begin(), cells.end(), rng);
            cells.resize(n_tokens);

            DeviceLayer dev(cache);  // zeroed, as the new host cache
            DeviceArray<float> dk(k), dv(v);
            DeviceArray<int32_t> dcells(cells);
            make_cpu_backend(1)->store_kv(cache, 0, k.data(), v.data(), cells);
            store_kv(ctx_, dev.layer, dk.get(), dv.get(), dcells.get(), n_tokens);
            const auto gk = dev.k.download(), gv = dev.v.download();
            const size_t kb = cache.k_row_bytes(0), vb = cache.v_row_bytes(0);
            int bad_k = 0, bad_v = 0;
            for (int64_t c = 0; c < n_cells; ++c) {
                bad_k += std::memcmp(gk.data() + c * kb, cache.k_row(0, static_cast<int32_t>(c)), kb) != 0;
                bad_v += std::memcmp(gv.data() + c * vb, cache.v_row(0, static_cast<int32_t>(c)), vb) != 0;
            }
            EXPECT_EQ(bad_k, 0) << "K rows that differ from the CPU's";
            EXPECT_EQ(bad_v, 0) << "V rows that differ from the CPU's";
            finish();
        }
    }
}

// One sequence of a batch: n_ctx cells already cached, then n_new tokens,
// token j seeing n_ctx + j + 1 cells.
struct Seq {
    int64_t n_ctx, n_new;
};

struct Shape {
    int n_head, n_head_kv, dk, dv;
};

class AttentionCase {
  public:
    // Builds a cache with the sequences' cells (random, disjoint) filled by the
    // CPU's store_kv, and random queries.
    AttentionCase(GgmlType tk, GgmlType tv, Shape s, std::vector<Seq> seqs, bool share_lists, std::mt19937& rng)
        : shape_(s), seqs_(std::move(seqs)) {
        int64_t total = 0;
        for (const Seq& q : seqs_) total += q.n_ctx + q.n_new, n_tokens_ += q.n_new;
        cache_ = std::make_unique<KvCache>(one_layer(tk, tv, s.n_head_kv, s.dk, s.dv, total + 3));
        std::vector<int32_t> all(total + 3);
        std::iota(all.begin(), all.end(), 0);
        std::shuffle(all.begin(), all.end(), rng);
        const int64_t wk = static_cast<int64_t>(s.n_head_kv) * s.dk, wv = static_cast<int64_t>(s.n_head_kv) * s.dv;
        const auto k = normal_floats(all.size() * wk, rng), v = normal_floats(all.size() * wv, rng);
        make_cpu_backend(1)->store_kv(*cache_, 0, k.data(), v.data(), all);
        int64_t next = 0;
        for (const Seq& q : seqs_) {
            const std::vector<int32_t> list(all.begin() + next, all.begin() + next + q.n_ctx + q.n_new);
            next += q.n_ctx + q.n_new;
            const int64_t shared_offset = static_cast<int64_t>(flat_.size());
            if (share_lists) flat_.insert(flat_.end(), list.begin(), list.end());
            for (int64_t j = 0; j < q.n_new; ++j) {
                if (share_lists) {
                    offset_.push_back(shared_offset);
                } else {  // each token its own copy of the list
                    offset_.push_back(static_cast<int64_t>(flat_.size()));
                    flat_.insert(flat_.end(), list.begin(), list.end());
                }
                n_cells_.push_back(static_cast<int32_t>(q.n_ctx + j + 1));
            }
        }
        q_ = normal_floats(n_tokens_ * s.n_head * s.dk, rng);
    }

    // max_scaled_error of the GPU's output against the CPU's.
    double run(Context& ctx) {
        const Shape s = shape_;
        const float scale = 1.0f / std::sqrt(static_cast<float>(s.dk));
        std::vector<const int32_t*> ptrs;
        for (int64_t t = 0; t < n_tokens_; ++t) ptrs.push_back(flat_.data() + offset_[t]);
        AttentionRows rows{ptrs, n_cells_};
        std::vector<float> want(n_tokens_ * s.n_head * s.dv);
        make_cpu_backend(2)->attention(*cache_, 0, q_.data(), n_tokens_, s.n_head, rows, scale, want.data());

        DeviceLayer dev(*cache_);
        dev.upload_from(*cache_);
        DeviceArray<float> dq(q_), dout(want.size());
        DeviceArray<int32_t> dflat(flat_), dn(n_cells_);
        DeviceArray<int64_t> doff(offset_);
        AttentionCells cells{dflat.get(), doff.get(), dn.get(), *std::max_element(n_cells_.begin(), n_cells_.end())};
        for (size_t t = 0, run = 0; t < offset_.size(); ++t) {  // as the backend's flatten_rows counts it
            run = t > 0 && offset_[t] == offset_[t - 1] ? run + 1 : 1;
            cells.max_run = std::max(cells.max_run, static_cast<int32_t>(run));
        }
        attention(ctx, dev.layer, dq.get(), n_tokens_, s.n_head, s.n_head_kv, s.dk, s.dv, cells, scale, dout.get());
        return max_scaled_error(dout.download(), want);
    }

  private:
    Shape shape_;
    std::vector<Seq> seqs_;
    std::unique_ptr<KvCache> cache_;
    int64_t n_tokens_ = 0;
    std::vector<int32_t> flat_, n_cells_;
    std::vector<int64_t> offset_;
    std::vector<float> q_;
};

// Both backends round q to Q8_0/Q8_1 before scoring a quantized K, and
// float K caches score f32 q: the results differ in summation order (and,
// for Q4_1/Q5_1 keys, in the CPU's fp16-rounded q8_1 block sums, which move
// unit-variance scores by ~1e-4).
double tolerance(GgmlType tk) {
    return is_float(tk) ? 1e-4 : tk == GgmlType::Q4_1 || tk == GgmlType::Q5_1 ? 5e-3 : 1e-3;
}

std::string label(GgmlType tk, GgmlType tv, Shape s) {
    return std::string(ggml_type_name(tk)) + "/" + std::string(ggml_type_name(tv)) + " heads " +
           std::to_string(s.n_head) + "/" + std::to_string(s.n_head_kv) + " dims " + std::to_string(s.dk) + "/" +
           std::to_string(s.dv);
}

TEST_F(CudaAttention, decode_matches_cpu_for_every_cache_type_pair) {
    const AttentionForm f32("f32");  // the f32 kernel: the tensor-core form has its own test
    std::mt19937 rng(11);
    const Shape s{32, 4, 128, 128};
    for (GgmlType tk : kCacheTypes)
        for (GgmlType tv : kCacheTypes)
            for (int64_t n : {1, 7, 4097}) {
                SCOPED_TRACE(label(tk, tv, s) + " cells " + std::to_string(n));
                AttentionCase c(tk, tv, s, {{n - 1, 1}}, true, rng);
                EXPECT_LT(c.run(ctx_), tolerance(tk));
                finish();
            }
}

TEST_F(CudaAttention, decode_and_prefill_match_cpu_across_head_shapes) {
    const AttentionForm f32("f32");  // the f32 kernel: the tensor-core form has its own test
    std::mt19937 rng(12);
    const std::pair<GgmlType, GgmlType> types[] = {{GgmlType::F16, GgmlType::F16},
                                                   {GgmlType::Q8_0, GgmlType::Q8_0},
                                                   {GgmlType::Q4_0, GgmlType::Q4_0},
                                                   {GgmlType::BF16, GgmlType::Q5_1},
                                                   {GgmlType::IQ4_NL, GgmlType::F32}};
    // Groups of 8 and 1, plus 6 and 3 (query rows not a multiple of the 4 a
    // thread scores at once) and dv = 96 (not dividing the block size: the
    // V sums' other loop order).
    const Shape shapes[] = {{32, 4, 128, 128}, {16, 2, 128, 128}, {4, 4, 128, 128}, {16, 2, 64, 64},
                            {4, 4, 64, 64},    {12, 2, 128, 128}, {6, 2, 96, 96}};
    for (const auto& [tk, tv] : types)
        for (const Shape& s : shapes) {
            SCOPED_TRACE(label(tk, tv, s));
            for (int64_t n : {1, 7, 4097}) {
                AttentionCase c(tk, tv, s, {{n - 1, 1}}, true, rng);
                EXPECT_LT(c.run(ctx_), tolerance(tk)) << "decode over " << n << " cells";
                finish();
            }
            // A causal prompt chunk after some context, a decode token of
            // another sequence and a fresh prompt, in one batch.
            AttentionCase prefill(tk, tv, s, {{40, 37}, {300, 1}, {0, 20}}, true, rng);
            EXPECT_LT(prefill.run(ctx_), tolerance(tk)) << "mixed prefill batch";
            finish();
            AttentionCase decodes(tk, tv, s, {{10, 1}, {600, 1}, {0, 1}, {33, 1}}, true, rng);
            EXPECT_LT(decodes.run(ctx_), tolerance(tk)) << "several decoding sequences";
            finish();
        }
}

TEST_F(CudaAttention, long_prefill_and_unshared_cell_lists_match_cpu) {
    const AttentionForm f32("f32");  // the f32 kernel: the tensor-core form has its own test
    std::mt19937 rng(13);
    const Shape s{32, 4, 128, 128};
    for (auto [tk, tv] : {std::pair{GgmlType::F16, GgmlType::F16}, std::pair{GgmlType::Q4_0, GgmlType::Q8_0}}) {
        SCOPED_TRACE(label(tk, tv, s));
        AttentionCase longer(tk, tv, s, {{1000, 300}}, true, rng);
        EXPECT_LT(longer.run(ctx_), tolerance(tk)) << "300-token prompt chunk after 1000 cells";
        finish();
        AttentionCase unshared(tk, tv, s, {{5, 21}, {0, 9}}, false, rng);
        EXPECT_LT(unshared.run(ctx_), tolerance(tk)) << "each token with its own copy of the cell list";
        finish();
    }
}

// Cases for the f16 tensor-core forms (bounds of f16 rounding): for every
// type pair and shape, decode over 1, 7 and 4097 cells and a mixed prefill
// batch; with long_prompts also 133 prompt tokens over ~2000 cached cells,
// with a cell list per token and with one list (full blocks over several
// chunks, a chunk boundary inside the run: at 1920 cells with the H200's 7
// chunks of 320, a block's rows before it have no cells in the last chunk).
// Returns how many cases ran.
int64_t expect_f16_form_matches_cpu(Context& ctx, const std::function<void()>& finish,
                                    std::span<const std::pair<GgmlType, GgmlType>> types, std::span<const Shape> shapes,
                                    unsigned seed, bool long_prompts) {
    std::mt19937 rng(seed);
    int64_t cases = 0;
    for (const auto& [tk, tv] : types)
        for (const Shape& s : shapes) {
            SCOPED_TRACE(label(tk, tv, s));
            const double bound = is_float(tk) ? 1e-2 : 4e-2;
            for (int64_t n : {1, 7, 4097}) {
                AttentionCase c(tk, tv, s, {{n - 1, 1}}, true, rng);
                EXPECT_LT(c.run(ctx), bound) << "decode over " << n << " cells";
                finish();
            }
            AttentionCase prefill(tk, tv, s, {{40, 37}, {300, 1}, {0, 20}}, true, rng);
            EXPECT_LT(prefill.run(ctx), bound) << "mixed prefill batch";
            finish();
            cases += 4;
            if (!long_prompts) continue;
            AttentionCase deep(tk, tv, s, {{2000, 133}}, false, rng);
            EXPECT_LT(deep.run(ctx), bound) << "133 prompt tokens over 2000 cached, a list per token";
            finish();
            AttentionCase shared(tk, tv, s, {{1900, 133}}, true, rng);
            EXPECT_LT(shared.run(ctx), bound) << "133 prompt tokens over 1900 cached, one list";
            finish();
            cases += 2;
        }
    return cases;
}

// The tensor-core form (the default, cuda_attention_mma.cu):
// Q, K, P and V rounded to f16, so it agrees with the CPU to f16 rounding
// (about 1e-3 on these O(1) outputs) rather than to float summation order.
TEST_F(CudaAttention, tensor_core_form_matches_cpu) {
    const AttentionForm mma("mma");
    const std::pair<GgmlType, GgmlType> types[] = {
        {GgmlType::F16, GgmlType::F16}, {GgmlType::Q8_0, GgmlType::Q8_0}, {GgmlType::Q4_0, GgmlType::Q4_0}};
    // Groups of 8, 1, 6 and 20 (more than the 16 rows of a block: two head
    // slices), and K and V heads of different sizes.
    const Shape shapes[] = {{32, 4, 128, 128}, {4, 4, 64, 64}, {12, 2, 128, 128}, {40, 2, 128, 128}, {8, 2, 128, 64}};
    const int64_t before = mma_attention_launches();
    const int64_t cases = expect_f16_form_matches_cpu(
        ctx_, [this] { finish(); }, types, shapes, 14, false);
    // Every case ran the tensor-core kernel, not the f32 fallback.
    EXPECT_EQ(mma_attention_launches() - before, cases);
}

// The tensor-core form with 64 query rows a block for prompts
// (MOESERVE_CUDA_MMA_ROWS=64): groups of 8, 1, 6, 20 and 4 (8, 64, 10, 3 and
// 16 tokens a block), prompts that fill several blocks, the last one partly.
TEST_F(CudaAttention, tensor_core_prompt_rows_match_cpu) {
    const AttentionForm mma("mma");
    const ScopedEnv rows("MOESERVE_CUDA_MMA_ROWS", "64");
    std::mt19937 rng(19);
    const std::pair<GgmlType, GgmlType> types[] = {{GgmlType::F16, GgmlType::F16}, {GgmlType::Q4_0, GgmlType::Q4_0}};
    const Shape shapes[] = {{32, 4, 128, 128}, {4, 4, 64, 64}, {12, 2, 128, 128}, {40, 2, 128, 128}, {8, 2, 128, 64}};
    const int64_t before = mma_prompt_row_launches();
    for (const auto& [tk, tv] : types)
        for (const Shape& s : shapes) {
            SCOPED_TRACE(label(tk, tv, s));
            const double bound = is_float(tk) ? 1e-2 : 4e-2;
            AttentionCase mixed(tk, tv, s, {{40, 37}, {300, 1}, {0, 20}}, true, rng);
            EXPECT_LT(mixed.run(ctx_), bound) << "mixed prefill batch";
            AttentionCase deep(tk, tv, s, {{2000, 133}}, true, rng);
            EXPECT_LT(deep.run(ctx_), bound) << "133 prompt tokens over 2000 cached";
            finish();
        }
    // Each case but one took 64 rows: the mixed batch's 58 tokens of a group of 1 fill less than a block.
    EXPECT_EQ(mma_prompt_row_launches() - before, 2 * (5 * 2 - 1));
}

// The FlashAttention-2 form (cuda_attention_fa2.cu) selected as `form`,
// its runs counted by `launches`: f16 products like the default tensor-core
// form, so its bounds; decode and prompts, groups of 8, 1, 6, 20 and 4 (8,
// 64, 10, 3 and 16 tokens a block), heads of 128 and 64.
void expect_fa2_form_matches_cpu(Context& ctx, const std::function<void()>& finish, const char* form,
                                 int64_t (*launches)(), unsigned seed) {
    const AttentionForm selected(form);
    const std::pair<GgmlType, GgmlType> types[] = {{GgmlType::F16, GgmlType::F16},
                                                   {GgmlType::Q8_0, GgmlType::Q8_0},
                                                   {GgmlType::Q4_0, GgmlType::Q4_0},
                                                   {GgmlType::F32, GgmlType::BF16}};
    const Shape shapes[] = {{32, 4, 128, 128}, {4, 4, 64, 64}, {12, 2, 128, 128}, {40, 2, 128, 128}, {8, 2, 64, 64}};
    const int64_t before = launches();
    const int64_t cases = expect_f16_form_matches_cpu(ctx, finish, types, shapes, seed, true);
    EXPECT_EQ(launches() - before, cases) << form;
}

TEST_F(CudaAttention, fa2_form_matches_cpu) {
    expect_fa2_form_matches_cpu(
        ctx_, [this] { finish(); }, "fa2", fa2_attention_launches, 20);
}

// The same with its tiles staged by cp.async in two buffers (MOESERVE_CUDA_ATTENTION=fa2p).
TEST_F(CudaAttention, pipelined_fa2_form_matches_cpu) {
    expect_fa2_form_matches_cpu(
        ctx_, [this] { finish(); }, "fa2p", fa2p_attention_launches, 22);
}

// A decode form selected by MOESERVE_CUDA_ATTENTION (form): every cache type
// pair, cell counts that leave partial runs, groups of 6 to 16 and the
// head-size pairs the decode forms take, several sequences at once; each
// case must run on that form (launches counts its runs). The forms compute
// in f32 like the f32 kernel, so the f32 kernel's bounds.
void expect_decode_form_matches_cpu(Context& ctx, const std::function<void()>& finish, const char* form,
                                    int64_t (*launches)(), unsigned seed) {
    const AttentionForm selected(form);
    std::mt19937 rng(seed);
    const int64_t launches_before = launches();
    int64_t expected = 0;
    for (GgmlType tk : kCacheTypes)
        for (GgmlType tv : kCacheTypes) {
            const Shape s{32, 4, 128, 128};
            SCOPED_TRACE(label(tk, tv, s));
            for (int64_t n : {1, 7, 4097}) {
                AttentionCase c(tk, tv, s, {{n - 1, 1}}, true, rng);
                EXPECT_LT(c.run(ctx), tolerance(tk)) << "decode over " << n << " cells";
                ++expected;
                finish();
            }
        }
    for (const Shape& s : {Shape{12, 2, 128, 128}, Shape{32, 2, 128, 128}, Shape{16, 2, 256, 256},
                           Shape{16, 2, 128, 256}, Shape{16, 2, 256, 128}}) {
        for (GgmlType t : {GgmlType::F16, GgmlType::Q4_0}) {
            SCOPED_TRACE(label(t, t, s));
            AttentionCase one(t, t, s, {{300, 1}}, true, rng);
            EXPECT_LT(one.run(ctx), tolerance(t)) << "decode over 301 cells";
            AttentionCase several(t, t, s, {{40, 1}, {1000, 1}, {0, 1}}, true, rng);
            EXPECT_LT(several.run(ctx), tolerance(t)) << "three sequences decoding";
            expected += 2;
            finish();
        }
    }
    EXPECT_EQ(launches() - launches_before, expected) << form;
}

// The decode form reading K and V rows into registers (cuda_attention_vec.cu).
TEST_F(CudaAttention, vec_form_matches_cpu) {
    expect_decode_form_matches_cpu(
        ctx_, [this] { finish(); }, "vec", vec_attention_launches, 15);
}

// The lane-per-cell decode form (cuda_attention_lane.cu).
TEST_F(CudaAttention, lane_form_matches_cpu) {
    expect_decode_form_matches_cpu(
        ctx_, [this] { finish(); }, "lane", lane_attention_launches, 16);
}

// The shared-memory tile decode form with two row buffers, the next tile's
// copies in flight during the current tile's work (cuda_attention_tile.cu).
TEST_F(CudaAttention, pipelined_tile_form_matches_cpu) {
    // Two row buffers: the cases' largest tiles (f32 rows of 128, f16 rows of
    // 256) take 110-146 KB, more than an sm_89 card allows a block (99 KB),
    // where the form falls back and the launch count below would not hold.
    if (ctx_.shared_mem_per_block_optin > 0 && ctx_.shared_mem_per_block_optin < 150 * 1024)
        GTEST_SKIP() << "the pipelined tiles need ~146 KB of shared memory a block";
    expect_decode_form_matches_cpu(
        ctx_, [this] { finish(); }, "tile2", tile2_attention_launches, 21);
}

// The shared-memory tile decode form (cuda_attention_tile.cu), with the
// shapes the other decode forms decline as well: a group of 16 over K heads
// of 256 values, and f32 rows of 256 (the largest tiles).
TEST_F(CudaAttention, tile_form_matches_cpu) {
    expect_decode_form_matches_cpu(
        ctx_, [this] { finish(); }, "tile", tile_attention_launches, 17);
    const AttentionForm selected("tile");
    std::mt19937 rng(18);
    const int64_t before = tile_attention_launches();
    const std::pair<GgmlType, Shape> cases[] = {{GgmlType::F16, Shape{32, 2, 256, 128}},
                                                {GgmlType::Q4_0, Shape{32, 2, 256, 128}},
                                                {GgmlType::F32, Shape{16, 2, 256, 256}}};
    for (const auto& [t, s] : cases) {
        SCOPED_TRACE(label(t, t, s));
        AttentionCase c(t, t, s, {{700, 1}, {64, 1}}, true, rng);
        EXPECT_LT(c.run(ctx_), tolerance(t)) << "two sequences decoding";
        finish();
    }
    // The f32 tile (~143 KB) fits an H100/H200 block, not an sm_89 one (99 KB), where it falls back.
    EXPECT_EQ(tile_attention_launches() - before, ctx_.shared_mem_per_block_optin >= 150 * 1024 ? 3 : 2);
}

// A rotated (quantized) K cache's queries: rotated and rounded in one launch
// (the decode fusion) or in two, bit for bit the same.
TEST_F(CudaAttention, rotated_queries_round_in_the_rotations_launch) {
    std::mt19937 rng(51);
    for (const GgmlType type_k : {GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::IQ4_NL}) {
        for (const auto [width, chunk] : {std::pair{128, 128}, std::pair{192, 64}, std::pair{576, 64}}) {
            SCOPED_TRACE(std::string(ggml_type_name(type_k)) + ", rows of " + std::to_string(width) + ", chunks of " +
                         std::to_string(chunk));
            const int64_t n_rows = 37;
            DeviceArray<float> q(normal_floats(n_rows * width, rng, 2.0f));
            const float* two = rotate_queries(ctx_, type_k, q.get(), n_rows, width, chunk, false);
            const float* one = rotate_queries(ctx_, type_k, q.get(), n_rows, width, chunk, true);
            std::vector<float> a(n_rows * width), b(n_rows * width);
            MOESERVE_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
            MOESERVE_CUDA_CHECK(cudaMemcpy(a.data(), two, a.size() * sizeof(float), cudaMemcpyDeviceToHost));
            MOESERVE_CUDA_CHECK(cudaMemcpy(b.data(), one, b.size() * sizeof(float), cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < a.size(); ++i)
                ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0)
                    << "value " << i << ": " << a[i] << " vs " << b[i];
            finish();
        }
    }
}

}  // namespace
}  // namespace moeserve::cuda::test
