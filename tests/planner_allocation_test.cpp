// The process allocates what the planner says: for the tiny fixture models
// and several flag combinations, the heap bytes an engine holds at its peak
// — constructing it, then one forward pass of the largest batch over a full
// cache — equal the plan's total less the mapped weights: at most 2% above it
// (the plan bounds the peak), and below it by at most one thread's share of
// the transient scratch (threads that do not overlap) plus 2%.
//
// Every heap allocation of this test binary is counted by the operator
// new/delete replacements below (sizes from malloc_usable_size).
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/bench_runner.h"
#include "engine/engine.h"
#include "fixtures.h"
#include "model/model.h"

namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

void* counted_alloc(std::size_t n) {
    void* p = std::malloc(n ? n : 1);
    if (!p) return nullptr;
    const int64_t now =
        g_current.fetch_add(static_cast<int64_t>(malloc_usable_size(p))) + static_cast<int64_t>(malloc_usable_size(p));
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return p;
}

// Over-aligned allocations (the CPU backend's cache-line scratch): counted the same way.
void* counted_aligned_alloc(std::size_t n, std::align_val_t align) {
    void* p = nullptr;
    if (posix_memalign(&p, static_cast<std::size_t>(align), n ? n : 1) != 0) return nullptr;
    const int64_t now =
        g_current.fetch_add(static_cast<int64_t>(malloc_usable_size(p))) + static_cast<int64_t>(malloc_usable_size(p));
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return p;
}

void counted_free(void* p) {
    if (!p) return;
    g_current.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)));
    std::free(p);
}

}  // namespace

void* operator new(std::size_t n) {
    if (void* p = counted_alloc(n)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return ::operator new(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return counted_alloc(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return counted_alloc(n);
}
void operator delete(void* p) noexcept {
    counted_free(p);
}
void operator delete[](void* p) noexcept {
    counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    counted_free(p);
}
void* operator new(std::size_t n, std::align_val_t a) {
    if (void* p = counted_aligned_alloc(n, a)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return ::operator new(n, a);
}
void operator delete(void* p, std::align_val_t) noexcept {
    counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    counted_free(p);
}

namespace moeserve {
namespace {

struct Config {
    const char* model;  // fixture stem
    const char* type_k;
    const char* type_v;
    int64_t n_ctx;
    int n_seq;
    int64_t n_ubatch;
    bool speculative = false;  // serve --spec-type: logits rows for guesses, hybrid rollback copies
};

std::ostream& operator<<(std::ostream& os, const Config& c) {
    return os << c.model << " -ctk " << c.type_k << " -ctv " << c.type_v << " -c " << c.n_ctx << " -np " << c.n_seq
              << " -ub " << c.n_ubatch << (c.speculative ? " --spec-type ngram-simple" : "");
}

bool supported(const std::string& arch) {
    for (const auto& a : supported_architectures())
        if (a == arch) return true;
    return false;
}

class PlannedVsAllocated : public ::testing::TestWithParam<Config> {};

TEST_P(PlannedVsAllocated, peak_heap_is_the_plan_within_2_percent_above_5_below) {
    MOESERVE_REQUIRE_FIXTURES();
    const Config c = GetParam();
    EngineOptions opt;
    opt.model_path = test::fixture(std::string("models/") + c.model + ".gguf").string();
    opt.n_threads = 2;
    opt.n_ctx = c.n_ctx;
    opt.n_seq = c.n_seq;
    opt.type_k = parse_cache_type(c.type_k);
    opt.type_v = parse_cache_type(c.type_v);
    opt.n_ubatch = c.n_ubatch;
    opt.speculative = c.speculative;
    {
        GgufFile f = GgufFile::open(opt.model_path);
        if (!supported(f.architecture()))
            GTEST_SKIP() << "architecture " << f.architecture() << " has no engine in this build yet";
    }

    const int64_t base = g_current.load();
    g_peak.store(base);
    uint64_t planned = 0, transient = 0;
    {
        Engine e(opt);
        planned = e.plan().allocated_bytes();
        transient = e.plan().workspace.transient;
        // The largest batch at the end of a full cache: every cell visible.
        const int64_t T = e.plan().n_tokens, depth = e.cache().n_cells() - T;
        fill_cache_synthetic(e.cache(), 0, depth);
        Batch batch;
        for (int64_t i = 0; i < T; ++i)
            batch.add(static_cast<int32_t>(i % 200), static_cast<int32_t>(depth + i), 0, i >= T - e.plan().n_outputs);
        std::vector<float> logits = e.model().forward(batch, e.cache());
        ASSERT_EQ(static_cast<int64_t>(logits.size()), e.plan().n_outputs * e.n_vocab());
    }
    const uint64_t allocated = static_cast<uint64_t>(g_peak.load() - base);
    const double ratio = static_cast<double>(allocated) / static_cast<double>(planned);
    // The plan is the peak with every thread's transient scratch (the
    // attention's) alive at once. Threads run their static chunks
    // concurrently, but on a loaded machine one may finish (and free) before
    // the other starts, which lowers the measured peak by up to one of the
    // two threads' share of the transient (6% with -ub 64 here); never
    // raises it. Below that, 2% of slack.
    const double floor = (static_cast<double>(planned) - transient / 2.0) / static_cast<double>(planned) - 0.02;
    RecordProperty("ratio", std::to_string(ratio));
    RecordProperty("floor", std::to_string(floor));
    EXPECT_LE(ratio, 1.02) << c << ": planned " << planned << " B, allocated at peak " << allocated << " B";
    EXPECT_GE(ratio, floor) << c << ": planned " << planned << " B (" << transient
                            << " B transient), allocated at peak " << allocated << " B";
}

INSTANTIATE_TEST_SUITE_P(TinyModels, PlannedVsAllocated,
                         ::testing::Values(Config{"qwen3moe-tiny-s1-f16", "f16", "f16", 4096, 1, 512},
                                           Config{"qwen3moe-tiny-s1-q4_k_m", "q8_0", "q8_0", 8192, 4, 256},
                                           Config{"qwen3moe-tiny-s1-iq4_xs", "q4_0", "q4_0", 2048, 2, 512},
                                           Config{"qwen3moe-tiny-s1-q8_0", "f16", "q4_0", 4096, 1, 64},
                                           Config{"qwen3moe-tiny-s1-iq4_xs", "q4_0", "q4_0", 8192, 1, 1},
                                           Config{"glm47flash-tiny-s1-q4_k_m", "f16", "f16", 4096, 1, 512},
                                           Config{"glm47flash-tiny-s1-f16", "q8_0", "q8_0", 8192, 2, 256},
                                           Config{"nemotron-h-moe-tiny-s1-q4_k_m", "f16", "f16", 8192, 1, 512},
                                           Config{"nemotron-h-moe-tiny-s1-iq4_xs", "q4_0", "q4_0", 16384, 4, 256},
                                           Config{"qwen3moe-tiny-s1-q8_0", "q4_0", "q4_0", 4096, 2, 512, true},
                                           Config{"nemotron-h-moe-tiny-s1-q8_0", "f16", "f16", 4096, 2, 512, true}));

}  // namespace
}  // namespace moeserve
