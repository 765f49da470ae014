// Token sampling: llama.cpp's common sampler chain for one sequence.
//
// SamplingParams holds the generation parameters under llama-server's request
// names and defaults. A Sampler turns one row of logits into a token through the
// chain llama-server builds:
//
//   mirostat = 0:  logit_bias → samplers (default: penalties, dry, top_n_sigma,
//                  top_k, typical_p, top_p, min_p, xtc, temperature) → dist(seed)
//   mirostat = 1:  logit_bias → temperature (no dynatemp) → Mirostat(seed)
//   mirostat = 2:  logit_bias → temperature (no dynatemp) → Mirostat 2(seed)
//
// With mirostat on, the `samplers` list (penalties and DRY included) is not used,
// as in llama.cpp. Mirostat keeps its target surprise mu (2 * tau at the start)
// across the tokens of the sequence and draws with std::discrete_distribution,
// as llama.cpp does; reset() restores mu.
//
// The stages follow llama.cpp's arithmetic and candidate order, and the final
// draw uses the same generator (std::mt19937 seeded with `seed`, one
// std::uniform_real_distribution<double> draw per token), so a fixed seed gives
// the same tokens as llama.cpp for the same logits (ties aside).
//
// The caller feeds every token of the sequence to accept(), prompt tokens
// included, as llama-server primes its sampler with the prompt; the penalties
// look at the last repeat_last_n of them, DRY at the last dry_penalty_last_n
// (engine/sampler_dry.h). sample() does not accept its own token.
//
// DRY's sequence breakers are strings; matching them needs the vocabulary, so
// the caller that has the tokenizer fills `dry_breakers` from
// `dry_sequence_breakers` (match_dry_sequence_breakers). Without it DRY runs
// with no breakers.
//
// After sample(), post_sampling_probs() gives the candidates that survived the
// chain with their final probabilities (llama-server's `post_sampling_probs`;
// for greedy sampling with n_probs = 0, which takes a one-pass argmax path,
// only the chosen token, at probability 1: the others would all be 0);
// raw_token_probs() gives the softmax of the raw logits (its default `n_probs`).
//
// One Sampler per sequence; it allocates its buffers up front ([n_vocab]) and
// nothing per token, except DRY's history buffers as the history grows and
// Mirostat's draw (std::discrete_distribution builds its table per draw).
// Samplers share no state, so slots can sample on different threads.
//
// Grammars are applied around the chain (engine/grammar_sampler.h).
// llama.cpp's infill and adaptive_p samplers are not part of moeserve (there
// is no /infill endpoint); naming them in `samplers` is a 400 that says so.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/sampler_dry.h"

namespace moeserve {

// llama.cpp's LLAMA_DEFAULT_SEED: draw a random seed.
inline constexpr uint32_t kRandomSeed = 0xFFFFFFFFu;

enum class SamplerType { penalties, dry, top_n_sigma, top_k, typical_p, top_p, min_p, xtc, temperature };

// "top_k", "top-k", "topk"... as llama-server's `samplers` field accepts them;
// nullopt for an unknown name.
std::optional<SamplerType> sampler_type_from_name(std::string_view name);
// The one-letter form ("edskypmxt"); nullopt for an unknown letter.
std::optional<SamplerType> sampler_type_from_char(char c);
std::string_view sampler_type_name(SamplerType type);

struct LogitBias {
    int32_t token = 0;
    float bias = 0.0f;  // -inf bans the token
};

struct SamplingParams {
    uint32_t seed = kRandomSeed;

    float temperature = 0.8f;  // <= 0: greedy (only the arg-max keeps a probability)
    float dynatemp_range = 0.0f;
    float dynatemp_exponent = 1.0f;

    int32_t top_k = 40;            // <= 0: off
    float top_p = 0.95f;           // >= 1: off
    float min_p = 0.05f;           // <= 0: off
    float typical_p = 1.0f;        // >= 1: off
    float top_n_sigma = -1.0f;     // <= 0: off
    float xtc_probability = 0.0f;  // <= 0: off
    float xtc_threshold = 0.1f;    // > 0.5: off

    float repeat_penalty = 1.0f;    // logit > 0 is divided by it, logit <= 0 multiplied
    int32_t repeat_last_n = 64;     // window of accepted tokens; 0: off; -1: the context size
    float presence_penalty = 0.0f;  // logit -= count * frequency + (count > 0) * presence
    float frequency_penalty = 0.0f;

    // DRY (sampler_dry.h): on when dry_multiplier != 0, dry_base >= 1 and dry_penalty_last_n != 0.
    float dry_multiplier = 0.0f;
    float dry_base = 1.75f;
    int32_t dry_allowed_length = 2;   // repeats up to this long are free
    int32_t dry_penalty_last_n = -1;  // window of accepted tokens; 0: off; -1: the context size
    std::vector<std::string> dry_sequence_breakers = {"\n", ":", "\"", "*"};
    // dry_sequence_breakers matched against the model's vocabulary; null: no breakers.
    std::shared_ptr<const DrySequenceBreakers> dry_breakers;

    int32_t mirostat = 0;       // 0: off; 1: Mirostat; 2: Mirostat 2.0 (replaces the samplers)
    float mirostat_tau = 5.0f;  // target surprise (bits)
    float mirostat_eta = 0.1f;  // learning rate of mu

    int32_t min_keep = 0;  // top_p, min_p, typical_p and xtc keep at least this many
    int32_t n_probs = 0;   // how many probabilities the server reports per token

    std::vector<LogitBias> logit_bias;
    std::vector<SamplerType> samplers = {SamplerType::penalties, SamplerType::dry,       SamplerType::top_n_sigma,
                                         SamplerType::top_k,     SamplerType::typical_p, SamplerType::top_p,
                                         SamplerType::min_p,     SamplerType::xtc,       SamplerType::temperature};
};

struct TokenProb {
    int32_t token = 0;
    float prob = 0.0f;
};

class Sampler {
  public:
    // Throws std::invalid_argument naming the parameter for values no request can
    // mean (n_vocab <= 0, repeat_last_n or dry_penalty_last_n < -1, min_keep < 0,
    // a NaN or infinite float, a logit_bias token outside the vocabulary,
    // n_probs < 0). Soft ranges are clamped as llama-server does: top_k < 0 → 0,
    // top_p and min_p into [0, 1], xtc_probability and xtc_threshold into [0, 1],
    // temperature < 0 → 0, mirostat into [0, 2]. n_ctx is the sequence's context
    // size, used when repeat_last_n or dry_penalty_last_n is -1 (0: unbounded);
    // llama.cpp also caps DRY's window at n_ctx_train, which a slot's context
    // never exceeds.
    Sampler(const SamplingParams& params, int32_t n_vocab, int32_t n_ctx = 0);

    // Picks a token from one row of logits ([n_vocab]). Does not accept it.
    int32_t sample(std::span<const float> logits);

    // Records a token of the sequence (prompt or generated) for the penalties and DRY.
    void accept(int32_t token);

    // Forgets the history, restores Mirostat's mu and restarts the generator: a
    // fixed seed replays the same draws, the random seed draws a new one.
    void reset();

    // After sample(): the n most probable candidates left by the chain, by
    // probability, highest first (zero probabilities included; may be fewer than
    // n). Valid until the next sample().
    std::span<const TokenProb> post_sampling_probs(size_t n);
    // After sample(): the final probability of the sampled token.
    float sampled_prob() const { return sampled_prob_; }

    const SamplingParams& params() const { return params_; }
    // The seed in use: params().seed, or the one drawn for kRandomSeed.
    uint32_t seed() const { return seed_cur_; }
    int32_t n_vocab() const { return n_vocab_; }
    // Mirostat's current target surprise (2 * mirostat_tau until the first sample()).
    float mirostat_mu() const { return mu_; }

  private:
    struct Candidate {
        int32_t id;
        float logit;
        float p;
    };

    void apply_logit_bias();
    void apply_penalties();
    void apply_dry();
    void apply_top_n_sigma();
    void apply_top_k(int32_t k);
    // Greedy, logit_bias, no penalties: the biased row's first argmax, or -1 where the
    // copying path must decide (the raw winner is biased, a NaN, no finite winner).
    int32_t biased_argmax(std::span<const float> logits) const;
    int32_t greedy_answer(int32_t token, float logit);
    void apply_typical();
    void apply_top_p();
    void apply_min_p();
    void apply_xtc();
    void apply_temperature();
    void scale_by_temperature(float temp);
    void select_by_distribution();
    void select_by_mirostat();  // params_.mirostat 1 or 2, on the materialized list

    // Whether the chain is greedy in a way that reduces to the argmax of the penalized logits
    // (see sample()); decided once, from the parameters.
    bool chain_is_plain_greedy() const;

    void sort_prefix(size_t k);  // the k highest logits first, descending; drops the rest
    void softmax(bool sort);     // fills p from logit

    // The list starts "dense": every token, in id order, logits read from dense_ without
    // building Candidates. Penalties, logit_bias, top_k and min_p work on that form directly
    // (so the default chain never touches 150k Candidates); other stages materialize() first.
    float* writable_dense();
    void materialize();
    void select_top_k_dense(size_t k);

    SamplingParams params_;
    int32_t n_vocab_;
    size_t window_;  // penalty window in tokens; SIZE_MAX: unbounded
    uint32_t seed_cur_ = 0;
    uint32_t xtc_seed_cur_ = 0;
    std::mt19937 rng_;
    std::mt19937 xtc_rng_;

    // Penalty history: a ring of the last window_ tokens and a count per token.
    std::vector<int32_t> history_;
    size_t history_head_ = 0;      // next slot to overwrite once the ring is full
    std::vector<int32_t> counts_;  // [n_vocab]

    std::unique_ptr<DryPenalty> dry_;                // null: DRY off or not in the chain
    std::unordered_map<int32_t, float> dry_lookup_;  // penalties by token, for filtered candidate lists

    float mu_ = 0.0f;              // Mirostat's target surprise, kept across tokens
    std::vector<double> weights_;  // Mirostat's draw weights

    // The working candidate list, reused across calls: cand_[0, size_), unless dense_ is set.
    const float* dense_ = nullptr;   // [n_vocab]: the caller's logits, or dense_copy_ once written
    std::vector<float> dense_copy_;  // [n_vocab], allocated on first write
    std::vector<Candidate> cand_;
    size_t size_ = 0;
    bool sorted_ = false;    // descending by logit
    bool identity_ = false;  // cand_[i].id == i for every i (untouched order, full vocabulary)
    int32_t selected_ = -1;
    float sampled_prob_ = 0.0f;
    bool greedy_argmax_ = false;  // chain_is_plain_greedy()

    std::vector<Candidate> scratch_;
    std::vector<std::pair<float, uint32_t>> scored_;
    std::vector<TokenProb> probs_out_;
};

// Softmax of the raw logits ([n_vocab]) as llama-server reports it without
// post_sampling_probs: fills `top` with the n most probable tokens, highest
// first (ties: lower id first), and returns the probability of `token`.
// Allocates nothing when `top` already has capacity n.
float raw_token_probs(std::span<const float> logits, int32_t token, size_t n, std::vector<TokenProb>& top);

}  // namespace moeserve
