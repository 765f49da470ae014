// Speculative decoding with n-gram guesses (serve --spec-type ngram-simple,
// ngram-mod): the guess is llama.cpp's ngram-simple lookup (ngram_mod_test.cpp
// has the other kind), and the scheduler's answers
// with guesses verified in the batch are the answers without them, token for
// token, on the demo model and the fixture models, alone and with two slots,
// greedy and sampled, at the n_predict and context limits; the cache holds
// no rejected guess afterwards. Hybrid models roll their recurrent state back
// to before the guesses and evaluate the kept tokens again.
#include <gtest/gtest.h>

#include <memory>

#include "demo_model.h"
#include "engine/engine.h"
#include "engine/ngram_draft.h"
#include "engine/scheduler.h"
#include "fixtures.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

// ---------------------------------------------------------------- the guess

std::vector<int32_t> draft(std::vector<int32_t> history, int32_t sampled, int n, int m) {
    return ngram_simple_draft(history, sampled, NgramDraftConfig{n, m});
}

TEST(NgramSimpleDraft, copies_what_followed_the_earlier_occurrence_of_the_last_n_tokens) {
    // History 99 1 2 3 4 5 6 7 8 50 51 1 2, then 3 sampled: the pattern 1 2 3 occurred at
    // position 1, and 4 5 6 7 followed it (m = 4 of the 9 tokens after it).
    const std::vector<int32_t> h = {99, 1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 1, 2};
    EXPECT_EQ(draft(h, 3, 3, 4), (std::vector<int32_t>{4, 5, 6, 7}));
    // m = 8 of the 9 tokens after it; m = 9 asks for a history longer than n + m + 1 = 13.
    EXPECT_EQ(draft(h, 3, 3, 8), (std::vector<int32_t>{4, 5, 6, 7, 8, 50, 51, 1}));
    EXPECT_TRUE(draft(h, 3, 3, 9).empty());
    // The sampled token is part of the pattern: 1 2 9 never occurred.
    EXPECT_TRUE(draft(h, 9, 3, 4).empty());
}

TEST(NgramSimpleDraft, the_newest_earlier_occurrence_wins) {
    const std::vector<int32_t> h = {99, 1, 2, 10, 11, 12, 13, 1, 2, 20, 21, 22, 23, 40, 41, 42, 1};
    EXPECT_EQ(draft(h, 2, 2, 4), (std::vector<int32_t>{20, 21, 22, 23}));
}

TEST(NgramSimpleDraft, llama_cpp_s_limits_apply) {
    // Position 0 is never a match (llama.cpp reads it as "none").
    EXPECT_TRUE(draft({1, 2, 5, 6, 7, 8, 9, 10, 1}, 2, 2, 4).empty());
    // The history must be longer than n + m + 1 tokens.
    const std::vector<int32_t> h = {99, 1, 2, 4, 5, 6, 7, 1};
    EXPECT_TRUE(draft(h, 2, 2, 5).empty());  // 8 tokens, 2 + 5 + 1 = 8
    EXPECT_EQ(draft(h, 2, 2, 4), (std::vector<int32_t>{4, 5, 6, 7}));
    // At least n tokens must follow the match: here only 2 (8 9) follow 1 2 3 at position 1,
    // the end of the history; a longer m changes nothing.
    const std::vector<int32_t> tail = {99, 1, 2, 3, 8, 9, 60, 61, 62, 63, 1, 2};
    EXPECT_EQ(draft(tail, 3, 3, 4), (std::vector<int32_t>{8, 9, 60, 61}));
    const std::vector<int32_t> late = {99, 98, 97, 96, 95, 94, 93, 92, 1, 2, 3, 8, 9, 1, 2};
    EXPECT_TRUE(draft(late, 3, 3, 2).empty());
}

TEST(NgramSimpleDraft, spec_types_parse_as_llama_server_names_them) {
    using K = std::vector<DraftKind>;
    EXPECT_EQ(parse_spec_type("ngram-simple"), K{DraftKind::ngram_simple});
    EXPECT_EQ(parse_spec_type("none,ngram-simple"), K{DraftKind::ngram_simple});
    EXPECT_EQ(parse_spec_type("ngram-mod"), K{DraftKind::ngram_mod});
    EXPECT_EQ(parse_spec_type("ngram-mod,ngram-simple"), (K{DraftKind::ngram_mod, DraftKind::ngram_simple}));
    EXPECT_EQ(parse_spec_type("ngram-simple,ngram-simple"), K{DraftKind::ngram_simple});
    EXPECT_TRUE(parse_spec_type("none").empty());
    for (const char* refused :
         {"draft-mtp", "draft-simple", "ngram-map-k", "ngram-map-k4v", "ngram-cache", "bogus", "ngram-mod,draft-mtp"})
        EXPECT_THROW(parse_spec_type(refused), std::invalid_argument) << refused;
}

TEST(NgramSimpleDraft, the_longest_draft_is_the_longest_any_named_kind_makes) {
    SpeculativeConfig c;
    EXPECT_EQ(c.draft_max(), 0);
    c.kinds = {DraftKind::ngram_simple};
    EXPECT_EQ(c.draft_max(), 16);  // --spec-draft-n-max
    c.ngram.size_m = 10;
    EXPECT_EQ(c.draft_max(), 10);  // a guess copies at most size_m tokens
    c.kinds = {DraftKind::ngram_simple, DraftKind::ngram_mod};
    EXPECT_EQ(c.draft_max(), 64);  // --spec-ngram-mod-n-max
    c.mod.n_max = 8;
    EXPECT_EQ(c.draft_max(), 10);
}

// ---------------------------------------------------------------- the scheduler

std::string demo_model() {
    static const std::string path = test::demo_model_file("speculative-demo");
    return path;
}

// The guesses the scheduler tests use: ngram-simple with a short pattern,
// ngram-mod with a short key (the test prompts are short), both at most 16.
SpeculativeConfig spec_config(bool on, DraftKind kind = DraftKind::ngram_simple) {
    SpeculativeConfig c;
    if (!on) return c;
    c.enabled = true;
    c.kinds = {kind};
    c.ngram = NgramDraftConfig{2, 8};
    c.mod = NgramModConfig{4, 2, 16};
    return c;
}

struct Rig {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<Scheduler> scheduler;

    Rig(const std::string& model, bool speculative, int n_slots = 1, int64_t n_ctx_slot = 1024,
        const std::string& kv = "f16", DraftKind kind = DraftKind::ngram_simple) {
        SchedulerOptions so;
        so.layout = compute_slot_layout(n_ctx_slot * n_slots, 4096, n_slots, false);
        so.n_batch = 512;
        so.n_ubatch = 64;
        so.speculative = spec_config(speculative, kind);
        EngineOptions eo;
        eo.model_path = model;
        eo.n_threads = 2;
        eo.n_ctx = so.layout.n_cells;
        eo.n_seq = n_slots;
        eo.type_k = eo.type_v = parse_cache_type(kv);
        eo.speculative = speculative;  // hybrid models: the recurrent states' rollback copies
        engine = std::make_unique<Engine>(eo);
        tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_file(model));
        scheduler = std::make_unique<Scheduler>(engine->model(), engine->cache(), *tokenizer, so);
    }
};

// A prompt that repeats itself, so that guesses exist from the first token on.
std::vector<int32_t> repetitive_prompt(int32_t seed) {
    std::vector<int32_t> unit;
    for (int i = 0; i < 20; ++i) unit.push_back(3 + (seed + i * 7) % 90);
    std::vector<int32_t> p;
    for (int r = 0; r < 3; ++r) p.insert(p.end(), unit.begin(), unit.end());
    return p;
}

GenerationRequest request(std::vector<int32_t> prompt, int64_t n_predict, float temperature = 0.0f) {
    GenerationRequest rq;
    rq.prompt = std::move(prompt);
    rq.n_predict = n_predict;
    rq.sampling.temperature = temperature;
    rq.sampling.top_k = 3;  // (sampled answers: a few likely tokens, so that guesses come true)
    rq.sampling.seed = 1234;
    rq.ignore_eos = true;
    rq.spec_n_max = 16;
    return rq;
}

struct Answer {
    std::vector<int32_t> tokens;
    std::vector<float> probs;  // each token's probability, when asked (n_probs)
    GenerationResult result;
    bool done = false;
    std::string error;
};

void drain(GenerationStream& s, Answer& a) {
    while (auto e = s.next(std::chrono::milliseconds(0))) {
        if (e->kind == GenerationEvent::Kind::token) a.tokens.push_back(e->token);
        if (e->kind == GenerationEvent::Kind::token && e->probs) a.probs.push_back(e->probs->prob);
        if (e->kind == GenerationEvent::Kind::done) a.done = true, a.result = e->result;
        if (e->kind == GenerationEvent::Kind::error) a.error = e->message;
    }
}

// Runs requests side by side until all are done.
std::vector<Answer> run(Scheduler& s, std::vector<GenerationRequest> rqs) {
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (auto& rq : rqs) {
        streams.push_back(std::make_shared<GenerationStream>());
        s.submit({std::move(rq)}, streams.back());
    }
    std::vector<Answer> out(streams.size());
    auto all_done = [&] {
        for (auto& a : out)
            if (!a.done && a.error.empty()) return false;
        return true;
    };
    for (int i = 0; i < 20000 && !all_done(); ++i) {
        s.step();
        for (size_t k = 0; k < streams.size(); ++k) drain(*streams[k], out[k]);
    }
    for (auto& a : out) EXPECT_TRUE(a.done) << a.error;
    return out;
}

// The answers with and without speculation, and that guesses were verified
// and kept; returns how many were kept. (ngram-mod's guesses need runs of
// n_match tokens the answer repeats, which a random model's answer to a short
// prompt may not have: its callers count the kept guesses over several models.)
static int N_GEN = 64;
uint64_t expect_same_answers(const std::string& model, const std::string& kv, float temperature,
                             DraftKind kind = DraftKind::ngram_simple) {
    Rig plain(model, false, 1, 1024, kv), spec(model, true, 1, 1024, kv, kind);
    for (int32_t seed : {0, 5, 11, 17}) {
        const Answer want = run(*plain.scheduler, {request(repetitive_prompt(seed), N_GEN, temperature)})[0];
        const Answer got = run(*spec.scheduler, {request(repetitive_prompt(seed), N_GEN, temperature)})[0];
        EXPECT_EQ(got.tokens, want.tokens) << model << " kv " << kv << " prompt " << seed;
        EXPECT_EQ(got.tokens.size(), size_t(N_GEN));
        EXPECT_EQ(want.result.timings.draft_n, 0);
    }
    const SchedulerStats st = spec.scheduler->stats();
    if (kind == DraftKind::ngram_simple) {
        EXPECT_GT(st.n_draft_total, 0u);
        EXPECT_GT(st.n_draft_accepted_total, 0u) << "no guess was ever confirmed: nothing was tested";
    }
    // The cache holds the slot's tokens and no rejected guess.
    const SlotInfo slot = spec.scheduler->slots()[0];
    EXPECT_EQ(spec.engine->cache().seq_length(0), slot.n_cached);
    EXPECT_EQ(st.kv_cells_used, slot.n_cached);
    return st.n_draft_accepted_total;
}

TEST(SpeculativeDecoding, greedy_answers_are_the_answers_without_speculation) {
    expect_same_answers(demo_model(), "f16", 0.0f);
    MOESERVE_REQUIRE_FIXTURES();
    expect_same_answers(test::fixture("models/qwen3moe-tiny-s1-q8_0.gguf").string(), "q4_0", 0.0f);
    expect_same_answers(test::fixture("models/glm47flash-tiny-s1-q4_k_m.gguf").string(), "q8_0", 0.0f);
}

TEST(SpeculativeDecoding, sampled_answers_with_a_seed_are_the_answers_without_speculation) {
    // One sampler draw per generated token in both runs, from the same logits.
    expect_same_answers(demo_model(), "f16", 0.8f);
    MOESERVE_REQUIRE_FIXTURES();
    expect_same_answers(test::fixture("models/qwen3moe-tiny-s1-iq4_xs.gguf").string(), "f16", 0.8f);
}

TEST(SpeculativeDecoding, two_slots_speculating_together_answer_as_each_alone) {
    const std::string model = demo_model();
    Rig alone(model, false, 2), both(model, true, 2);
    const Answer a = run(*alone.scheduler, {request(repetitive_prompt(1), 48)})[0];
    const Answer b = run(*alone.scheduler, {request(repetitive_prompt(9), 40)})[0];
    const auto got = run(*both.scheduler, {request(repetitive_prompt(1), 48), request(repetitive_prompt(9), 40)});
    EXPECT_EQ(got[0].tokens, a.tokens);
    EXPECT_EQ(got[1].tokens, b.tokens);
    EXPECT_GT(both.scheduler->stats().n_draft_accepted_total, 0u);
}

TEST(SpeculativeDecoding, limits_stop_where_they_stop_without_speculation) {
    const std::string model = demo_model();
    // n_predict: a guess past it is never verified, so exactly n_predict tokens come.
    for (int64_t n : {1, 2, 7, 23}) {
        Rig plain(model, false), spec(model, true);
        const Answer want = run(*plain.scheduler, {request(repetitive_prompt(2), n)})[0];
        const Answer got = run(*spec.scheduler, {request(repetitive_prompt(2), n)})[0];
        EXPECT_EQ(got.tokens, want.tokens) << n;
        EXPECT_EQ(static_cast<int64_t>(got.tokens.size()), n);
    }
    // The slot's context (256 cells): generation stops one short of it, truncated, as
    // without guesses.
    Rig plain(model, false, 1, 256), spec(model, true, 1, 256);
    ASSERT_EQ(spec.scheduler->n_ctx_slot(), 256);
    const Answer want = run(*plain.scheduler, {request(repetitive_prompt(3), -1)})[0];
    const Answer got = run(*spec.scheduler, {request(repetitive_prompt(3), -1)})[0];
    EXPECT_EQ(got.tokens, want.tokens);
    EXPECT_TRUE(got.result.truncated);
    EXPECT_EQ(got.result.tokens_cached, want.result.tokens_cached);
    EXPECT_LE(spec.engine->cache().seq_length(0), 256);
    EXPECT_GT(got.result.timings.draft_n, 0);
}

TEST(SpeculativeDecoding, a_request_turns_it_off_with_speculative_n_max_zero_or_a_high_n_min) {
    const std::string model = demo_model();
    Rig spec(model, true);
    GenerationRequest off = request(repetitive_prompt(4), 32);
    off.spec_n_max = 0;
    EXPECT_EQ(run(*spec.scheduler, {off})[0].result.timings.draft_n, 0);
    GenerationRequest high = request(repetitive_prompt(4), 32);
    high.spec_n_min = 9;  // more than the 8 tokens a guess copies here (size_m)
    EXPECT_EQ(run(*spec.scheduler, {high})[0].result.timings.draft_n, 0);
    GenerationRequest few = request(repetitive_prompt(4), 32);
    few.spec_n_max = 2;
    const Answer a = run(*spec.scheduler, {few})[0];
    EXPECT_GT(a.result.timings.draft_n, 0);
    EXPECT_EQ(spec.scheduler->stats().n_draft_total, static_cast<uint64_t>(a.result.timings.draft_n));
}

// A forced answer (GenerationRequest::replay) that copies runs of its prompt,
// with new tokens between them: guesses come true for whole runs and fail at
// their ends, so every path is taken (all kept, some kept, none kept; hybrid
// models rolled back). The probability each token had is the one it has
// without speculation: the model saw the same context at every step.
void expect_same_probabilities(const std::string& model, const std::string& kv,
                               DraftKind kind = DraftKind::ngram_simple) {
    std::vector<int32_t> prompt = repetitive_prompt(21);
    for (int i = 0; i < 40; ++i) prompt.push_back(3 + (i * 13) % 97);
    std::vector<int32_t> answer;
    for (int run = 0; run < 4; ++run) {
        answer.insert(answer.end(), prompt.begin() + 61 + 7 * run, prompt.begin() + 75 + 7 * run);
        answer.push_back(120 + run);
        answer.push_back(121 + run);
    }
    auto forced = [&] {
        GenerationRequest rq = request(prompt, static_cast<int64_t>(answer.size()));
        rq.replay = answer;
        rq.sampling.n_probs = 1;
        return rq;
    };
    Rig plain(model, false, 1, 1024, kv), spec(model, true, 1, 1024, kv, kind);
    const Answer want = run(*plain.scheduler, {forced()})[0];
    const Answer got = run(*spec.scheduler, {forced()})[0];
    ASSERT_EQ(got.tokens, answer);
    ASSERT_EQ(got.probs.size(), answer.size());
    ASSERT_EQ(want.probs.size(), answer.size());
    for (size_t i = 0; i < answer.size(); ++i)
        EXPECT_NEAR(got.probs[i], want.probs[i], 1e-5f) << model << " kv " << kv << " token " << i;
    const Timings& t = got.result.timings;
    EXPECT_GT(t.draft_n_accepted, 0) << model;
    EXPECT_LT(t.draft_n_accepted, t.draft_n) << model << ": no guess was rejected";
    const SlotInfo slot = spec.scheduler->slots()[0];
    EXPECT_EQ(spec.engine->cache().seq_length(0), slot.n_cached);
}

TEST(SpeculativeDecoding, forced_answers_see_the_context_they_see_without_speculation) {
    expect_same_probabilities(demo_model(), "f16");
    MOESERVE_REQUIRE_FIXTURES();
    expect_same_probabilities(test::fixture("models/qwen3moe-tiny-s1-q4_k_m.gguf").string(), "q4_0");
    expect_same_probabilities(test::fixture("models/glm47flash-tiny-s1-q8_0.gguf").string(), "f16");
    expect_same_probabilities(test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(), "f16");
    expect_same_probabilities(test::fixture("models/nemotron-h-moe-tiny-s1-iq4_xs.gguf").string(), "q4_0");
}

TEST(SpeculativeDecoding, hybrid_models_roll_their_recurrent_state_back_and_answer_the_same) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* weights : {"f16", "q4_k_m"}) {
        const std::string model = test::fixture(std::string("models/nemotron-h-moe-tiny-s1-") + weights + ".gguf");
        N_GEN = 160;
        expect_same_answers(model, "f16", 0.0f);
        N_GEN = 64;
    }
}

TEST(SpeculativeDecoding, a_hybrid_cache_without_rollback_copies_does_not_speculate) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string model = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    Rig rig(model, false);
    SchedulerOptions so = rig.scheduler->options();
    so.speculative = spec_config(true);  // asked for, but the engine was built without EngineOptions::speculative
    Scheduler s(rig.engine->model(), rig.engine->cache(), *rig.tokenizer, so);
    EXPECT_FALSE(s.speculating());
    EXPECT_EQ(run(s, {request(repetitive_prompt(6), 24)})[0].result.timings.draft_n, 0);
    EXPECT_EQ(s.stats().n_draft_total, 0u);
}

TEST(SpeculativeDecoding, logits_rows_for_the_guesses_and_hybrid_rollback_copies_are_planned) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const char* stem : {"nemotron-h-moe-tiny-s1-q8_0", "qwen3moe-tiny-s1-q8_0"}) {
        EngineOptions eo;
        eo.model_path = test::fixture(std::string("models/") + stem + ".gguf").string();
        eo.n_threads = 2;
        eo.n_ctx = 1024;
        eo.n_seq = 3;
        Engine off(eo);
        eo.speculative = true;
        Engine on(eo);
        const uint64_t copies = on.cache().has_recurrent() ? 3 * off.plan().recurrent_bytes_per_seq : 0;
        EXPECT_EQ(on.cache().has_recurrent(), std::string(stem).starts_with("nemotron"));
        if (on.cache().has_recurrent()) EXPECT_GT(copies, 0u);
        EXPECT_EQ(on.plan().recurrent_bytes, off.plan().recurrent_bytes + copies) << stem;
        EXPECT_EQ(on.cache().bytes(), off.cache().bytes() + copies) << stem;
        // A step's logits rows: one per slot, and with guesses 1 + 16 per slot (llama-server's
        // n_outputs_max = min(n_batch, np x (1 + draft_max))).
        EXPECT_EQ(off.plan().n_outputs, 3);
        EXPECT_EQ(on.plan().n_outputs, 3 * 17);
        EXPECT_EQ(on.plan().output_bytes, static_cast<uint64_t>(3 * 17 * on.n_vocab() * 4));
    }
}

// ---------------------------------------------------------------- ngram-mod

TEST(SpeculativeDecodingNgramMod, answers_are_the_answers_without_speculation) {
    N_GEN = 160;  // long enough for the random models' answers to repeat runs of 4 tokens
    uint64_t kept = expect_same_answers(demo_model(), "f16", 0.0f, DraftKind::ngram_mod);
    kept += expect_same_answers(demo_model(), "f16", 0.8f, DraftKind::ngram_mod);
    if (test::have_fixtures()) {
        kept += expect_same_answers(test::fixture("models/qwen3moe-tiny-s1-q8_0.gguf").string(), "q4_0", 0.0f,
                                    DraftKind::ngram_mod);
        // The hybrid: rolled back at every rejected guess.
        kept += expect_same_answers(test::fixture("models/nemotron-h-moe-tiny-s1-q4_k_m.gguf").string(), "f16", 0.0f,
                                    DraftKind::ngram_mod);
    }
    N_GEN = 64;
    EXPECT_GT(kept, 10u) << "hardly a guess was confirmed: the answers tested little";
}

TEST(SpeculativeDecodingNgramMod, forced_answers_see_the_context_they_see_without_speculation) {
    expect_same_probabilities(demo_model(), "f16", DraftKind::ngram_mod);
    MOESERVE_REQUIRE_FIXTURES();
    expect_same_probabilities(test::fixture("models/glm47flash-tiny-s1-q4_k_m.gguf").string(), "q8_0",
                              DraftKind::ngram_mod);
    expect_same_probabilities(test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(), "q4_0",
                              DraftKind::ngram_mod);
}

// The pool is shared: a request whose answer repeats what another slot's
// request read is guessed, which ngram-simple (the slot's own history only)
// cannot do.
TEST(SpeculativeDecodingNgramMod, a_slot_guesses_from_what_another_slot_read) {
    const std::string model = demo_model();
    std::vector<int32_t> source;  // another conversation's prompt (the demo model has 259 tokens)
    for (int i = 0; i < 200; ++i) source.push_back(3 + (i * 37 + i / 7) % 250);
    std::vector<int32_t> other;  // this one's prompt shares nothing with it ...
    for (int i = 0; i < 40; ++i) other.push_back(3 + (i * 101 + 7) % 250);
    std::vector<int32_t> answer(source.begin() + 50, source.begin() + 130);  // ... but its answer quotes it
    auto quoting = [&] {
        GenerationRequest rq = request(other, static_cast<int64_t>(answer.size()));
        rq.replay = answer;
        return rq;
    };
    for (DraftKind kind : {DraftKind::ngram_mod, DraftKind::ngram_simple}) {
        Rig rig(model, true, 2, 1024, "f16", kind);
        run(*rig.scheduler, {request(source, 4)});  // slot 0 reads the source
        GenerationRequest rq = quoting();
        rq.id_slot = 1;
        const Answer a = run(*rig.scheduler, {rq})[0];
        ASSERT_EQ(a.tokens, answer);
        if (kind == DraftKind::ngram_mod)
            EXPECT_GT(a.result.timings.draft_n_accepted, 60) << "the quote was not guessed from slot 0's prompt";
        else  // (a pair of tokens may repeat by chance, not a run)
            EXPECT_LT(a.result.timings.draft_n_accepted, 10);
    }
}

// --spec-type ngram-mod,ngram-simple: ngram-mod first, ngram-simple where the pool has nothing.
TEST(SpeculativeDecodingNgramMod, kinds_are_asked_in_the_order_given) {
    SpeculativeConfig c = spec_config(true);
    c.kinds = {DraftKind::ngram_mod, DraftKind::ngram_simple};
    c.mod = NgramModConfig{3, 1, 6};
    Drafter d(c, 1);
    const std::vector<int32_t> history = {99, 1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 52, 1, 2};
    // The prompt's n-grams are in the pool: 1 2 3 -> 4 -> 5 ..., a walk of 6.
    EXPECT_EQ(d.draft(0, 1, history, 3, 16), (std::vector<int32_t>{4, 5, 6, 7, 8, 50}));
    // A limit cuts the walk.
    EXPECT_EQ(d.draft(0, 1, history, 3, 2), (std::vector<int32_t>{4, 5}));
    // 51 52 9: nothing in the pool, nor in the history.
    EXPECT_TRUE(d.draft(0, 1, std::vector<int32_t>(history.begin(), history.end() - 2), 9, 16).empty());
    c.kinds = {DraftKind::ngram_simple, DraftKind::ngram_mod};
    c.ngram = NgramDraftConfig{3, 4};
    Drafter simple_first(c, 1);
    EXPECT_EQ(simple_first.draft(0, 1, history, 3, 16), (std::vector<int32_t>{4, 5, 6, 7}));
}

}  // namespace
}  // namespace moeserve
