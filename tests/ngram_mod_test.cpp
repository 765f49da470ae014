// llama.cpp's ngram-mod guesses (serve --spec-type ngram-mod): the hashed
// pool of n-grams and the walk through it, and what the drafter keeps
// between steps (the pool shared by the slots, its resets). The scheduler's
// answers with these guesses are tested in speculative_decoding_test.cpp.
#include <gtest/gtest.h>

#include "engine/drafter.h"
#include "engine/ngram_mod.h"

namespace moeserve {
namespace {

using Tokens = std::vector<int32_t>;

// Adds every n-gram of `text` with its next token, as a prompt does.
void add_all(NgramModPool& pool, const Tokens& text) {
    for (size_t i = 0; i + static_cast<size_t>(pool.n()) < text.size(); ++i) pool.add(text.data() + i);
}

TEST(NgramModPool, maps_each_n_gram_to_the_token_that_followed_it_last) {
    NgramModPool pool(3, 1 << 16);
    add_all(pool, {10, 11, 12, 13, 14, 10, 11, 12, 20});
    const Tokens a = {10, 11, 12}, b = {11, 12, 13}, c = {12, 13, 14}, none = {12, 11, 10};
    EXPECT_EQ(pool.get(a.data()), 20);  // 13 first, then 20: the newer one stays
    EXPECT_EQ(pool.get(b.data()), 14);
    EXPECT_EQ(pool.get(c.data()), 10);
    EXPECT_EQ(pool.get(none.data()), NgramModPool::kEmpty);
    // llama.cpp's count of additions that found their entry in use: 10 11 12 twice.
    EXPECT_EQ(pool.used(), 1u);
    pool.reset();
    EXPECT_EQ(pool.get(a.data()), NgramModPool::kEmpty);
    EXPECT_EQ(pool.used(), 0u);
    EXPECT_EQ(NgramModPool(24).bytes(), size_t{16} << 20);  // llama.cpp's 4M entries
}

TEST(NgramModPool, the_hash_is_llama_cpp_s) {
    // The index folds h = h * 6364136223846793005 + token over the key, modulo
    // the size: for 1 2, M + 2 = 6364136223846793007, entry 7 of 1000; for 0 7,
    // 7, the same entry. Another hash would not put these two together.
    NgramModPool pool(2, 1000);
    const Tokens key = {1, 2, 77}, collides = {0, 7}, apart = {0, 8};
    pool.add(key.data());
    EXPECT_EQ(pool.get(key.data()), 77);
    EXPECT_EQ(pool.get(collides.data()), 77);  // a collision costs a wrong guess, no more
    EXPECT_EQ(pool.get(apart.data()), NgramModPool::kEmpty);
}

TEST(NgramModDraft, walks_the_pool_from_the_last_tokens_and_the_sampled_one) {
    NgramModPool pool(3, 1 << 16);
    const Tokens text = {5, 6, 7, 8, 9, 30, 31, 32};
    add_all(pool, text);
    // History ... 5 6, sampled 7: 5 6 7 -> 8 -> 9 -> 30 -> 31 -> 32, then nothing.
    EXPECT_EQ(ngram_mod_draft(pool, Tokens{1, 2, 5, 6}, 7, 1, 64), (Tokens{8, 9, 30, 31, 32}));
    // At most n_max; a walk that stops before n_min is no draft.
    EXPECT_EQ(ngram_mod_draft(pool, Tokens{1, 2, 5, 6}, 7, 1, 2), (Tokens{8, 9}));
    EXPECT_EQ(ngram_mod_draft(pool, Tokens{1, 2, 5, 6}, 7, 5, 64).size(), 5u);
    EXPECT_TRUE(ngram_mod_draft(pool, Tokens{1, 2, 5, 6}, 7, 6, 64).empty());
    // Nothing recorded after 5 6 8; a history shorter than n.
    EXPECT_TRUE(ngram_mod_draft(pool, Tokens{1, 2, 5, 6}, 8, 1, 64).empty());
    EXPECT_TRUE(ngram_mod_draft(pool, Tokens{5, 6}, 7, 1, 64).empty());  // (llama.cpp asks for n)
    EXPECT_EQ(ngram_mod_draft(pool, Tokens{0, 5, 6}, 7, 1, 64).size(), 5u);
}

TEST(NgramModDraft, a_walk_can_cycle_through_a_repeated_text) {
    NgramModPool pool(2, 1 << 16);
    add_all(pool, {1, 2, 3, 1, 2, 3, 1});
    EXPECT_EQ(ngram_mod_draft(pool, Tokens{3, 1}, 2, 1, 7), (Tokens{3, 1, 2, 3, 1, 2, 3}));
}

SpeculativeConfig mod_config(int n_match, int n_min, int n_max) {
    SpeculativeConfig c;
    c.enabled = true;
    c.kinds = {DraftKind::ngram_mod};
    c.mod = NgramModConfig{n_match, n_min, n_max};
    return c;
}

TEST(NgramModDrafter, a_task_s_prompt_goes_into_the_pool_that_every_slot_reads) {
    Drafter d(mod_config(3, 1, 8), 2);
    EXPECT_EQ(d.pool_bytes(), size_t{16} << 20);
    const Tokens prompt = {40, 41, 42, 43, 44, 45, 46, 47};
    // Slot 0's first draft for task 1 adds its prompt: 42 43 44 -> 45 ...
    EXPECT_EQ(d.draft(0, 1, prompt, 90, 8), Tokens{});
    // Slot 1, another task and text, quotes slot 0's prompt.
    EXPECT_EQ(d.draft(1, 2, Tokens{7, 8, 42, 43}, 44, 8), (Tokens{45, 46, 47}));
    // Without ngram-mod there is no pool.
    SpeculativeConfig simple;
    simple.enabled = true;
    simple.kinds = {DraftKind::ngram_simple};
    EXPECT_EQ(Drafter(simple, 2).pool_bytes(), 0u);
}

TEST(NgramModDrafter, the_answer_goes_into_the_pool_once_32_more_tokens_are_there) {
    Drafter d(mod_config(3, 1, 8), 1);
    Tokens history = {1, 2, 3};
    EXPECT_TRUE(d.draft(0, 1, history, 4, 8).empty());  // the prompt: nothing follows 2 3 4 yet
    for (int32_t t = 100; t < 128; ++t) history.push_back(t);
    const Tokens quote = {9, 100, 101};
    // 31 tokens, 31 past what the pool has: the answer's n-grams are not in yet.
    EXPECT_TRUE(d.draft(0, 1, history, 5, 8).empty());
    EXPECT_TRUE(d.draft(0, 1, quote, 102, 4).empty());
    history.push_back(128);
    history.push_back(129);  // 33: more than 32, as llama.cpp adds them
    EXPECT_TRUE(d.draft(0, 1, history, 5, 8).empty());
    EXPECT_EQ(d.draft(0, 1, quote, 102, 4), (Tokens{103, 104, 105, 106}));
}

TEST(NgramModDrafter, three_poor_drafts_in_a_row_clear_the_pool) {
    Drafter d(mod_config(3, 1, 8), 1);
    const Tokens prompt = {40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50};
    EXPECT_TRUE(d.draft(0, 7, prompt, 1, 8).empty());  // task 7 begins: its prompt goes into the pool
    auto guess = [&] { return d.draft(0, 7, Tokens{39, 40, 41}, 42, 8); };  // 43 ... 50
    ASSERT_EQ(guess().size(), 8u);
    d.accept(0, 8);  // all kept
    ASSERT_EQ(guess().size(), 8u);
    d.accept(0, 3);  // 3 of 8: poor
    ASSERT_EQ(guess().size(), 8u);
    d.accept(0, 4);  // half: not poor, the streak ends
    ASSERT_EQ(guess().size(), 8u);
    d.accept(0, 0);
    ASSERT_EQ(guess().size(), 8u);
    d.accept(0, 1);
    EXPECT_EQ(d.pool_resets(), 0u);
    ASSERT_EQ(guess().size(), 8u);
    d.accept(0, 2);  // the third poor one in a row
    EXPECT_EQ(d.pool_resets(), 1u);
    EXPECT_TRUE(guess().empty());
}

TEST(NgramModDrafter, a_pool_more_than_a_quarter_overwritten_is_cleared_at_a_prompt) {
    // The drafter's pool has llama.cpp's 4M entries; a prompt that repeats a
    // cycle of 4 tokens for 2M tokens overwrites its 4 entries 2M times
    // (llama.cpp's "used" count: half the size).
    Drafter d(mod_config(2, 1, 8), 1);
    Tokens prompt;
    for (int i = 0; i < (1 << 21) + 10; ++i) prompt.push_back(i % 4);
    EXPECT_TRUE(d.draft(0, 1, prompt, 9, 8).empty());
    EXPECT_EQ(d.pool_resets(), 1u);
    EXPECT_TRUE(d.draft(0, 1, Tokens{0, 1}, 2, 8).empty());  // the pool is empty again
}

}  // namespace
}  // namespace moeserve
