// The continuous-batching scheduler driven directly (no HTTP), on the
// built-in demo model: batch composition under the token budget, decoding
// that keeps going while a long prompt is evaluated, the queue bound, prompt
// prefix reuse, context limits, stop strings, cancellation and KV exhaustion.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "demo_model.h"
#include "engine/engine.h"
#include "engine/scheduler.h"
#include "engine/stop_strings.h"
#include "fixtures.h"
#include "synth/synth_model.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

std::string demo_model() {
    static const std::string path = test::demo_model_file("server-scheduler-demo");
    return path;
}

struct Rig {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<Scheduler> scheduler;

    Rig(int n_slots, int64_t c, bool unified, int64_t n_batch, size_t max_queue = 64,
        const std::string& model = demo_model(), size_t cache_ram_bytes = 0, int64_t checkpoint_min_step = 8192) {
        SchedulerOptions so;
        so.cache_ram_bytes = cache_ram_bytes;
        so.checkpoint_min_step = checkpoint_min_step;
        so.layout = compute_slot_layout(c, 4096, n_slots, unified);
        so.n_batch = n_batch;
        so.n_ubatch = 64;
        so.max_queue = max_queue;
        EngineOptions eo;
        eo.model_path = model;
        eo.n_threads = 2;
        eo.n_ctx = so.layout.n_cells;
        eo.n_seq = n_slots;
        engine = std::make_unique<Engine>(eo);
        tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_file(model));
        scheduler = std::make_unique<Scheduler>(engine->model(), engine->cache(), *tokenizer, so);
    }
};

GenerationRequest greedy(std::vector<int32_t> prompt, int64_t n_predict) {
    GenerationRequest rq;
    rq.prompt = std::move(prompt);
    rq.n_predict = n_predict;
    rq.sampling.temperature = 0.0f;
    rq.ignore_eos = true;
    return rq;
}

std::vector<int32_t> tokens(int n, int32_t start = 10) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(start + (i * 7) % 200);
    return t;
}

struct Collected {
    bool started = false;
    bool done = false;
    bool error = false;
    std::string text;
    std::vector<int32_t> tokens;
    GenerationResult result;
    std::string message;
    std::vector<PromptProgress> progress;
    int slot = -1;  // where it started
    std::vector<Timings> token_timings;
};

void drain(GenerationStream& s, Collected& c) {
    while (auto e = s.next(std::chrono::milliseconds(0))) {
        switch (e->kind) {
            case GenerationEvent::Kind::started:
                c.started = true;
                c.slot = e->slot;
                break;
            case GenerationEvent::Kind::progress:
                c.progress.push_back(e->progress);
                break;
            case GenerationEvent::Kind::token:
                c.text += e->text;
                c.tokens.push_back(e->token);
                c.token_timings.push_back(e->timings);
                break;
            case GenerationEvent::Kind::done:
                c.done = true;
                c.result = e->result;
                break;
            case GenerationEvent::Kind::error:
                c.error = true;
                c.message = e->message;
                break;
        }
    }
}

Collected run_one(Scheduler& s, GenerationRequest rq) {
    auto stream = std::make_shared<GenerationStream>();
    s.submit({std::move(rq)}, stream);
    Collected c;
    for (int i = 0; i < 10000 && !c.done && !c.error; ++i) {
        s.step();
        drain(*stream, c);
    }
    return c;
}

// Steps until both requests are done (or an error ends one).
void run_both(Scheduler& s, GenerationStream& sa, Collected& a, GenerationStream& sb, Collected& b) {
    for (int i = 0; i < 10000 && !((a.done || a.error) && (b.done || b.error)); ++i) {
        s.step();
        drain(sa, a);
        drain(sb, b);
    }
}

TEST(ServerScheduler, slot_layout_matches_llama_server) {
    auto a = compute_slot_layout(8192, 40960, 4, false);
    EXPECT_EQ(a.n_ctx_slot, 2048);
    EXPECT_EQ(a.n_cells, 8192);
    auto b = compute_slot_layout(8192, 40960, 4, true);
    EXPECT_EQ(b.n_ctx_slot, 8192);
    EXPECT_EQ(b.n_cells, 8192);
    auto c = compute_slot_layout(10000, 40960, 3, false);
    EXPECT_EQ(c.n_ctx_seq, 3584);
    EXPECT_EQ(c.n_cells, 10752);
    auto d = compute_slot_layout(0, 4096, 4, true);  // -c 0: the training context
    EXPECT_EQ(d.n_ctx_slot, 4096);
    auto e = compute_slot_layout(100000, 4096, 1, false);  // capped at the training context
    EXPECT_EQ(e.n_ctx_slot, 4096);
    EXPECT_EQ(e.n_cells, 100096);
    EXPECT_THROW(compute_slot_layout(4096, 4096, 0, false), std::invalid_argument);
}

TEST(ServerScheduler, batch_mixes_decode_tokens_and_prompt_chunks_under_the_budget) {
    Rig rig(4, 4096, false, /*n_batch=*/32);
    Scheduler& s = *rig.scheduler;
    auto a = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(5), 50)}, a);
    s.step();  // a's prompt
    s.step();  // a decodes
    auto b = std::make_shared<GenerationStream>();
    auto c = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(100, 20), 5)}, b);
    s.submit({greedy(tokens(100, 30), 5)}, c);
    ASSERT_TRUE(s.step());
    StepRecord r = s.last_step();
    EXPECT_EQ(r.n_decode, 1);
    EXPECT_EQ(r.n_decode + r.n_prompt, 32);
    EXPECT_GE(r.n_prompt_slots, 1);
    for (int i = 0; i < 20; ++i) {
        ASSERT_TRUE(s.step());
        r = s.last_step();
        EXPECT_LE(r.n_decode + r.n_prompt, 32);
    }
}

TEST(ServerScheduler, long_prefill_does_not_starve_decoding) {
    Rig rig(2, 4096, false, /*n_batch=*/64);
    Scheduler& s = *rig.scheduler;
    auto a = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(4), 200)}, a);
    s.step();
    s.step();
    Collected ca;
    drain(*a, ca);
    const size_t before = ca.tokens.size();
    auto b = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(1500, 40), 3)}, b);  // 24 steps of prompt at 63 tokens each
    int steps_with_prefill = 0;
    for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(s.step());
        const StepRecord r = s.last_step();
        EXPECT_EQ(r.slot_tokens[0], 1) << "the decoding slot got no token in step " << i;
        steps_with_prefill += r.n_prompt > 0;
        EXPECT_LE(r.n_prompt, 63);
    }
    EXPECT_EQ(steps_with_prefill, 10);
    drain(*a, ca);
    EXPECT_EQ(ca.tokens.size(), before + 10);  // one token per step while b's prompt is evaluated
}

TEST(ServerScheduler, queue_is_bounded) {
    Rig rig(1, 1024, false, 64, /*max_queue=*/2);
    Scheduler& s = *rig.scheduler;
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (int i = 0; i < 3; ++i) {  // one takes the slot, two wait
        streams.push_back(std::make_shared<GenerationStream>());
        s.submit({greedy(tokens(4), 10)}, streams.back());
    }
    auto extra = std::make_shared<GenerationStream>();
    try {
        s.submit({greedy(tokens(4), 10)}, extra);
        FAIL() << "a fourth request should be refused";
    } catch (const SubmitError& e) {
        EXPECT_EQ(e.status, 503);
        EXPECT_EQ(e.type, "unavailable_error");
    }
    EXPECT_EQ(s.stats().n_queued, 3);
    s.step();  // admits one
    EXPECT_EQ(s.stats().n_queued, 2);
    EXPECT_EQ(s.stats().n_processing, 1);
}

// A request pinned to a slot (id_slot) takes that slot when it frees, before an older
// request that could use any slot (spec §6.2: "a task pinned to the released slot goes first").
TEST(ServerScheduler, a_freed_slot_goes_to_the_request_pinned_to_it_first) {
    Rig rig(2, 1024, false, 64);
    Scheduler& s = *rig.scheduler;
    auto a = std::make_shared<GenerationStream>(), b = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(4), 100)}, a);
    s.submit({greedy(tokens(4, 50), 100)}, b);
    s.step();  // a and b take the two slots
    auto older = std::make_shared<GenerationStream>(), pinned = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(4, 90), 3)}, older);
    GenerationRequest rq = greedy(tokens(4, 120), 3);
    Collected ca;
    drain(*a, ca);
    ASSERT_TRUE(ca.started);
    rq.id_slot = ca.slot;
    s.submit({rq}, pinned);
    a->cancel();  // a's slot frees at the next step
    s.step();
    Collected cp, co;
    drain(*pinned, cp);
    drain(*older, co);
    EXPECT_TRUE(cp.started);
    EXPECT_EQ(cp.slot, ca.slot);
    EXPECT_FALSE(co.started);
    EXPECT_EQ(s.stats().n_queued, 1);
}

TEST(ServerScheduler, queued_requests_start_when_a_slot_frees) {
    Rig rig(1, 1024, false, 64);
    Scheduler& s = *rig.scheduler;
    auto a = std::make_shared<GenerationStream>();
    auto b = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(4), 3)}, a);
    s.submit({greedy(tokens(6, 50), 3)}, b);
    Collected ca, cb;
    for (int i = 0; i < 50 && !(ca.done && cb.done); ++i) {
        s.step();
        drain(*a, ca);
        drain(*b, cb);
        if (!ca.done) EXPECT_FALSE(cb.started);
    }
    EXPECT_TRUE(ca.done);
    EXPECT_TRUE(cb.done);
    EXPECT_EQ(cb.tokens.size(), 3u);
}

TEST(ServerScheduler, reuses_the_cached_prompt_prefix) {
    Rig rig(1, 1024, false, 512);
    Scheduler& s = *rig.scheduler;
    auto first = run_one(s, greedy(tokens(40), 4));
    ASSERT_TRUE(first.done);
    EXPECT_EQ(first.result.timings.cache_n, 0);
    auto prompt = tokens(40);
    prompt.insert(prompt.end(), {5, 6, 7});
    auto second = run_one(s, greedy(prompt, 4));
    ASSERT_TRUE(second.done);
    EXPECT_EQ(second.result.timings.cache_n, 40);
    EXPECT_EQ(second.result.timings.prompt_n, 3);
    // The same prompt again: everything but its last token is reused.
    auto third = run_one(s, greedy(prompt, 4));
    EXPECT_EQ(third.result.timings.cache_n, 42);
    EXPECT_EQ(third.result.timings.prompt_n, 1);
    EXPECT_EQ(third.tokens, second.tokens);  // greedy: reuse changes nothing
    GenerationRequest no_cache = greedy(prompt, 4);
    no_cache.cache_prompt = false;
    auto fourth = run_one(s, no_cache);
    EXPECT_EQ(fourth.result.timings.cache_n, 0);
    EXPECT_EQ(fourth.tokens, second.tokens);
}

// return_progress (llama-server's prompt_progress): one event when the slot
// takes the request, then one per evaluated chunk of the prompt, counting the
// reused prefix as cache; each token event carries the timings so far.
TEST(ServerScheduler, prompt_progress_and_timings_so_far) {
    Rig rig(1, 1024, false, /*n_batch=*/32);
    Scheduler& s = *rig.scheduler;
    GenerationRequest rq = greedy(tokens(100), 3);
    rq.return_progress = true;
    auto first = run_one(s, rq);
    ASSERT_TRUE(first.done);
    ASSERT_EQ(first.progress.size(), 5u);  // at the start, then chunks of 32, 32, 32, 4
    const int64_t processed[] = {0, 32, 64, 96, 100};
    for (size_t i = 0; i < first.progress.size(); ++i) {
        EXPECT_EQ(first.progress[i].total, 100);
        EXPECT_EQ(first.progress[i].cache, 0);
        EXPECT_EQ(first.progress[i].processed, processed[i]);
        if (i > 0) EXPECT_GE(first.progress[i].time_ms, first.progress[i - 1].time_ms);
    }
    ASSERT_EQ(first.token_timings.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(first.token_timings[i].prompt_n, 100);
        EXPECT_EQ(first.token_timings[i].predicted_n, static_cast<int64_t>(i + 1));
    }
    EXPECT_EQ(first.token_timings.back().prompt_ms, first.result.timings.prompt_ms);

    // The same prompt and 10 more tokens (not the answer's first): 100 reused, 10 evaluated in one chunk.
    auto longer = tokens(100);
    longer.insert(longer.end(), 10, first.tokens[0] == 7 ? 8 : 7);
    rq.prompt = longer;
    auto second = run_one(s, rq);
    ASSERT_EQ(second.progress.size(), 2u);
    EXPECT_EQ(second.progress[0].cache, 100);
    EXPECT_EQ(second.progress[0].processed, 100);
    EXPECT_EQ(second.progress[1].processed, 110);
    EXPECT_EQ(second.progress[1].total, 110);

    rq.return_progress = false;
    EXPECT_TRUE(run_one(s, rq).progress.empty());
}

// The RAM prompt cache (--cache-ram): a conversation that lost its slot to
// another one is saved, and loaded back when it returns; the answer is the
// one a fresh evaluation gives.
TEST(ServerScheduler, ram_prompt_cache_brings_back_a_conversation_that_lost_its_slot) {
    Rig rig(1, 1024, false, 512, 64, demo_model(), size_t{64} << 20);
    Scheduler& s = *rig.scheduler;
    const auto a = tokens(60);
    auto first = run_one(s, greedy(a, 4));
    ASSERT_TRUE(first.done);
    auto other = run_one(s, greedy(tokens(50, 30), 4));  // takes the only slot: the first is saved
    ASSERT_TRUE(other.done);
    EXPECT_EQ(other.result.timings.cache_n, 0);
    EXPECT_EQ(s.stats().prompt_cache_saves, 1u);
    EXPECT_EQ(s.stats().prompt_cache_entries, 1u);

    auto back = a;
    back.insert(back.end(), {5, 6, 7});
    auto returned = run_one(s, greedy(back, 4));  // the second is saved, the first loaded
    ASSERT_TRUE(returned.done);
    EXPECT_EQ(returned.result.timings.cache_n, 60);
    EXPECT_EQ(returned.result.timings.prompt_n, 3);
    const SchedulerStats st = s.stats();
    EXPECT_EQ(st.prompt_cache_loads, 1u);
    EXPECT_EQ(st.prompt_cache_saves, 2u);
    EXPECT_EQ(st.prompt_cache_entries, 1u);  // the loaded entry left the cache; the other went in
    EXPECT_GT(st.prompt_cache_bytes, 0u);

    Rig clean(1, 1024, false, 512);
    EXPECT_EQ(run_one(*clean.scheduler, greedy(back, 4)).tokens, returned.tokens);
    // Off (the default of this rig): nothing is kept.
    Rig off(1, 1024, false, 512);
    run_one(*off.scheduler, greedy(a, 4));
    run_one(*off.scheduler, greedy(tokens(50, 30), 4));
    EXPECT_EQ(run_one(*off.scheduler, greedy(back, 4)).result.timings.cache_n, 0);
    EXPECT_EQ(off.scheduler->stats().prompt_cache_saves, 0u);
}

// Loading a saved prompt can need the cells of another idle slot, which is
// then saved in turn (and the cache may evict to make room for it): the
// loaded entry must be the one that was found.
TEST(ServerScheduler, ram_prompt_cache_load_that_evicts_an_idle_slot) {
    size_t per_token = 0;
    {
        Rig probe(2, 256, true, 512);
        for (int l = 0; l < probe.engine->cache().n_layer(); ++l)
            per_token += probe.engine->cache().k_row_bytes(l) + probe.engine->cache().v_row_bytes(l);
    }
    Rig rig(2, 256, true, 512, 64, demo_model(), 360 * (per_token + 4));  // room for about 360 tokens
    Scheduler& s = *rig.scheduler;
    auto pinned = [](std::vector<int32_t> prompt, int slot) {
        GenerationRequest rq = greedy(std::move(prompt), 4);
        rq.id_slot = slot;
        return rq;
    };
    const auto a = tokens(150, 10), b = tokens(20, 20), d = tokens(200, 30);
    ASSERT_TRUE(run_one(s, pinned(a, 1)).done);  // slot 1: 153 cells
    ASSERT_TRUE(run_one(s, pinned(b, 0)).done);  // slot 0: 23
    ASSERT_TRUE(run_one(s, pinned(d, 1)).done);  // slot 1 saves a, then holds 203; 30 cells free
    auto back = a;
    back.insert(back.end(), {5, 6, 7});
    // Slot 0 saves b and loads a (150 tokens): slot 1's 203 cells must go, saved first.
    auto returned = run_one(s, pinned(back, 0));
    ASSERT_TRUE(returned.done) << returned.message;
    EXPECT_EQ(returned.result.timings.cache_n, 150);
    EXPECT_EQ(s.stats().prompt_cache_loads, 1u);
    EXPECT_EQ(s.stats().prompt_cache_saves, 3u);  // a, b, and d when its cells were needed
    Rig clean(2, 256, true, 512);
    EXPECT_EQ(run_one(*clean.scheduler, greedy(back, 4)).tokens, returned.tokens);
}

TEST(ServerScheduler, ram_prompt_cache_restores_a_hybrid_models_recurrent_state) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string model = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    Rig rig(1, 1024, false, 512, 64, model, size_t{64} << 20);
    Scheduler& s = *rig.scheduler;
    auto first = run_one(s, greedy(tokens(30), 4));
    ASSERT_TRUE(first.done) << first.message;
    run_one(s, greedy(tokens(25, 90), 4));  // the first conversation is saved: 30 prompt + 3 generated tokens
    // It comes back with its answer and a new message: its state after all 33 tokens is loaded.
    auto back = tokens(30);
    back.insert(back.end(), first.tokens.begin(), first.tokens.begin() + 3);
    back.insert(back.end(), {5, 6, 7});
    auto returned = run_one(s, greedy(back, 4));
    ASSERT_TRUE(returned.done) << returned.message;
    EXPECT_EQ(returned.result.timings.cache_n, 33);
    EXPECT_EQ(s.stats().prompt_cache_loads, 1u);
    Rig clean(1, 1024, false, 512, 64, model);
    EXPECT_EQ(run_one(*clean.scheduler, greedy(back, 4)).tokens, returned.tokens);
}

// POST /slots/{id}?action=save|restore|erase, driven directly: a slot saved
// to a file, erased and restored continues as if nothing had happened; a
// file from another cache layout, a missing one and a bad slot are refused.
TEST(ServerScheduler, slot_actions_save_erase_and_restore_a_slot) {
    const auto dir = std::filesystem::temp_directory_path() / "moeserve-tests" / ("slots-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string file = (dir / "a.bin").string();
    Rig rig(2, 1024, false, 512);
    Scheduler& s = *rig.scheduler;
    auto act = [&](int slot, SlotAction a, const std::string& path) {
        auto f = s.slot_action(slot, a, path);
        for (int i = 0; i < 100 && f.wait_for(std::chrono::seconds(0)) != std::future_status::ready; ++i) s.step();
        return f.get();
    };
    GenerationRequest first = greedy(tokens(50), 4);
    first.id_slot = 1;
    ASSERT_TRUE(run_one(s, first).done);
    const SlotActionResult saved = act(1, SlotAction::save, file);
    ASSERT_TRUE(saved.ok) << saved.message;
    EXPECT_EQ(saved.n_tokens, 53);  // the prompt and 3 generated tokens evaluated
    EXPECT_EQ(saved.n_bytes, std::filesystem::file_size(file));
    const SlotActionResult erased = act(1, SlotAction::erase, "");
    EXPECT_TRUE(erased.ok);
    EXPECT_EQ(erased.n_tokens, 53);
    EXPECT_EQ(rig.engine->cache().seq_length(1), 0);
    const SlotActionResult restored = act(0, SlotAction::restore, file);  // into the other slot
    ASSERT_TRUE(restored.ok) << restored.message;
    EXPECT_EQ(restored.n_tokens, 53);
    EXPECT_EQ(restored.n_bytes, saved.n_bytes);

    auto more = tokens(50);
    more.insert(more.end(), {5, 6, 7});
    GenerationRequest next = greedy(more, 4);
    next.id_slot = 0;
    auto after = run_one(s, next);
    EXPECT_EQ(after.result.timings.cache_n, 50);
    Rig clean(2, 1024, false, 512);
    EXPECT_EQ(run_one(*clean.scheduler, greedy(more, 4)).tokens, after.tokens);

    EXPECT_FALSE(act(0, SlotAction::restore, (dir / "missing.bin").string()).ok);
    EXPECT_FALSE(act(7, SlotAction::erase, "").ok);
    // A cache of another layout (q8_0 K and V) refuses the f16 file by name.
    SchedulerOptions so;
    so.layout = compute_slot_layout(1024, 4096, 1, false);
    EngineOptions eo;
    eo.model_path = demo_model();
    eo.n_threads = 1;
    eo.n_ctx = so.layout.n_cells;
    eo.type_k = eo.type_v = GgmlType::Q8_0;
    Engine q8(eo);
    Scheduler other(q8.model(), q8.cache(), *rig.tokenizer, so);
    auto f = other.slot_action(0, SlotAction::restore, file);
    other.step();
    const SlotActionResult refused = f.get();
    EXPECT_FALSE(refused.ok);
    EXPECT_NE(refused.message.find("different model or KV cache configuration"), std::string::npos) << refused.message;
    std::filesystem::remove_all(dir);
}

// --context-shift: a generation that outgrows its slot drops tokens after
// the first n_keep and goes on to n_predict, reported as truncated; without
// it, the same request stops at the slot's end.
TEST(ServerScheduler, context_shift_lets_a_generation_outgrow_its_slot) {
    auto make = [](bool shift) {
        SchedulerOptions so;
        so.layout = compute_slot_layout(256, 4096, 1, false);
        so.context_shift = shift;
        EngineOptions eo;
        eo.model_path = demo_model();
        eo.n_threads = 2;
        eo.n_ctx = so.layout.n_cells;
        auto engine = std::make_unique<Engine>(eo);
        return std::pair{std::move(engine), so};
    };
    Tokenizer tok = Tokenizer::from_file(demo_model());
    auto [plain_engine, plain_opts] = make(false);
    Scheduler plain(plain_engine->model(), plain_engine->cache(), tok, plain_opts);
    auto stopped = run_one(plain, greedy(tokens(40), 400));
    ASSERT_TRUE(stopped.done);
    EXPECT_TRUE(stopped.result.truncated);
    EXPECT_EQ(static_cast<int64_t>(stopped.tokens.size()), 256 - 40);

    auto [engine, opts] = make(true);
    Scheduler shifting(engine->model(), engine->cache(), tok, opts);
    GenerationRequest rq = greedy(tokens(40), 400);
    rq.n_keep = 10;
    auto long_run = run_one(shifting, rq);
    ASSERT_TRUE(long_run.done) << long_run.message;
    EXPECT_EQ(long_run.tokens.size(), 400u);
    EXPECT_TRUE(long_run.result.truncated);
    EXPECT_LT(engine->cache().seq_length(0), 256);
    // Up to the first shift the text is the one without shifting.
    EXPECT_TRUE(std::equal(stopped.tokens.begin(), stopped.tokens.end() - 1, long_run.tokens.begin()));

    // A model whose cache cannot shift is refused when the scheduler is made.
    MOESERVE_REQUIRE_FIXTURES();
    EngineOptions eo;
    eo.model_path = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    eo.n_threads = 1;
    eo.n_ctx = 256;
    Engine nemotron(eo);
    Tokenizer ntok = Tokenizer::from_file(eo.model_path);
    try {
        Scheduler refused(nemotron.model(), nemotron.cache(), ntok, opts);
        FAIL() << "no error";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("--context-shift"), std::string::npos) << e.what();
    }
}

TEST(ServerScheduler, reuses_prompts_on_a_hybrid_model_through_state_snapshots) {
    MOESERVE_REQUIRE_FIXTURES();
    Rig rig(1, 1024, false, 512, 64, test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string());
    Scheduler& s = *rig.scheduler;
    auto first = run_one(s, greedy(tokens(30), 4));
    ASSERT_TRUE(first.done) << first.message;
    auto again = run_one(s, greedy(tokens(30), 4));  // resumes from the snapshot one token before the end
    EXPECT_EQ(again.result.timings.cache_n, 29);
    EXPECT_EQ(again.tokens, first.tokens);
    auto longer = tokens(30);
    longer.insert(longer.end(), {5, 6, 7});
    auto next = run_one(s, greedy(longer, 4));  // resumes from the snapshot at the end of the last prompt
    EXPECT_EQ(next.result.timings.cache_n, 30);
    auto fresh = run_one(s, greedy(tokens(20, 50), 4));  // no shared prefix: the state starts over
    EXPECT_EQ(fresh.result.timings.cache_n, 0);
    Rig clean(1, 1024, false, 512, 64, test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string());
    EXPECT_EQ(run_one(*clean.scheduler, greedy(longer, 4)).tokens, next.tokens);
}

// Turn boundaries (the last user message's start and end, from chat requests):
// the prompt is split there and the recurrent state kept, so a later prompt that
// diverges after a boundary resumes from it, with the answer a fresh slot gives.
TEST(ServerScheduler, resumes_a_hybrid_model_from_turn_boundaries) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string model = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    Rig rig(1, 1024, false, 512, 64, model);
    Scheduler& s = *rig.scheduler;
    GenerationRequest first = greedy(tokens(40), 4);
    first.turn_boundaries = {20, 30};
    ASSERT_TRUE(run_one(s, first).done);

    auto diverging_at = [](int64_t n) {
        auto t = tokens(40);
        for (size_t i = n; i < t.size(); ++i) t[i] = 300 + static_cast<int32_t>(i);
        return t;
    };
    auto edited = run_one(s, greedy(diverging_at(33), 4));  // the last message's text edited after 3 tokens
    EXPECT_EQ(edited.result.timings.cache_n, 30);
    auto earlier = run_one(s, greedy(diverging_at(25), 4));  // the boundary at 30 is now past the divergence
    EXPECT_EQ(earlier.result.timings.cache_n, 20);

    Rig clean(1, 1024, false, 512, 64, model);
    EXPECT_EQ(run_one(*clean.scheduler, greedy(diverging_at(33), 4)).tokens, edited.tokens);
    EXPECT_EQ(run_one(*clean.scheduler, greedy(diverging_at(25), 4)).tokens, earlier.tokens);

    // Without boundaries only the prompt's end has snapshots: the same edit re-evaluates all.
    Rig plain(1, 1024, false, 512, 64, model);
    ASSERT_TRUE(run_one(*plain.scheduler, greedy(tokens(40), 4)).done);
    EXPECT_EQ(run_one(*plain.scheduler, greedy(diverging_at(33), 4)).result.timings.cache_n, 0);
}

// Message starts (every user and tool message's, from chat requests) are kept
// when --checkpoint-min-step apart, and the first always (the end of the system
// prompt): a conversation edited far back resumes from the newest one before the
// edit, with the answer a fresh slot gives.
TEST(ServerScheduler, resumes_a_hybrid_model_from_spaced_message_starts) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string model = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    auto conversation = [](int64_t diverging_at, std::vector<int64_t> starts = {70, 90, 100, 105, 140}) {
        GenerationRequest rq = greedy(tokens(200), 4);
        for (size_t i = diverging_at; i < rq.prompt.size(); ++i) rq.prompt[i] = 300 + static_cast<int32_t>(i % 100);
        rq.message_starts = std::move(starts);
        rq.turn_boundaries = {140, 180};
        return rq;
    };
    Rig rig(1, 1024, false, 512, 64, model, 0, /*checkpoint_min_step=*/16);
    Scheduler& s = *rig.scheduler;
    ASSERT_TRUE(run_one(s, conversation(200)).done);
    // 70 is the first; 100 and 105 are too close to 90; 140 is also the last message's start.
    EXPECT_EQ(rig.engine->cache().snapshot_positions(0, SnapshotKind::message_start),
              (std::vector<int64_t>{140, 90, 70}));
    // Three whole states in host RAM (what /metrics reports as moeserve:checkpoint_host_bytes).
    const size_t state = static_cast<size_t>(rig.engine->cache().recurrent_seq_stride()) * sizeof(float);
    EXPECT_EQ(s.stats().checkpoint_host_bytes, 3 * state);

    auto at_120 = run_one(s, conversation(120));
    EXPECT_EQ(at_120.result.timings.cache_n, 90);
    auto at_80 = run_one(s, conversation(80));
    EXPECT_EQ(at_80.result.timings.cache_n, 70);
    Rig clean(1, 1024, false, 512, 64, model);
    auto fresh = [&](GenerationRequest rq) {  // the whole prompt evaluated
        rq.cache_prompt = false;
        rq.id_slot = -1;
        return run_one(*clean.scheduler, rq).tokens;
    };
    EXPECT_EQ(fresh(conversation(120)), at_120.tokens);
    EXPECT_EQ(fresh(conversation(80)), at_80.tokens);

    // At the default spacing (8192) only the first is kept: the same edit resumes there.
    Rig spaced(1, 1024, false, 512, 64, model);
    ASSERT_TRUE(run_one(*spaced.scheduler, conversation(200)).done);
    EXPECT_EQ(spaced.engine->cache().snapshot_positions(0, SnapshotKind::message_start), std::vector<int64_t>{70});
    EXPECT_EQ(spaced.scheduler->stats().checkpoint_host_bytes, state);
    EXPECT_EQ(run_one(*spaced.scheduler, conversation(120)).result.timings.cache_n, 70);
    // Another conversation with the same system prompt takes it from that slot, though
    // the slot's own conversation has gone on (its prompt-end and turn snapshots are past it).
    Rig two(2, 2048, true, 512, 64, model);
    GenerationRequest a = conversation(200);
    a.id_slot = 0;
    ASSERT_TRUE(run_one(*two.scheduler, a).done);
    GenerationRequest other = conversation(75, {70});
    other.turn_boundaries.clear();
    other.id_slot = 1;
    const auto shared = run_one(*two.scheduler, other);
    EXPECT_EQ(shared.result.timings.cache_n, 70);
    EXPECT_EQ(two.scheduler->stats().prefix_shares, 1u);
    // ... and keeps it as a rung of its own, for when slot 0 has moved on to something else.
    EXPECT_EQ(two.engine->cache().snapshot_positions(1, SnapshotKind::message_start), std::vector<int64_t>{70});
    EXPECT_EQ(fresh(other), shared.tokens);
    // A first message that starts early (a short system prompt) is not kept.
    Rig short_system(1, 1024, false, 512, 64, model);
    ASSERT_TRUE(run_one(*short_system.scheduler, conversation(200, {20, 90, 140})).done);
    EXPECT_TRUE(short_system.engine->cache().snapshot_positions(0, SnapshotKind::message_start).empty());

    // --ctx-checkpoints 4 keeps no message starts: the same edit re-evaluates everything.
    EngineOptions eo;
    eo.model_path = model;
    eo.n_threads = 2;
    eo.n_ctx = 1024;
    eo.n_rs_snapshots = 4;
    Engine four(eo);
    SchedulerOptions so;
    so.layout = compute_slot_layout(1024, 4096, 1, false);
    so.n_ubatch = 64;
    Scheduler without(four.model(), four.cache(), *rig.tokenizer, so);
    ASSERT_TRUE(run_one(without, conversation(200)).done);
    EXPECT_EQ(run_one(without, conversation(120)).result.timings.cache_n, 0);
}

// Prefix sharing: a prompt that begins as another slot's cached tokens takes
// those cells, even while the other slot is generating; both answers are what
// each gets alone, and the shared cells are stored once.
TEST(ServerScheduler, a_prompt_shares_the_prefix_another_slot_holds) {
    auto shared_then = [](int64_t n, int32_t from) {  // tokens(40) holds ids of 10 and more
        auto t = tokens(40);
        for (size_t i = n; i < t.size(); ++i) t[i] = from + static_cast<int32_t>(i % 5);
        return t;
    };
    auto pinned = [](GenerationRequest rq, int slot) {
        rq.id_slot = slot;
        return rq;
    };
    Rig alone(1, 1024, false, 512);
    const auto a_alone = run_one(*alone.scheduler, greedy(tokens(40), 24)).tokens;
    const auto b_alone = run_one(*alone.scheduler, greedy(shared_then(30, 3), 4)).tokens;

    Rig rig(2, 2048, true, 512);
    Scheduler& s = *rig.scheduler;
    auto a_stream = std::make_shared<GenerationStream>();
    s.submit({pinned(greedy(tokens(40), 24), 0)}, a_stream);
    Collected a;
    while (a.tokens.size() < 3) {  // slot 0 is generating
        s.step();
        drain(*a_stream, a);
    }
    const int64_t free_before = rig.engine->cache().n_free();
    auto b_stream = std::make_shared<GenerationStream>();
    s.submit({pinned(greedy(shared_then(30, 3), 4), 1)}, b_stream);
    Collected b;
    run_both(s, *a_stream, a, *b_stream, b);
    ASSERT_TRUE(a.done && b.done);
    EXPECT_EQ(b.result.timings.cache_n, 30);
    EXPECT_EQ(b.result.timings.prompt_n, 10);
    EXPECT_EQ(a.tokens, a_alone);
    EXPECT_EQ(b.tokens, b_alone);
    EXPECT_EQ(s.stats().prefix_shares, 1u);
    EXPECT_EQ(s.stats().prefix_shared_tokens, 30u);
    // B added its own 10 prompt tokens and 3 generated ones; A its further 21 generated.
    EXPECT_EQ(free_before - rig.engine->cache().n_free(), 10 + 3 + 21);
    EXPECT_EQ(rig.engine->cache().shared_cells(1), 30);
}

// n > 1 choices of one prompt: the second waits while the first reads the
// prompt, then shares all of it but the last token.
TEST(ServerScheduler, choices_of_one_prompt_share_its_cells) {
    Rig rig(2, 2048, true, 512);
    Scheduler& s = *rig.scheduler;
    auto stream = std::make_shared<GenerationStream>();
    GenerationRequest one = greedy(tokens(100), 4), two = greedy(tokens(100), 4);
    two.index = 1;
    s.submit({one, two}, stream);
    std::map<int, GenerationResult> done;
    for (int i = 0; i < 10000 && done.size() < 2; ++i) {
        s.step();
        while (auto e = stream->next(std::chrono::milliseconds(0)))
            if (e->kind == GenerationEvent::Kind::done) done[e->index] = e->result;
    }
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[0].timings.prompt_n + done[1].timings.prompt_n, 101);
    EXPECT_EQ(s.stats().prefix_shared_tokens, 99u);
}

// A request waiting for a reader keeps an idle slot: a later request does not take
// it (and make the waiting one wait for a whole generation).
TEST(ServerScheduler, a_request_waiting_for_a_reader_keeps_its_slot) {
    Rig rig(2, 2048, true, 512);
    Scheduler& s = *rig.scheduler;
    GenerationRequest one = greedy(tokens(100), 4), two = greedy(tokens(100), 4), other = greedy(tokens(50, 60), 4);
    two.index = 1;
    auto choices = std::make_shared<GenerationStream>(), later = std::make_shared<GenerationStream>();
    s.submit({one, two}, choices);
    s.submit({other}, later);
    std::map<int, int> started_at;  // choice index -> step
    Collected c;
    int other_started = -1;
    for (int step = 0; step < 10000 && !(started_at.size() == 2 && c.done); ++step) {
        s.step();
        while (auto e = choices->next(std::chrono::milliseconds(0)))
            if (e->kind == GenerationEvent::Kind::started) started_at.emplace(e->index, step);
        drain(*later, c);
        if (c.started && other_started < 0) other_started = step;
    }
    ASSERT_EQ(started_at.size(), 2u);
    ASSERT_TRUE(c.done);
    EXPECT_LT(started_at[1], other_started);
    EXPECT_EQ(s.stats().prefix_shared_tokens, 99u);
}

// Two different prompts with a common beginning, arriving together: the second
// waits while the first reads it, then shares it (it is read once).
TEST(ServerScheduler, prompts_arriving_together_read_their_common_beginning_once) {
    Rig rig(2, 2048, true, 512);
    Scheduler& s = *rig.scheduler;
    auto a = tokens(200), b = tokens(200);
    a.insert(a.end(), {3, 4, 5});
    b.insert(b.end(), {6, 7});
    auto sa = std::make_shared<GenerationStream>(), sb = std::make_shared<GenerationStream>();
    s.submit({greedy(a, 4)}, sa);
    s.submit({greedy(b, 4)}, sb);
    Collected ca, cb;
    run_both(s, *sa, ca, *sb, cb);
    ASSERT_TRUE(ca.done && cb.done);
    EXPECT_EQ(ca.result.timings.prompt_n, 203);
    EXPECT_EQ(cb.result.timings.cache_n, 200);
    EXPECT_EQ(cb.result.timings.prompt_n, 2);
    Rig alone(1, 1024, false, 512);
    EXPECT_EQ(run_one(*alone.scheduler, greedy(b, 4)).tokens, cb.tokens);
}

// The same on a hybrid model, where the common part is a system prompt: the second
// conversation waits while the first reads up to its first message's start (a rung),
// then takes that state and those cells.
TEST(ServerScheduler, conversations_arriving_together_on_a_hybrid_model_read_the_system_prompt_once) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string model = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    Rig rig(2, 2048, true, 512, 64, model);
    Scheduler& s = *rig.scheduler;
    GenerationRequest a = greedy(tokens(200), 4), b = greedy(tokens(120), 4);
    b.prompt.insert(b.prompt.end(), {6, 7, 8, 9});  // diverges after 120 tokens
    a.message_starts = {100, 150};
    a.turn_boundaries = {150, 180};
    b.message_starts = {100};
    auto sa = std::make_shared<GenerationStream>(), sb = std::make_shared<GenerationStream>();
    s.submit({a}, sa);
    s.submit({b}, sb);
    Collected ca, cb;
    run_both(s, *sa, ca, *sb, cb);
    ASSERT_TRUE(ca.done && cb.done);
    EXPECT_EQ(ca.result.timings.prompt_n, 200);
    EXPECT_EQ(cb.result.timings.cache_n, 100);
    EXPECT_EQ(s.stats().prefix_shares, 1u);
    Rig alone(1, 1024, false, 512, 64, model);
    EXPECT_EQ(run_one(*alone.scheduler, greedy(b.prompt, 4)).tokens, cb.tokens);
}

// n_cache_reuse: a chunk of the slot's cache after the common prefix that the new
// prompt goes on with is shifted into place (llama-server's --cache-reuse), if at
// least that long; the answer is a fresh slot's.
TEST(ServerScheduler, cache_reuse_shifts_later_chunks_into_place) {
    auto part = [](int n, int32_t start) { return tokens(n, start); };
    auto join = [](std::initializer_list<std::vector<int32_t>> parts) {
        std::vector<int32_t> t;
        for (const auto& p : parts) t.insert(t.end(), p.begin(), p.end());
        return t;
    };
    const std::vector<int32_t> a = part(20, 10), x = part(10, 150), b = part(30, 40), c = {5, 6, 7};
    auto with_reuse = [&](int64_t n) {
        Rig rig(1, 1024, false, 512);
        EXPECT_TRUE(run_one(*rig.scheduler, greedy(join({a, x, b}), 4)).done);
        GenerationRequest rq = greedy(join({a, b, c}), 4);
        rq.n_cache_reuse = n;
        return run_one(*rig.scheduler, rq);
    };
    const auto reused = with_reuse(16);
    EXPECT_EQ(reused.result.timings.cache_n, 50);
    EXPECT_EQ(reused.result.timings.prompt_n, 3);
    EXPECT_EQ(with_reuse(0).result.timings.cache_n, 20);
    EXPECT_EQ(with_reuse(31).result.timings.cache_n, 20);  // the chunk is 30 long
    Rig fresh(1, 1024, false, 512);
    EXPECT_EQ(run_one(*fresh.scheduler, greedy(join({a, b, c}), 4)).tokens, reused.tokens);
}

// Random traffic over shared prefixes (pinned or not, cached or not, several
// choices, cancellations), with message starts and turn boundaries where a chat
// request would have them (a hybrid model's snapshots: here rungs 8 tokens
// apart): after every step the cells the sequences hold are exactly the cells
// in use, and every finished answer is the one a fresh slot gives for that prompt.
void random_traffic(const std::string& model) {
    Rig rig(3, 3072, true, 256, 64, model, 0, /*checkpoint_min_step=*/8);
    Scheduler& s = *rig.scheduler;
    KvCache& cache = rig.engine->cache();
    std::mt19937 rng(1234);
    const std::vector<std::vector<int32_t>> heads = {tokens(40, 10), tokens(25, 77), tokens(60, 33)};
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    struct Sent {
        std::shared_ptr<GenerationStream> stream;
        std::vector<GenerationRequest> requests;
        std::map<int, Collected> got;
    };
    std::vector<Sent> sent;
    auto check_cells = [&] {
        std::set<int32_t> held;
        for (int q = 0; q < 3; ++q)
            for (int32_t c : cache.seq_cells(q)) held.insert(c);
        ASSERT_EQ(static_cast<int64_t>(held.size()), cache.n_cells() - cache.n_free());
    };
    for (int round = 0; round < 12; ++round) {
        const int n_new = 1 + pick(3);
        for (int k = 0; k < n_new; ++k) {
            std::vector<int32_t> prompt = heads[pick(3)];
            const int tail = pick(12);
            for (int i = 0; i < tail; ++i) prompt.push_back(5 + pick(4));
            GenerationRequest rq = greedy(prompt, 1 + pick(4));
            rq.cache_prompt = pick(5) != 0;
            const auto n = static_cast<int64_t>(prompt.size());
            for (int64_t at : {int64_t{6}, int64_t{12 + pick(8)}, n - tail})
                if (at + 1 < n && (rq.message_starts.empty() || at > rq.message_starts.back()))
                    rq.message_starts.push_back(at);
            if (tail > 2) rq.turn_boundaries = {n - tail};
            if (pick(4) == 0) rq.id_slot = pick(3);
            Sent x;
            x.stream = std::make_shared<GenerationStream>();
            x.requests.push_back(rq);
            if (pick(4) == 0 && rq.id_slot < 0) {  // a second choice of the same prompt
                rq.index = 1;
                x.requests.push_back(rq);
            }
            s.submit(x.requests, x.stream);
            sent.push_back(std::move(x));
        }
        if (pick(5) == 0) sent[pick(static_cast<int>(sent.size()))].stream->cancel();
        for (int i = 0; i < 1 + pick(6); ++i) {
            s.step();
            check_cells();
        }
    }
    for (int i = 0; i < 20000 && s.step(); ++i) check_cells();
    std::map<std::vector<int32_t>, std::vector<int32_t>> solo;  // prompt + n_predict -> tokens
    int finished = 0;
    for (auto& x : sent) {
        while (auto e = x.stream->next(std::chrono::milliseconds(0))) {
            Collected& c = x.got[e->index];
            if (e->kind == GenerationEvent::Kind::token) c.tokens.push_back(e->token);
            if (e->kind == GenerationEvent::Kind::done) c.done = true;
        }
        if (x.stream->cancelled()) continue;
        for (const auto& rq : x.requests) {
            const Collected& c = x.got[rq.index];
            ASSERT_TRUE(c.done);
            ++finished;
            std::vector<int32_t> key = rq.prompt;
            key.push_back(-static_cast<int32_t>(rq.n_predict));
            if (!solo.count(key)) {
                Rig fresh(1, 1024, false, 256, 64, model);
                solo[key] = run_one(*fresh.scheduler, greedy(rq.prompt, rq.n_predict)).tokens;
            }
            EXPECT_EQ(c.tokens, solo[key]);
        }
    }
    EXPECT_GT(finished, 10);
    EXPECT_GT(s.stats().prefix_shares, 0u);
    if (cache.has_recurrent()) EXPECT_GT(s.stats().checkpoint_host_bytes, 0u);  // rungs were kept
}

TEST(ServerScheduler, random_traffic_keeps_shared_cells_accounted_and_answers_unchanged) {
    random_traffic(demo_model());
}

// The same on a hybrid model: shares come from the other slot's end or snapshots,
// whose recurrent state is copied.
TEST(ServerScheduler, random_traffic_on_a_hybrid_model) {
    MOESERVE_REQUIRE_FIXTURES();
    random_traffic(test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string());
}

// With context shift on, nothing is shared (a shift re-rotates cells in place).
TEST(ServerScheduler, context_shift_turns_prefix_sharing_off) {
    Rig rig(2, 2048, true, 512);
    rig.scheduler.reset();
    SchedulerOptions so;
    so.layout = compute_slot_layout(2048, 4096, 2, true);
    so.n_ubatch = 64;
    so.context_shift = true;
    Scheduler s(rig.engine->model(), rig.engine->cache(), *rig.tokenizer, so);
    GenerationRequest a = greedy(tokens(40), 4), b = greedy(tokens(40), 4);
    a.id_slot = 0;
    b.id_slot = 1;
    ASSERT_TRUE(run_one(s, a).done);
    EXPECT_EQ(run_one(s, b).result.timings.cache_n, 0);
    EXPECT_EQ(s.stats().prefix_shares, 0u);
}

TEST(ServerScheduler, refuses_a_prompt_that_does_not_fit_its_slot) {
    Rig rig(4, 1024, false, 512);  // 4 slots of 256
    try {
        rig.scheduler->submit({greedy(tokens(256), 4)}, std::make_shared<GenerationStream>());
        FAIL();
    } catch (const SubmitError& e) {
        EXPECT_EQ(e.status, 400);
        EXPECT_EQ(e.type, "exceed_context_size_error");
        EXPECT_EQ(e.n_prompt_tokens, 256);
        EXPECT_EQ(e.n_ctx, 256);
        EXPECT_STREQ(e.what(),
                     "request (256 tokens) exceeds the available context size (256 tokens), try increasing it");
    }
    EXPECT_THROW(rig.scheduler->submit({greedy({100000}, 4)}, std::make_shared<GenerationStream>()), SubmitError);
    // Several prompts that cannot fit the shared pool together: refused at once, with the numbers.
    Rig unified(4, 1024, true, 512);
    try {
        unified.scheduler->submit({greedy(tokens(300, 10), 4), greedy(tokens(300, 11), 4), greedy(tokens(300, 12), 4),
                                   greedy(tokens(300, 13), 4)},
                                  std::make_shared<GenerationStream>());
        FAIL() << "4 x 300 prompt tokens cannot fit 1024 cells";
    } catch (const SubmitError& e) {
        EXPECT_EQ(e.status, 400);
        EXPECT_NE(std::string(e.what()).find("need 1204 KV cells together"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(unified.scheduler->submit({greedy(tokens(300, 10), 4), greedy(tokens(300, 11), 4)},
                                              std::make_shared<GenerationStream>()));
    // Choices that do not reuse cached prompts (cache_prompt false) share nothing.
    Rig uncached(4, 1024, true, 512);
    std::vector<GenerationRequest> fresh(4, greedy(tokens(300), 4));
    for (auto& rq : fresh) rq.cache_prompt = false;
    EXPECT_THROW(uncached.scheduler->submit(fresh, std::make_shared<GenerationStream>()), SubmitError);
    // Four choices of one prompt share it: 301 + 3 x 2 cells.
    Rig choices(4, 1024, true, 512);
    EXPECT_NO_THROW(choices.scheduler->submit(
        {greedy(tokens(300), 4), greedy(tokens(300), 4), greedy(tokens(300), 4), greedy(tokens(300), 4)},
        std::make_shared<GenerationStream>()));
    // An empty prompt is not refused: it is answered at once, empty, without a slot (llama-server).
    auto empty = std::make_shared<GenerationStream>();
    rig.scheduler->submit({greedy({}, 4)}, empty);
    Collected c;
    drain(*empty, c);
    EXPECT_TRUE(c.done);
    EXPECT_TRUE(c.tokens.empty());
    EXPECT_EQ(c.result.stop_type, StopType::none);
}

TEST(ServerScheduler, generation_stops_with_length_at_the_end_of_its_slot) {
    Rig rig(4, 1024, false, 512);  // 256 per slot
    auto c = run_one(*rig.scheduler, greedy(tokens(250), -1));
    ASSERT_TRUE(c.done);
    EXPECT_EQ(c.result.stop_type, StopType::limit);
    EXPECT_TRUE(c.result.truncated);
    EXPECT_EQ(c.tokens.size(), 6u);  // 250 + 5 evaluated = 255 = n_ctx - 1, plus the last sampled token
    auto d = run_one(*rig.scheduler, greedy(tokens(10), 7));
    EXPECT_EQ(d.result.stop_type, StopType::limit);
    EXPECT_FALSE(d.result.truncated);
    EXPECT_EQ(d.tokens.size(), 7u);
}

TEST(ServerScheduler, cancelled_request_frees_its_slot_within_one_step) {
    Rig rig(1, 1024, false, 64);
    Scheduler& s = *rig.scheduler;
    auto a = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(4), 500)}, a);
    s.step();
    s.step();
    EXPECT_EQ(s.stats().n_processing, 1);
    a->cancel();
    s.step();
    EXPECT_EQ(s.stats().n_processing, 0);
    EXPECT_EQ(s.stats().n_requests_cancelled, 1u);
    auto b = run_one(s, greedy(tokens(4), 2));
    EXPECT_TRUE(b.done);
}

TEST(ServerScheduler, unified_cache_exhaustion_fails_the_youngest_request_only) {
    Rig rig(2, 256, true, 512);  // 256 cells shared by 2 slots
    Scheduler& s = *rig.scheduler;
    auto a = std::make_shared<GenerationStream>();
    auto b = std::make_shared<GenerationStream>();
    s.submit({greedy(tokens(100), 150)}, a);
    s.submit({greedy(tokens(100, 50), 150)}, b);
    Collected ca, cb;
    for (int i = 0; i < 400 && !((ca.done || ca.error) && (cb.done || cb.error)); ++i) {
        s.step();
        drain(*a, ca);
        drain(*b, cb);
    }
    EXPECT_TRUE(ca.done) << ca.message;
    EXPECT_TRUE(cb.error);
    EXPECT_EQ(cb.message, "Context size has been exceeded.");
}

TEST(ServerScheduler, several_requests_on_one_stream_carry_their_index) {
    Rig rig(2, 1024, false, 512);
    auto stream = std::make_shared<GenerationStream>();
    auto r0 = greedy(tokens(8), 3), r1 = greedy(tokens(8), 3);
    r1.index = 1;
    rig.scheduler->submit({r0, r1}, stream);
    int done[2] = {0, 0};
    for (int i = 0; i < 20; ++i) {
        rig.scheduler->step();
        while (auto e = stream->next(std::chrono::milliseconds(0)))
            if (e->kind == GenerationEvent::Kind::done) ++done[e->index];
    }
    EXPECT_EQ(done[0], 1);
    EXPECT_EQ(done[1], 1);
}

TEST(ServerScheduler, runs_on_its_own_thread) {
    Rig rig(2, 1024, false, 512);
    rig.scheduler->start();
    auto stream = std::make_shared<GenerationStream>();
    rig.scheduler->submit({greedy(tokens(8), 5)}, stream);
    Collected c;
    for (int i = 0; i < 100 && !c.done; ++i) {
        if (auto e = stream->next(std::chrono::milliseconds(100))) {
            if (e->kind == GenerationEvent::Kind::done) c.done = true;
            if (e->kind == GenerationEvent::Kind::token) c.tokens.push_back(e->token);
        }
    }
    EXPECT_TRUE(c.done);
    EXPECT_EQ(c.tokens.size(), 5u);
    rig.scheduler->stop();
}

TEST(ServerStopStrings, finds_matches_across_pieces_and_holds_back_prefixes) {
    StopStrings s({"</end>", "", "STOP"});
    auto r = s.scan("hello </e", 0);
    EXPECT_FALSE(r.match_at);
    EXPECT_EQ(r.safe_end, 6u);  // "</e" may start a stop string
    r = s.scan("hello </end> more", 9);
    ASSERT_TRUE(r.match_at);
    EXPECT_EQ(*r.match_at, 6u);
    EXPECT_EQ(r.word, "</end>");
    r = s.scan("xSTOPy </end>", 0);
    EXPECT_EQ(*r.match_at, 1u);  // the earliest match wins
    EXPECT_EQ(r.word, "STOP");
    r = s.scan("plain text", 0);
    EXPECT_EQ(r.safe_end, 10u);
    EXPECT_TRUE(StopStrings({""}).empty());
}

}  // namespace
}  // namespace moeserve
