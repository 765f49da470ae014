// Flash-decoding on tensor cores: the form of flash_attention
// (cuda_attention.cu) that llama.cpp's CUDA kernels take, with Q, K, P and V
// in f16 and f32 accumulation. The default wherever the head sizes allow:
// on the first H100 run it was faster than the f32 kernel in every row of
// gpu-check's benchmark (decode 1.2-1.3x, prefill at 32K depth 4.7-8.7x;
// bench/README.md). MOESERVE_CUDA_ATTENTION=f32 keeps the f32 kernel.
//
// A block takes the same work as the f32 kernel (a run of tokens sharing a
// cell list, a slice of one KV head's query heads, one chunk of the cells),
// but at most 16 query rows, one WMMA row tile (64, four row tiles, for a
// prompt with MOESERVE_CUDA_MMA_ROWS=64). Per tile of 32 cells: the K (and
// V) rows are converted to f16 in shared memory; S = Q·Kᵀ is two 16x16
// output tiles per row tile over dk/16 steps, one a warp; the online softmax
// runs one warp per row as in the f32 kernel and writes P in f16; the
// running output O (f32, shared memory) is rescaled per row and O += P·V
// runs as dv/16 output tiles per row tile spread over the warps. Shared-memory traffic per cell drops
// from ~2 reads per multiply-add to a few per 16x16x16 product.
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_attention_block.cuh"
#include "backend/cuda/cuda_attention_f16_tiles.cuh"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_kv_blocks.cuh"
#include "backend/cuda/cuda_launch.cuh"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kDecodeRows = 16;  // query rows per block: one WMMA row tile
constexpr int kPromptRows = 64;  // ... or four, for prompts (MOESERVE_CUDA_MMA_ROWS=64)
constexpr int kTileCells = 32;   // cells per tile: one per lane in the softmax
constexpr int kPadH = 8;         // halves of padding per f16 row (16-byte rows, spread banks)
constexpr int kPadF = 4;         // floats of padding per f32 row

struct MmaArgs {
    FlashAttention a;
    int group, heads_per_block, head_splits, tokens_per_tile;
    int64_t chunk_len;
    float* part;      // [n_chunks][n_tokens][n_head][dv + 2]: m, l, acc
    bool wide_loads;  // load_tile_f16's 16-byte paths (off with MOESERVE_CUDA_TILE_LOADS=0)
    bool split_q;     // Q as an f16 pair hi + lo (see flash_attention_mma)
    bool split_p;     // P likewise
};

// Shared-memory layout (bytes), every piece on a 32-byte boundary as WMMA's
// loads and stores need.
struct MmaLayout {
    size_t q, ql, k, v, s, p, pl, o, stats, total;
    int ldq, ldk, ldv, lds, ldp, ldo;
};

__host__ __device__ inline size_t round32(size_t n) {
    return (n + 31) / 32 * 32;
}

// rows: the block's query rows (kDecodeRows or kPromptRows).
__host__ __device__ inline MmaLayout mma_layout(int dk, int dv, bool v_in_k, bool split_q, bool split_p, int rows) {
    MmaLayout l{};
    l.ldq = dk + kPadH;
    l.ldk = dk + kPadH;
    l.ldv = dv + kPadH;
    l.lds = kTileCells + kPadF;
    l.ldp = kTileCells + kPadH;
    l.ldo = dv + kPadF;
    size_t at = 0;
    l.q = at, at = round32(at + sizeof(__half) * rows * l.ldq);
    l.ql = at, at = round32(at + (split_q ? sizeof(__half) * rows * l.ldq : 0));
    l.k = at, at = round32(at + sizeof(__half) * kTileCells * l.ldk);
    l.v = at, at = round32(at + (v_in_k ? 0 : sizeof(__half) * kTileCells * l.ldv));
    l.s = at, at = round32(at + sizeof(float) * rows * l.lds);
    l.p = at, at = round32(at + sizeof(__half) * rows * l.ldp);
    l.pl = at, at = round32(at + (split_p ? sizeof(__half) * rows * l.ldp : 0));
    l.o = at, at = round32(at + sizeof(float) * rows * l.ldo);
    l.stats = at, at = round32(at + sizeof(float) * 4 * rows);
    l.total = at;
    return l;
}

// ROWS: query rows per block, a multiple of 16 (ROWS / 16 WMMA row tiles).
// grid: (n_tokens, n_head_kv * head_splits, n_chunks).
template <int ROWS>
__global__ void __launch_bounds__(kThreads) attention_mma_kernel(MmaArgs args) {
    kernel_prologue();
    using namespace nvcuda;
    const FlashAttention& a = args.a;
    const AttentionBlock blk =
        attention_block(a, args.tokens_per_tile, args.head_splits, args.heads_per_block, args.group, args.chunk_len);
    if (!blk.leads) return;
    const int64_t t0 = blk.t0;
    const int nt = blk.nt, kvh = blk.kvh, head0 = blk.head0, nh = blk.nh;
    constexpr int kRowTiles = ROWS / 16;
    const int R = nt * nh;  // query rows r = lt * nh + jh, at most ROWS
    const int dk = a.dk, dv = a.dv;

    extern __shared__ __align__(128) unsigned char smem[];
    const MmaLayout L = mma_layout(dk, dv, a.v_in_k, args.split_q, args.split_p, ROWS);
    __half* Qh = reinterpret_cast<__half*>(smem + L.q);
    __half* Ql = reinterpret_cast<__half*>(smem + L.ql);  // with split_q: q - Qh, rounded to f16
    __half* Kh = reinterpret_cast<__half*>(smem + L.k);
    __half* Vh = a.v_in_k ? Kh : reinterpret_cast<__half*>(smem + L.v);
    const int ldvh = a.v_in_k ? L.ldk : L.ldv;
    float* Sf = reinterpret_cast<float*>(smem + L.s);
    __half* Ph = reinterpret_cast<__half*>(smem + L.p);
    __half* Pl = reinterpret_cast<__half*>(smem + L.pl);  // with split_p: p - Ph, rounded to f16
    float* Of = reinterpret_cast<float*>(smem + L.o);
    float* m_s = reinterpret_cast<float*>(smem + L.stats);
    float* l_s = m_s + ROWS;
    float* corr_s = l_s + ROWS;
    int* ncell_s = reinterpret_cast<int*>(corr_s + ROWS);

    // Q rows times the scale (zeros past R), O = 0, running statistics.
    // Scaling before the f16 rounding keeps large queries (MLA's absorbed
    // ones) in f16's range, as llama.cpp does.
    for (int i = threadIdx.x; i < ROWS * dk; i += blockDim.x) {
        const int r = i / dk, d = i % dk;
        float q = 0.0f;
        if (r < R) {
            const int64_t t = t0 + r / nh;
            const int h = kvh * args.group + head0 + r % nh;
            q = a.q[(t * a.n_head + h) * dk + d] * a.scale;
        }
        const __half hi = __float2half_rn(q);
        Qh[r * L.ldq + d] = hi;
        if (args.split_q) Ql[r * L.ldq + d] = __float2half_rn(q - __half2float(hi));
    }
    for (int i = threadIdx.x; i < ROWS * dv; i += blockDim.x) Of[(i / dv) * L.ldo + i % dv] = 0.0f;
    for (int r = threadIdx.x; r < ROWS; r += blockDim.x) {
        m_s[r] = -INFINITY;
        l_s[r] = 0.0f;
        corr_s[r] = 1.0f;
        ncell_s[r] = r < R ? a.cells.n_cells[t0 + r / nh] : 0;
    }

    const int32_t* cells = blk.cells;
    const int64_t c_begin = blk.c_begin, c_end = blk.c_end;
    const size_t k_head_off = blk.k_head_off, v_head_off = blk.v_head_off;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    for (int64_t c0 = c_begin; c0 < c_end; c0 += kTileCells) {
        const int nc = static_cast<int>(min(static_cast<int64_t>(kTileCells), c_end - c0));
        __syncthreads();  // the previous tile's K/V/P/O work is done (and Q/O/stats written)
        load_tile_f16<kTileCells>(a.k, a.k_row_bytes, k_head_off, a.type_k, dk, cells + c0, nc, Kh, L.ldk,
                                  args.wide_loads);
        if (!a.v_in_k)
            load_tile_f16<kTileCells>(a.v, a.v_row_bytes, v_head_off, a.type_v, dv, cells + c0, nc, Vh, L.ldv,
                                      args.wide_loads);
        __syncthreads();
        // S = Q·Kᵀ in 16x16 output tiles (row tile i, cells 16j..16j+15), one
        // per warp: with 16 rows warps 0 and 1 take them, with 64 all 8.
        for (int w = warp; w < kRowTiles * (kTileCells / 16); w += kWarps) {
            const int i = w / (kTileCells / 16), j = w % (kTileCells / 16);
            if (16 * i >= R) continue;  // rows past the block's queries: not needed (the same for the warp)
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
            wmma::fill_fragment(s, 0.0f);
            for (int kk = 0; kk < dk; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kb;  // B[d][c] = K[c][d]
                wmma::load_matrix_sync(qa, Qh + 16 * i * L.ldq + kk, L.ldq);
                wmma::load_matrix_sync(kb, Kh + j * 16 * L.ldk + kk, L.ldk);
                wmma::mma_sync(s, qa, kb, s);
                if (args.split_q) {  // + Q's low half times the same K
                    wmma::load_matrix_sync(qa, Ql + 16 * i * L.ldq + kk, L.ldq);
                    wmma::mma_sync(s, qa, kb, s);
                }
            }
            wmma::store_matrix_sync(Sf + 16 * i * L.lds + j * 16, s, L.lds, wmma::mem_row_major);
        }
        __syncthreads();
        // Online softmax, one warp per row, one lane per cell; P in f16.
        for (int r = warp; r < ROWS; r += kWarps) {
            const bool live = r < R && lane < nc && c0 + lane < ncell_s[r];
            const float s = live ? Sf[r * L.lds + lane] : -INFINITY;
            const float m_old = m_s[r];
            float m_new = s;
            for (int o = 16; o > 0; o >>= 1) m_new = fmaxf(m_new, __shfl_xor_sync(0xffffffffu, m_new, o));
            m_new = fmaxf(m_old, m_new);
            float p = 0.0f, corr = 1.0f;
            if (m_new != -INFINITY) {
                p = __expf(s - m_new);  // 0 for s = -inf
                corr = __expf(m_old - m_new);
            }
            float sum = p;
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            const __half p_hi = __float2half_rn(p);
            Ph[r * L.ldp + lane] = p_hi;
            if (args.split_p) Pl[r * L.ldp + lane] = __float2half_rn(p - __half2float(p_hi));
            __syncwarp();  // every lane has read m_s[r] before lane 0 replaces it (racecheck)
            if (lane == 0) {
                l_s[r] = l_s[r] * corr + sum;
                m_s[r] = m_new;
                corr_s[r] = corr;
            }
        }
        __syncthreads();
        // O = O * corr (per row), then O += P·V in 16-column tiles spread over the warps.
        for (int i = threadIdx.x; i < ROWS * dv; i += blockDim.x) Of[(i / dv) * L.ldo + i % dv] *= corr_s[i / dv];
        __syncthreads();
        // O += P·V in 16x16 output tiles (row tile i, values 16n..16n+15) spread over the warps.
        for (int w = warp; w < kRowTiles * (dv / 16); w += kWarps) {
            const int i = w / (dv / 16), n = w % (dv / 16);
            if (16 * i >= R) continue;  // rows past the block's queries stay 0
            float* o_tile = Of + 16 * i * L.ldo + n * 16;
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            wmma::load_matrix_sync(o, o_tile, L.ldo, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kTileCells; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vb;  // B[c][j] = V[c][j]
                wmma::load_matrix_sync(pa, Ph + 16 * i * L.ldp + kk, L.ldp);
                wmma::load_matrix_sync(vb, Vh + kk * ldvh + n * 16, ldvh);
                wmma::mma_sync(o, pa, vb, o);
                if (args.split_p) {  // + P's low half times the same V
                    wmma::load_matrix_sync(pa, Pl + 16 * i * L.ldp + kk, L.ldp);
                    wmma::mma_sync(o, pa, vb, o);
                }
            }
            wmma::store_matrix_sync(o_tile, o, L.ldo, wmma::mem_row_major);
        }
    }
    __syncthreads();
    // The chunk's partial state per row, in the f32 kernel's layout.
    const int64_t chunk_base = static_cast<int64_t>(blockIdx.z) * a.n_tokens;
    for (int i = threadIdx.x; i < R * (dv + 2); i += blockDim.x) {
        const int r = i / (dv + 2), j = i % (dv + 2);
        const int64_t t = t0 + r / nh;
        const int h = kvh * args.group + head0 + r % nh;
        float* p = args.part + ((chunk_base + t) * a.n_head + h) * static_cast<int64_t>(dv + 2);
        p[j] = j == 0 ? m_s[r] : j == 1 ? l_s[r] : Of[r * L.ldo + (j - 2)];
    }
}

std::atomic<int64_t> g_launches{0};
std::atomic<int64_t> g_prompt_launches{0};

// The query rows a prompt's block takes: 64 with MOESERVE_CUDA_MMA_ROWS=64
// (opt-in until a GPU run has checked and timed it), else 16. Read at every
// call, so that tests can switch.
int prompt_rows() {
    const char* v = std::getenv("MOESERVE_CUDA_MMA_ROWS");
    return v && std::string(v) == "64" ? kPromptRows : kDecodeRows;
}

}  // namespace

// Whether the tile loader takes 16-byte pieces (the same halves either way):
// on unless MOESERVE_CUDA_TILE_LOADS=0, which keeps the per-value loader for
// comparison. Read once.
bool attention_wide_tile_loads() {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_TILE_LOADS");
        return !(v && std::string(v) == "0");
    }();
    return on;
}

// Whether Q (MLA) and P go in as f16 pairs (flash_attention_mma): on unless
// MOESERVE_CUDA_MMA_PAIRS=0, which keeps one f16 product each, for measuring
// what the pairs cost. Read once.
bool attention_f16_pairs() {
    static const bool on = [] {
        const char* v = std::getenv("MOESERVE_CUDA_MMA_PAIRS");
        return !(v && std::string(v) == "0");
    }();
    return on;
}

bool flash_attention_mma(Context& ctx, const FlashAttention& a) {
    if (a.dk % 16 != 0 || a.dv % 16 != 0) return false;
    if (a.v_in_k && a.dv > a.dk) return false;
    // The probabilities go in as f16 pairs, hi + lo (two products instead of
    // one): rounded to f16 once, each p is off by up to 2^-11 of itself, and
    // which way depends on the running maximum it was taken against, which
    // differs between a prompt's tiles and a decoded token's (chunked prompts
    // were 1.4e-4 in mean KL from the same tokens one at a time on the H200,
    // Qwen3 with a q4_0 cache, bound 1e-4). MLA's queries go in as pairs too:
    // rounded to f16 once they moved GLM-4.7-Flash's Q4_K_M logits 2.3e-3 in
    // mean KL on the CPU (docs/cuda.md). Other models' queries keep one
    // product (rounded the same way for every token, as llama.cpp's CUDA
    // kernels round them).
    bool split_q = a.v_in_k && attention_f16_pairs();
    const bool split_p = attention_f16_pairs();
    const size_t limit = ctx.shared_mem_per_block_optin;
    const auto fits = [limit](const MmaLayout& l) { return limit == 0 || l.total <= limit; };
    // A prompt's block takes 64 query rows where asked for and they fit: each
    // K/V tile it loads then serves four times the rows.
    const int group = a.n_head / a.n_head_kv;
    int rows = kDecodeRows;
    const int64_t run = a.cells.max_run > 0 ? a.cells.max_run : a.n_tokens;  // tokens a block can take
    if (prompt_rows() == kPromptRows && run * std::min(group, kPromptRows) >= kPromptRows &&
        fits(mma_layout(a.dk, a.dv, a.v_in_k, split_q, split_p, kPromptRows)))
        rows = kPromptRows;
    MmaLayout L = mma_layout(a.dk, a.dv, a.v_in_k, split_q, split_p, rows);
    if (split_q && !fits(L)) {  // MLA on a card with ~99 KiB a block (sm_86/89): Q in one
        split_q = false;
        L = mma_layout(a.dk, a.dv, a.v_in_k, split_q, split_p, rows);
    }
    if (!fits(L)) return false;

    MmaArgs args{};
    args.a = a;
    args.group = group;
    args.wide_loads = attention_wide_tile_loads();
    args.split_q = split_q, args.split_p = split_p;
    args.head_splits = (args.group + rows - 1) / rows;
    args.heads_per_block = (args.group + args.head_splits - 1) / args.head_splits;
    args.tokens_per_tile = std::max(1, rows / args.heads_per_block);
    const int64_t est_blocks = (a.n_tokens + args.tokens_per_tile - 1) / args.tokens_per_tile *
                               static_cast<int64_t>(a.n_head_kv) * args.head_splits;
    const AttentionChunks chunks = plan_attention_chunks(ctx, a, est_blocks, kTileCells);
    args.chunk_len = chunks.chunk_len;
    args.part = chunks.part;

    const dim3 grid(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(a.n_head_kv * args.head_splits),
                    static_cast<unsigned>(chunks.n_chunks));
    if (rows == kPromptRows) {
        raise_dynamic_smem_limit(reinterpret_cast<const void*>(attention_mma_kernel<kPromptRows>), L.total);
        launch_kernel(attention_mma_kernel<kPromptRows>, grid, kThreads, L.total, ctx.stream, args);
        g_prompt_launches.fetch_add(1, std::memory_order_relaxed);
    } else {
        raise_dynamic_smem_limit(reinterpret_cast<const void*>(attention_mma_kernel<kDecodeRows>), L.total);
        launch_kernel(attention_mma_kernel<kDecodeRows>, grid, kThreads, L.total, ctx.stream, args);
    }
    MOESERVE_CUDA_CHECK_LAUNCH();
    combine_attention_chunks(ctx, a, chunks);
    g_launches.fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t mma_attention_launches() {
    return g_launches.load(std::memory_order_relaxed);
}

int64_t mma_prompt_row_launches() {
    return g_prompt_launches.load(std::memory_order_relaxed);
}

}  // namespace moeserve::cuda
