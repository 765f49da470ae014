// Context shift (llama-server's --context-shift): dropping tokens from the
// middle of a sequence and re-rotating the keys after them gives the logits
// a fresh evaluation of the kept tokens at their new positions gives, up to
// the cache's rounding; architectures whose cache cannot do it say why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/engine.h"
#include "fixtures.h"
#include "quant/dequantize.h"

namespace moeserve {
namespace {

std::vector<int32_t> tokens(int n, int32_t start) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(start + (i * 13) % 150);
    return t;
}

EngineOptions options(const std::string& stem, const char* cache) {
    EngineOptions o;
    o.model_path = test::fixture("models/" + stem + ".gguf").string();
    o.n_threads = 2;
    o.n_ctx = 256;
    o.type_k = o.type_v = parse_cache_type(cache);
    return o;
}

// Keys of the first layer depend on their token and position only, so after
// a shift those of the moved tokens must be what a fresh evaluation of the
// kept tokens caches at their new positions, up to the cache's rounding (the
// later layers' keys also saw the dropped tokens: a shift keeps them, as
// llama.cpp's does). Values do not move.
TEST(ContextShift, moved_keys_are_the_keys_at_their_new_positions) {
    MOESERVE_REQUIRE_FIXTURES();
    const auto t = tokens(60, 5);
    std::vector<int32_t> kept(t.begin(), t.begin() + 10);
    kept.insert(kept.end(), t.begin() + 30, t.end());
    // Allowed RMS difference relative to the rows' RMS: f16 rounds twice; a
    // quantized row is re-quantized after the rotation.
    for (const auto& [cache, tolerance] : {std::pair{"f16", 2e-3}, std::pair{"q8_0", 3e-2}, std::pair{"q4_0", 0.25}}) {
        SCOPED_TRACE(cache);
        Engine shifted(options("qwen3moe-tiny-s1-f16", cache));
        ASSERT_EQ(shifted.model().context_shift_refusal(), "");
        shifted.eval(0, t, false);
        shifted.model().shift_context(shifted.cache(), 0, 10, 20);  // drop tokens 10..29
        ASSERT_EQ(shifted.cache().seq_length(0), 40);
        EXPECT_EQ(shifted.cache().n_free(), 256 - 40);
        Engine fresh(options("qwen3moe-tiny-s1-f16", cache));
        fresh.eval(0, kept, false);

        const KvCache& a = shifted.cache();
        const KvCache& b = fresh.cache();
        const int64_t n_k = a.config().n_embd_k[0];
        std::vector<float> ka(n_k), kb(n_k);
        double diff = 0, norm = 0;
        for (int64_t i = 0; i < 40; ++i) {
            dequantize_row(a.type_k(), a.k_row(0, a.seq_cells(0)[i]), ka.data(), n_k);
            dequantize_row(b.type_k(), b.k_row(0, b.seq_cells(0)[i]), kb.data(), n_k);
            for (int64_t j = 0; j < n_k; ++j) diff += (ka[j] - kb[j]) * (ka[j] - kb[j]), norm += kb[j] * kb[j];
            // The value rows of layer 0 are the same bytes: nothing rotates them.
            ASSERT_EQ(std::memcmp(a.v_row(0, a.seq_cells(0)[i]), b.v_row(0, b.seq_cells(0)[i]), a.v_row_bytes(0)), 0)
                << "token " << i;
        }
        EXPECT_LE(std::sqrt(diff / norm), tolerance);
        // Generation goes on from the shifted cache.
        const std::vector<float> logits = shifted.eval(0, std::vector<int32_t>{77}, false);
        EXPECT_EQ(static_cast<int64_t>(logits.size()), shifted.n_vocab());
        EXPECT_EQ(shifted.cache().seq_length(0), 41);
    }
}

TEST(ContextShift, caches_that_cannot_shift_say_why) {
    MOESERVE_REQUIRE_FIXTURES();
    Engine nemotron(options("nemotron-h-moe-tiny-s1-f16", "f16"));
    EXPECT_NE(nemotron.model().context_shift_refusal(), "");
    nemotron.eval(0, tokens(20, 5), false);
    EXPECT_THROW(nemotron.model().shift_context(nemotron.cache(), 0, 5, 5), std::runtime_error);
    EXPECT_EQ(nemotron.cache().seq_length(0), 20);  // nothing changed
    Engine glm(options("glm47flash-tiny-s1-f16", "f16"));
    EXPECT_NE(glm.model().context_shift_refusal(), "");
}

}  // namespace
}  // namespace moeserve
