// Token sampling: llama.cpp's common sampler chain. See sampler.h.
#include "engine/sampler.h"

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace moeserve {

namespace {

constexpr size_t kUnboundedWindow = std::numeric_limits<size_t>::max();

// Below this many kept candidates a heap-based partial sort beats selection.
constexpr size_t kPartialSortLimit = 128;
// top_p on an unsorted list first sorts only this many, as llama.cpp does.
constexpr size_t kTopPFirstGuess = 256;

uint32_t resolve_seed(uint32_t seed) {
    if (seed != kRandomSeed) return seed;
    std::random_device rd;
    if (rd.entropy() == 0) {
        // random_device may be a fixed-sequence PRNG; the clock is then the better source.
        return static_cast<uint32_t>(std::chrono::system_clock::now().time_since_epoch().count());
    }
    return rd();
}

void require_finite(float value, const char* name) {
    if (!std::isfinite(value)) {
        throw std::invalid_argument(std::string("sampling parameter '") + name + "' must be a finite number, got " +
                                    std::to_string(value));
    }
}

// Descending logit, ties by id so the order does not depend on the sort algorithm.
bool logit_before(int32_t a_id, float a_logit, int32_t b_id, float b_logit) {
    return a_logit > b_logit || (a_logit == b_logit && a_id < b_id);
}

// The largest of get(0..n-1). Sixteen independent running maxima: a single one is bound by the
// latency of each max, and the compiler may not reorder a float reduction itself.
template <typename Get>
float max_of(size_t n, Get get) {
    constexpr size_t kLanes = 16;
    float lane[kLanes];
    std::fill(lane, lane + kLanes, -FLT_MAX);
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        for (size_t l = 0; l < kLanes; ++l) lane[l] = std::max(lane[l], get(i + l));
    }
    float m = -FLT_MAX;
    for (float v : lane) m = std::max(m, v);
    for (; i < n; ++i) m = std::max(m, get(i));
    return m;
}

// The position of the first largest of row[0..n-1] (0 if none beats -inf), and whether any is
// NaN (NaN never wins). Blocks of 64 are first compared with the best so far in one vectorized
// pass; only a block holding a higher value is scanned again, which is rare after the first few.
size_t first_argmax(const float* row, size_t n, bool& nan) {
    constexpr size_t kBlock = 64;
    float best = -INFINITY;
    size_t arg = 0;
    int any_nan = 0;
    auto scan = [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) {
            if (row[i] > best) best = row[i], arg = i;
        }
    };
    size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        int above = 0, block_nan = 0;
        for (size_t j = 0; j < kBlock; ++j) {
            above |= row[i + j] > best;
            block_nan |= row[i + j] != row[i + j];
        }
        any_nan |= block_nan;
        if (above) scan(i, i + kBlock);
    }
    for (size_t j = i; j < n; ++j) any_nan |= row[j] != row[j];
    scan(i, n);
    nan = any_nan != 0;
    return arg;
}

struct NameEntry {
    std::string_view name;
    SamplerType type;
};

// Canonical names as llama.cpp spells them; aliases are derived in sampler_type_from_name.
constexpr NameEntry kCanonicalNames[] = {
    {"penalties", SamplerType::penalties}, {"dry", SamplerType::dry},         {"top_n_sigma", SamplerType::top_n_sigma},
    {"top_k", SamplerType::top_k},         {"typ_p", SamplerType::typical_p}, {"top_p", SamplerType::top_p},
    {"min_p", SamplerType::min_p},         {"xtc", SamplerType::xtc},         {"temperature", SamplerType::temperature},
};

}  // namespace

std::optional<SamplerType> sampler_type_from_name(std::string_view name) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "nucleus") return SamplerType::top_p;
    if (lower == "temp") return SamplerType::temperature;
    if (lower == "typ") return SamplerType::typical_p;
    for (const NameEntry& e : kCanonicalNames) {
        if (lower == e.name) return e.type;
        // "top-k" and "topk" for "top_k"
        std::string kebab(e.name), squashed;
        std::replace(kebab.begin(), kebab.end(), '_', '-');
        for (char c : e.name) {
            if (c != '_') squashed.push_back(c);
        }
        if (lower == kebab || lower == squashed) return e.type;
    }
    return std::nullopt;
}

std::optional<SamplerType> sampler_type_from_char(char c) {
    switch (c) {
        case 'e':
            return SamplerType::penalties;
        case 'd':
            return SamplerType::dry;
        case 's':
            return SamplerType::top_n_sigma;
        case 'k':
            return SamplerType::top_k;
        case 'y':
            return SamplerType::typical_p;
        case 'p':
            return SamplerType::top_p;
        case 'm':
            return SamplerType::min_p;
        case 'x':
            return SamplerType::xtc;
        case 't':
            return SamplerType::temperature;
        default:
            return std::nullopt;
    }
}

std::string_view sampler_type_name(SamplerType type) {
    for (const NameEntry& e : kCanonicalNames) {
        if (e.type == type) return e.name;
    }
    return "unknown";
}

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab, int32_t n_ctx) : params_(params), n_vocab_(n_vocab) {
    if (n_vocab <= 0) throw std::invalid_argument("sampler: n_vocab must be positive, got " + std::to_string(n_vocab));
    if (n_ctx < 0) throw std::invalid_argument("sampler: n_ctx must not be negative, got " + std::to_string(n_ctx));
    SamplingParams& p = params_;
    require_finite(p.temperature, "temperature");
    require_finite(p.dynatemp_range, "dynatemp_range");
    require_finite(p.dynatemp_exponent, "dynatemp_exponent");
    require_finite(p.top_p, "top_p");
    require_finite(p.min_p, "min_p");
    require_finite(p.typical_p, "typical_p");
    require_finite(p.top_n_sigma, "top_n_sigma");
    require_finite(p.xtc_probability, "xtc_probability");
    require_finite(p.xtc_threshold, "xtc_threshold");
    require_finite(p.repeat_penalty, "repeat_penalty");
    require_finite(p.presence_penalty, "presence_penalty");
    require_finite(p.frequency_penalty, "frequency_penalty");
    require_finite(p.dry_multiplier, "dry_multiplier");
    require_finite(p.dry_base, "dry_base");
    require_finite(p.mirostat_tau, "mirostat_tau");
    require_finite(p.mirostat_eta, "mirostat_eta");
    if (p.dry_penalty_last_n < -1) {
        throw std::invalid_argument("sampling parameter 'dry_penalty_last_n' must be -1 or more, got " +
                                    std::to_string(p.dry_penalty_last_n));
    }
    if (p.repeat_last_n < -1) {
        throw std::invalid_argument("sampling parameter 'repeat_last_n' must be -1 or more, got " +
                                    std::to_string(p.repeat_last_n));
    }
    if (p.min_keep < 0) {
        throw std::invalid_argument("sampling parameter 'min_keep' must not be negative, got " +
                                    std::to_string(p.min_keep));
    }
    if (p.n_probs < 0) {
        throw std::invalid_argument("sampling parameter 'n_probs' must not be negative, got " +
                                    std::to_string(p.n_probs));
    }
    for (const LogitBias& b : p.logit_bias) {
        if (b.token < 0 || b.token >= n_vocab) {
            throw std::invalid_argument("sampling parameter 'logit_bias': token " + std::to_string(b.token) +
                                        " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        }
        if (std::isnan(b.bias)) {
            throw std::invalid_argument("sampling parameter 'logit_bias': bias for token " + std::to_string(b.token) +
                                        " is NaN");
        }
    }

    // Soft ranges, clamped as llama-server clamps request values.
    p.temperature = std::max(p.temperature, 0.0f);
    p.top_k = std::max(p.top_k, 0);
    p.top_p = std::clamp(p.top_p, 0.0f, 1.0f);
    p.min_p = std::clamp(p.min_p, 0.0f, 1.0f);
    p.xtc_probability = std::clamp(p.xtc_probability, 0.0f, 1.0f);
    p.xtc_threshold = std::clamp(p.xtc_threshold, 0.0f, 1.0f);
    p.mirostat = std::clamp(p.mirostat, 0, 2);

    if (p.repeat_last_n == -1) {
        window_ = n_ctx > 0 ? static_cast<size_t>(n_ctx) : kUnboundedWindow;
    } else {
        window_ = static_cast<size_t>(p.repeat_last_n);
    }
    const bool penalties_in_chain =
        std::find(p.samplers.begin(), p.samplers.end(), SamplerType::penalties) != p.samplers.end();
    const bool penalties_neutral =
        p.repeat_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f;
    // With mirostat on, the listed samplers are not in the chain at all.
    if (!penalties_in_chain || penalties_neutral || p.mirostat != 0) window_ = 0;  // nothing to record
    if (window_ > 0) counts_.assign(static_cast<size_t>(n_vocab), 0);

    const bool dry_in_chain = std::find(p.samplers.begin(), p.samplers.end(), SamplerType::dry) != p.samplers.end();
    if (dry_in_chain && p.mirostat == 0 && p.dry_multiplier != 0.0f && p.dry_base >= 1.0f &&
        p.dry_penalty_last_n != 0) {
        size_t dry_window = static_cast<size_t>(p.dry_penalty_last_n);
        if (p.dry_penalty_last_n == -1) dry_window = n_ctx > 0 ? static_cast<size_t>(n_ctx) : kUnboundedWindow;
        dry_ = std::make_unique<DryPenalty>(p.dry_multiplier, p.dry_base, p.dry_allowed_length, dry_window,
                                            p.dry_breakers);
    }
    mu_ = 2.0f * p.mirostat_tau;

    cand_.resize(static_cast<size_t>(n_vocab));
    probs_out_.reserve(static_cast<size_t>(p.n_probs));
    greedy_argmax_ = chain_is_plain_greedy();

    seed_cur_ = resolve_seed(p.seed);
    xtc_seed_cur_ = resolve_seed(p.seed);
    rng_.seed(seed_cur_);
    xtc_rng_.seed(xtc_seed_cur_);
}

void Sampler::accept(int32_t token) {
    if (token < 0 || token >= n_vocab_) {
        throw std::out_of_range("sampler: token " + std::to_string(token) + " is outside the vocabulary [0, " +
                                std::to_string(n_vocab_) + ")");
    }
    if (dry_) dry_->accept(token);
    if (window_ == 0) return;
    ++counts_[static_cast<size_t>(token)];
    if (history_.size() < window_) {
        history_.push_back(token);
        return;
    }
    // Ring full: the oldest token leaves the window.
    int32_t& slot = history_[history_head_];
    --counts_[static_cast<size_t>(slot)];
    slot = token;
    history_head_ = (history_head_ + 1) % window_;
}

void Sampler::reset() {
    for (int32_t t : history_) counts_[static_cast<size_t>(t)] = 0;
    history_.clear();
    history_head_ = 0;
    if (dry_) dry_->reset();
    mu_ = 2.0f * params_.mirostat_tau;
    seed_cur_ = resolve_seed(params_.seed);
    xtc_seed_cur_ = resolve_seed(params_.seed);
    rng_.seed(seed_cur_);
    xtc_rng_.seed(xtc_seed_cur_);
    size_ = 0;
    selected_ = -1;
    sampled_prob_ = 0.0f;
}

bool Sampler::chain_is_plain_greedy() const {
    const SamplingParams& p = params_;
    if (p.temperature > 0.0f || p.dynatemp_range > 0.0f || p.n_probs > 0) return false;
    if (p.mirostat != 0) return false;  // a different chain, with state (mu) to update
    const bool typical_active = p.typical_p < 1.0f;
    const bool xtc_active = p.xtc_probability > 0.0f && p.xtc_threshold <= 0.5f;
    bool filtered = false;  // a filter stage ran before this point
    bool temperature = false;
    for (SamplerType type : p.samplers) {
        switch (type) {
            case SamplerType::penalties:
                // Penalties change logits: after a filter (or after the greedy cut) the argmax of
                // the whole penalized row may not be what the chain keeps.
                if (window_ > 0 && (filtered || temperature)) return false;
                break;
            case SamplerType::dry:
                if (dry_) return false;  // changes logits; the fast path applies only the penalties
                break;
            case SamplerType::top_k:
            case SamplerType::top_p:
            case SamplerType::min_p:
            case SamplerType::top_n_sigma:
                filtered = true;  // these always keep the highest logit
                break;
            case SamplerType::typical_p:
                if (typical_active) return false;  // may drop the highest logit
                break;
            case SamplerType::xtc:
                if (xtc_active) return false;  // drops the top choices and draws from its own generator
                break;
            case SamplerType::temperature:
                temperature = true;
                break;
        }
    }
    return temperature;
}

int32_t Sampler::sample(std::span<const float> logits) {
    if (logits.size() != static_cast<size_t>(n_vocab_)) {
        throw std::invalid_argument("sampler: got " + std::to_string(logits.size()) +
                                    " logits, expected n_vocab = " + std::to_string(n_vocab_));
    }
    dense_ = logits.data();
    size_ = logits.size();
    sorted_ = false;
    identity_ = true;
    selected_ = -1;

    if (greedy_argmax_ && window_ == 0 && !params_.logit_bias.empty()) {
        // Greedy with a logit_bias (ignore_eos bans the end tokens this way) and no penalties:
        // the biased row's first argmax without copying the row (a 600 KB copy per token for a
        // 152K vocabulary). Where the raw row's winner is itself biased, the copying path below
        // decides.
        const int32_t best = biased_argmax(logits);
        if (best >= 0) {
            float v = logits[static_cast<size_t>(best)];
            for (const LogitBias& b : params_.logit_bias)
                if (b.token == best) v += b.bias;
            return greedy_answer(best, v);
        }
    }
    apply_logit_bias();
    if (greedy_argmax_) {
        // Greedy without reported probabilities: the chain keeps the first highest logit after
        // the penalties (the filters all keep it, the greedy temperature cuts the rest), and one
        // pass finds it. The distribution's draw is skipped; it could not change the outcome.
        apply_penalties();
        const float* row = dense_;
        bool nan = false;
        const size_t best = first_argmax(row, size_, nan);
        if (!nan && std::isfinite(row[best])) return greedy_answer(static_cast<int32_t>(best), row[best]);
        // Every logit banned, or NaN or infinite logits: the full chain decides, as it always did.
        dense_ = logits.data();
        sorted_ = false;
        identity_ = true;
        apply_logit_bias();
    }
    if (params_.mirostat != 0) {
        materialize();
        scale_by_temperature(params_.temperature);
        select_by_mirostat();
        const Candidate& chosen = cand_[static_cast<size_t>(selected_)];
        sampled_prob_ = chosen.p;
        return chosen.id;
    }
    for (SamplerType type : params_.samplers) {
        switch (type) {
            case SamplerType::penalties:
                apply_penalties();
                break;
            case SamplerType::dry:
                apply_dry();
                break;
            case SamplerType::top_n_sigma:
                apply_top_n_sigma();
                break;
            case SamplerType::top_k:
                apply_top_k(params_.top_k);
                break;
            case SamplerType::typical_p:
                apply_typical();
                break;
            case SamplerType::top_p:
                apply_top_p();
                break;
            case SamplerType::min_p:
                apply_min_p();
                break;
            case SamplerType::xtc:
                apply_xtc();
                break;
            case SamplerType::temperature:
                apply_temperature();
                break;
        }
    }
    materialize();
    select_by_distribution();

    const Candidate& chosen = cand_[static_cast<size_t>(selected_)];
    sampled_prob_ = chosen.p;
    return chosen.id;
}

std::span<const TokenProb> Sampler::post_sampling_probs(size_t n) {
    n = std::min(n, size_);
    auto by_prob = [](const Candidate& a, const Candidate& b) { return a.p > b.p || (a.p == b.p && a.id < b.id); };
    std::partial_sort(cand_.begin(), cand_.begin() + static_cast<ptrdiff_t>(n),
                      cand_.begin() + static_cast<ptrdiff_t>(size_), by_prob);
    sorted_ = false;  // sorted by probability now; logits may tie differently
    probs_out_.resize(n);
    for (size_t i = 0; i < n; ++i) probs_out_[i] = TokenProb{cand_[i].id, cand_[i].p};
    return probs_out_;
}

void Sampler::sort_prefix(size_t k) {
    auto cmp = [](const Candidate& a, const Candidate& b) { return logit_before(a.id, a.logit, b.id, b.logit); };
    auto first = cand_.begin();
    auto end = first + static_cast<ptrdiff_t>(size_);
    auto mid = first + static_cast<ptrdiff_t>(k);
    if (k == size_) {
        std::sort(first, end, cmp);
    } else if (k <= kPartialSortLimit) {
        std::partial_sort(first, mid, end, cmp);
    } else {
        std::nth_element(first, mid, end, cmp);
        std::sort(first, mid, cmp);
    }
    size_ = k;
    sorted_ = true;
    identity_ = false;
}

// The greedy fast paths' outcome: one candidate, chosen with probability 1.
int32_t Sampler::greedy_answer(int32_t token, float logit) {
    cand_[0] = Candidate{token, logit, 1.0f};
    dense_ = nullptr;
    size_ = 1;
    sorted_ = true;
    identity_ = false;
    selected_ = 0;
    sampled_prob_ = 1.0f;
    return token;
}

int32_t Sampler::biased_argmax(std::span<const float> logits) const {
    bool nan = false;
    const size_t raw = first_argmax(logits.data(), logits.size(), nan);
    if (nan) return -1;
    const auto& bias = params_.logit_bias;
    if (bias.size() > 64) return -1;  // the pairwise merging below is for short lists
    for (const LogitBias& b : bias)
        if (static_cast<size_t>(b.token) == raw) return -1;
    // The raw winner is unbiased: it is the first argmax of the unbiased tokens (an earlier
    // equal value would have won). A biased token beats it with a higher biased value, or an
    // equal one at a lower position. Biases add in list order, as apply_logit_bias adds them.
    int32_t best = static_cast<int32_t>(raw);
    float best_v = logits[raw];
    for (size_t k = 0; k < bias.size(); ++k) {
        const int32_t t = bias[k].token;
        bool seen = false;
        for (size_t j = 0; j < k && !seen; ++j) seen = bias[j].token == t;
        if (seen) continue;
        float v = logits[static_cast<size_t>(t)];
        for (size_t j = k; j < bias.size(); ++j)
            if (bias[j].token == t) v += bias[j].bias;
        if (v > best_v || (v == best_v && t < best)) best = t, best_v = v;
    }
    return std::isfinite(best_v) ? best : -1;
}

float* Sampler::writable_dense() {
    if (dense_copy_.empty()) dense_copy_.resize(static_cast<size_t>(n_vocab_));
    if (dense_ != dense_copy_.data()) {
        std::copy(dense_, dense_ + n_vocab_, dense_copy_.begin());
        dense_ = dense_copy_.data();
    }
    return dense_copy_.data();
}

void Sampler::materialize() {
    if (dense_ == nullptr) return;
    for (size_t i = 0; i < size_; ++i) cand_[i] = Candidate{static_cast<int32_t>(i), dense_[i], 0.0f};
    dense_ = nullptr;
}

void Sampler::select_top_k_dense(size_t k) {
    // A heap of the k best so far whose top is the weakest of them; a token enters only if its
    // logit beats that top (a tie loses: it has the higher id). Most blocks of 64 lie wholly
    // below the top and are skipped after one vectorized comparison.
    auto better = [](const Candidate& a, const Candidate& b) { return logit_before(a.id, a.logit, b.id, b.logit); };
    const float* logits = dense_;
    const size_t n = size_;
    for (size_t i = 0; i < k; ++i) cand_[i] = Candidate{static_cast<int32_t>(i), logits[i], 0.0f};
    auto heap_begin = cand_.begin();
    auto heap_end = cand_.begin() + static_cast<ptrdiff_t>(k);
    std::make_heap(heap_begin, heap_end, better);
    float bar = cand_[0].logit;
    auto offer = [&](size_t i) {
        if (!(logits[i] > bar)) return;
        std::pop_heap(heap_begin, heap_end, better);
        *(heap_end - 1) = Candidate{static_cast<int32_t>(i), logits[i], 0.0f};
        std::push_heap(heap_begin, heap_end, better);
        bar = cand_[0].logit;
    };
    constexpr size_t kBlock = 64;
    size_t i = k;
    for (; i < n && i % kBlock != 0; ++i) offer(i);
    for (; i + kBlock <= n; i += kBlock) {
        int any_above = 0;
        for (size_t j = 0; j < kBlock; ++j) any_above |= logits[i + j] > bar;
        if (!any_above) continue;
        for (size_t j = 0; j < kBlock; ++j) offer(i + j);
    }
    for (; i < n; ++i) offer(i);
    std::sort_heap(heap_begin, heap_end, better);

    dense_ = nullptr;
    size_ = k;
    sorted_ = true;
    identity_ = false;
}

void Sampler::softmax(bool sort) {
    if (sort && !sorted_) sort_prefix(size_);
    float max_l = cand_[0].logit;
    if (!sorted_) {
        max_l = std::max(max_l, max_of(size_, [this](size_t i) { return cand_[i].logit; }));
    }
    float sum = 0.0f;
    for (size_t i = 0; i < size_; ++i) {
        const float p = std::exp(cand_[i].logit - max_l);
        cand_[i].p = p;
        sum += p;
    }
    for (size_t i = 0; i < size_; ++i) cand_[i].p /= sum;
}

// Runs first, on the dense list of every token.
void Sampler::apply_logit_bias() {
    if (params_.logit_bias.empty()) return;
    float* logits = writable_dense();
    for (const LogitBias& b : params_.logit_bias) logits[b.token] += b.bias;
}

void Sampler::apply_penalties() {
    if (window_ == 0) return;  // off, or every penalty neutral
    const float repeat = params_.repeat_penalty;
    const float freq = params_.frequency_penalty;
    const float presence = params_.presence_penalty;
    auto penalize = [&](float& logit, int32_t count) {
        // Dividing a negative logit would raise it, so those are multiplied instead.
        if (logit <= 0.0f) {
            logit *= repeat;
        } else {
            logit /= repeat;
        }
        logit -= static_cast<float>(count) * freq + static_cast<float>(count > 0) * presence;
    };
    if (dense_ != nullptr || identity_) {
        // Visit each distinct token of the window once: negate its count as a mark, then restore.
        float* dense = dense_ != nullptr && !history_.empty() ? writable_dense() : nullptr;
        for (int32_t t : history_) {
            int32_t& count = counts_[static_cast<size_t>(t)];
            if (count > 0) {
                if (dense != nullptr) {
                    penalize(dense[t], count);
                } else {
                    penalize(cand_[static_cast<size_t>(t)].logit, count);
                }
                count = -count;
            }
        }
        for (int32_t t : history_) {
            int32_t& count = counts_[static_cast<size_t>(t)];
            count = std::abs(count);
        }
    } else {
        for (size_t i = 0; i < size_; ++i) {
            const int32_t count = counts_[static_cast<size_t>(cand_[i].id)];
            if (count > 0) penalize(cand_[i].logit, count);
        }
    }
    sorted_ = false;
}

void Sampler::apply_dry() {
    if (!dry_) return;
    const std::span<const DryTokenPenalty> penalties = dry_->penalties();
    if (penalties.empty()) return;
    if (dense_ != nullptr) {
        float* logits = writable_dense();
        for (const DryTokenPenalty& p : penalties) logits[p.token] -= p.penalty;
    } else if (identity_) {
        for (const DryTokenPenalty& p : penalties) cand_[static_cast<size_t>(p.token)].logit -= p.penalty;
    } else {
        // A filtered list (DRY placed after a filter): look each candidate up.
        dry_lookup_.clear();
        for (const DryTokenPenalty& p : penalties) dry_lookup_.emplace(p.token, p.penalty);
        for (size_t i = 0; i < size_; ++i) {
            if (auto it = dry_lookup_.find(cand_[i].id); it != dry_lookup_.end()) cand_[i].logit -= it->second;
        }
    }
    sorted_ = false;
}

void Sampler::apply_top_n_sigma() {
    const float n = params_.top_n_sigma;
    if (n <= 0.0f || size_ <= 1) return;
    materialize();
    float max_l = cand_[0].logit;
    float sum = 0.0f;
    size_t n_valid = 0;
    for (size_t i = 0; i < size_; ++i) {
        const float l = cand_[i].logit;
        if (l == -INFINITY) continue;
        max_l = std::max(max_l, l);
        sum += l;
        ++n_valid;
    }
    const float mean = n_valid > 0 ? sum / static_cast<float>(n_valid) : 0.0f;
    float acc = 0.0f;
    for (size_t i = 0; i < size_; ++i) {
        const float l = cand_[i].logit;
        if (l != -INFINITY) acc += (l - mean) * (l - mean);
    }
    const float sigma = n_valid > 0 ? std::sqrt(acc / static_cast<float>(n_valid)) : 0.0f;
    const float cut = max_l - n * sigma;
    // llama.cpp keeps the cut candidates at -inf (probability 0); dropping them is equivalent and
    // keeps the following sort small.
    size_t kept = 0;
    for (size_t i = 0; i < size_; ++i) {
        if (!(cand_[i].logit < cut)) cand_[kept++] = cand_[i];
    }
    if (kept < size_) identity_ = false;
    size_ = kept;
    softmax(true);
}

void Sampler::apply_top_k(int32_t k) {
    if (k <= 0) return;
    const size_t kk = std::min(static_cast<size_t>(k), size_);
    if (dense_ != nullptr && kk <= size_ / 8) {
        select_top_k_dense(kk);
        return;
    }
    materialize();
    if (sorted_) {
        size_ = kk;
    } else {
        sort_prefix(kk);
    }
}

void Sampler::apply_typical() {
    const float typical = params_.typical_p;
    if (typical >= 1.0f) return;
    materialize();
    softmax(true);

    // Entropy of the distribution; p == 0 adds nothing (llama.cpp would add NaN here).
    float entropy = 0.0f;
    for (size_t i = 0; i < size_; ++i) {
        const float p = cand_[i].p;
        if (p > 0.0f) entropy += -p * std::log(p);
    }
    // Rank by how far each token's surprise is from the entropy.
    scored_.resize(size_);
    for (size_t i = 0; i < size_; ++i) {
        scored_[i] = {std::fabs(-std::log(cand_[i].p) - entropy), static_cast<uint32_t>(i)};
    }
    std::sort(scored_.begin(), scored_.end());

    const size_t min_keep = static_cast<size_t>(params_.min_keep);
    float cum = 0.0f;
    size_t last = size_;
    for (size_t i = 0; i < size_; ++i) {
        cum += cand_[scored_[i].second].p;
        if (cum > typical && (min_keep == 0 || i + 1 >= min_keep)) {
            last = i + 1;
            break;
        }
    }
    scratch_.resize(last);
    for (size_t i = 0; i < last; ++i) scratch_[i] = cand_[scored_[i].second];
    std::copy(scratch_.begin(), scratch_.end(), cand_.begin());
    size_ = last;
    sorted_ = false;
    identity_ = false;
}

void Sampler::apply_top_p() {
    const float top_p = params_.top_p;
    if (top_p >= 1.0f) return;
    materialize();
    softmax(false);

    auto cmp = [](const Candidate& a, const Candidate& b) { return logit_before(a.id, a.logit, b.id, b.logit); };
    auto first = cand_.begin();
    auto end = first + static_cast<ptrdiff_t>(size_);
    // Sorted prefix [0, n_sorted): on a large unsorted list, guess that the nucleus lies in
    // the top kTopPFirstGuess and sort the rest only if it does not.
    size_t n_sorted = size_;
    if (!sorted_) {
        if (size_ > 1024) {
            n_sorted = kTopPFirstGuess;
            auto mid = first + static_cast<ptrdiff_t>(n_sorted);
            std::nth_element(first, mid, end, cmp);
            std::sort(first, mid, cmp);
        } else {
            std::sort(first, end, cmp);
        }
    }

    const size_t min_keep = static_cast<size_t>(params_.min_keep);
    float cum = 0.0f;
    size_t last = size_;
    for (size_t i = 0; i < size_; ++i) {
        if (i == n_sorted) {
            std::sort(first + static_cast<ptrdiff_t>(n_sorted), end, cmp);
            n_sorted = size_;
        }
        cum += cand_[i].p;
        if (cum >= top_p && i + 1 >= min_keep) {
            last = i + 1;
            break;
        }
    }
    size_ = last;
    sorted_ = true;
    identity_ = false;
}

void Sampler::apply_min_p() {
    const float min_p = params_.min_p;
    if (min_p <= 0.0f || size_ == 0) return;
    const size_t min_keep = static_cast<size_t>(params_.min_keep);
    const float log_p = std::log(min_p);

    if (dense_ != nullptr) {
        // The same filter on the dense list: build Candidates for the survivors only.
        const float* logits = dense_;
        const float min_logit = max_of(size_, [logits](size_t i) { return logits[i]; }) + log_p;
        size_t n_keep = 0;
        for (size_t i = 0; i < size_; ++i) n_keep += logits[i] >= min_logit;
        if (n_keep > 0 && n_keep >= min_keep) {
            size_t j = 0;
            for (size_t i = 0; i < size_; ++i) {
                if (logits[i] >= min_logit) cand_[j++] = Candidate{static_cast<int32_t>(i), logits[i], 0.0f};
            }
            size_ = n_keep;
            dense_ = nullptr;
            identity_ = n_keep == static_cast<size_t>(n_vocab_);
            return;
        }
        materialize();
    }
    if (!sorted_) {
        // Keep p_i >= min_p * p_max, i.e. logit_i >= max_logit + log(min_p), in place and in order.
        const float min_logit = max_of(size_, [this](size_t i) { return cand_[i].logit; }) + log_p;
        size_t n_keep = 0;
        for (size_t i = 0; i < size_; ++i) n_keep += cand_[i].logit >= min_logit;
        if (n_keep > 0 && n_keep >= min_keep) {
            if (n_keep < size_) {
                size_t j = 0;
                for (size_t i = 0; i < size_; ++i) {
                    if (cand_[i].logit >= min_logit) cand_[j++] = cand_[i];
                }
                size_ = n_keep;
                identity_ = false;
            }
            return;
        }
        sort_prefix(size_);
    }
    const float min_logit = cand_[0].logit + log_p;
    size_t i = 1;  // the most probable token always stays
    for (; i < size_; ++i) {
        if (cand_[i].logit < min_logit && i >= min_keep) break;
    }
    size_ = i;
}

void Sampler::apply_xtc() {
    const float probability = params_.xtc_probability;
    const float threshold = params_.xtc_threshold;
    if (probability <= 0.0f || threshold > 0.5f || size_ < 2) return;
    std::uniform_real_distribution<float> chance_dist(0.0f, 1.0f);
    if (chance_dist(xtc_rng_) > probability) return;
    materialize();

    softmax(true);
    // Exclude every token above the threshold except the least probable of them.
    size_t pos_last = 0;
    for (size_t i = 0; i < size_; ++i) {
        if (cand_[i].p >= threshold) {
            pos_last = i;
        } else {
            break;
        }
    }
    if (size_ - pos_last >= static_cast<size_t>(params_.min_keep) && pos_last > 0) {
        std::copy(cand_.begin() + static_cast<ptrdiff_t>(pos_last), cand_.begin() + static_cast<ptrdiff_t>(size_),
                  cand_.begin());
        size_ -= pos_last;
        identity_ = false;
    }
}

void Sampler::scale_by_temperature(float temp) {
    if (temp <= 0.0f) {
        // Greedy: the first highest logit stays, every other becomes -inf.
        size_t max_i = 0;
        float max_l = cand_[0].logit;
        for (size_t i = 1; i < size_; ++i) {
            if (cand_[i].logit > max_l) {
                cand_[max_i].logit = -INFINITY;
                max_i = i;
                max_l = cand_[i].logit;
            } else {
                cand_[i].logit = -INFINITY;
            }
        }
        return;
    }
    for (size_t i = 0; i < size_; ++i) cand_[i].logit /= temp;
}

void Sampler::apply_temperature() {
    materialize();
    auto scale = [this](float temp) { scale_by_temperature(temp); };

    const float temp = params_.temperature;
    const float delta = params_.dynatemp_range;
    if (delta <= 0.0f) {
        scale(temp);
        return;
    }
    // Dynamic temperature: map the normalized entropy onto [temp - delta, temp + delta].
    if (size_ <= 1) return;
    const float min_temp = std::max(0.0f, temp - delta);
    const float max_temp = temp + delta;
    const float max_entropy = -std::log(1.0f / static_cast<float>(size_));
    softmax(true);
    float entropy = 0.0f;
    for (size_t i = 0; i < size_; ++i) {
        const float p = cand_[i].p;
        if (p > 0.0f) entropy -= p * std::log(p);
    }
    const float normalized = entropy / max_entropy;
    scale(min_temp + (max_temp - min_temp) * std::pow(normalized, params_.dynatemp_exponent));

    const double max_l = cand_[0].logit;
    double sum = 0.0;
    for (size_t i = 0; i < size_; ++i) {
        const double p = std::exp(cand_[i].logit - max_l);
        cand_[i].p = static_cast<float>(p);
        sum += p;
    }
    for (size_t i = 0; i < size_; ++i) cand_[i].p = static_cast<float>(cand_[i].p / sum);
}

void Sampler::select_by_distribution() {
    selected_ = 0;
    if (size_ == 1) {
        cand_[0].p = 1.0f;
        return;
    }
    float max_l = cand_[0].logit;
    if (!sorted_) {
        max_l = std::max(max_l, max_of(size_, [this](size_t i) { return cand_[i].logit; }));
    }
    double sum = 0.0;
    for (size_t i = 0; i < size_; ++i) {
        const float p = std::exp(cand_[i].logit - max_l);
        cand_[i].p = p;
        sum += p;
    }
    // One uniform draw, then walk the cumulative sum; normalize on the way.
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const double target = sum * uniform(rng_);
    double running = 0.0;
    bool found = false;
    for (size_t i = 0; i < size_; ++i) {
        if (!found) {
            running += cand_[i].p;
            if (running >= target) {
                selected_ = static_cast<int32_t>(i);
                found = true;
            }
        }
        cand_[i].p = static_cast<float>(cand_[i].p / sum);
    }
    if (!found) selected_ = static_cast<int32_t>(size_ - 1);  // only with NaN logits
}

namespace {

// Mirostat's k as llama.cpp computes it, std::max(int(k), 1): on x86, int() turns NaN and
// anything outside the int32 range (2^31 as a float) into INT_MIN, which then becomes 1.
int32_t mirostat_k(float k) {
    if (!(k >= -2147483648.0f && k < 2147483648.0f)) return 1;
    return std::max(static_cast<int32_t>(k), 1);
}

}  // namespace

void Sampler::select_by_mirostat() {
    const float tau = params_.mirostat_tau;
    const float eta = params_.mirostat_eta;
    softmax(true);
    if (params_.mirostat == 1) {
        // Estimate the Zipf exponent s of the distribution from its m = 100 most probable tokens
        // (least squares of log(p_i / p_i+1) on log((i + 2) / (i + 1))), then keep the k tokens
        // that make the expected surprise mu for that exponent.
        constexpr size_t m = 100;
        float sum_ti_bi = 0.0f;
        float sum_ti_sq = 0.0f;
        for (size_t i = 0; i < m - 1 && i + 1 < size_; ++i) {
            const float t_i = std::log(static_cast<float>(i + 2) / static_cast<float>(i + 1));
            const float b_i = std::log(cand_[i].p / cand_[i + 1].p);
            sum_ti_bi += t_i * b_i;
            sum_ti_sq += t_i * t_i;
        }
        const float s_hat = sum_ti_bi / sum_ti_sq;
        const float epsilon_hat = s_hat - 1.0f;
        const float k = std::pow(
            (epsilon_hat * std::pow(2.0f, mu_)) / (1.0f - std::pow(static_cast<float>(n_vocab_), -epsilon_hat)),
            1.0f / s_hat);
        size_ = std::min(size_, static_cast<size_t>(mirostat_k(k)));
    } else {
        // Keep the most probable tokens whose surprise -log2(p) does not exceed mu (at least one).
        size_t keep = 0;
        while (keep < size_ && !(-std::log2(cand_[keep].p) > mu_)) ++keep;
        size_ = std::max<size_t>(keep, 1);
    }
    softmax(true);

    weights_.resize(size_);
    for (size_t i = 0; i < size_; ++i) weights_[i] = cand_[i].p;
    std::discrete_distribution<int> dist(weights_.begin(), weights_.end());
    selected_ = dist(rng_);

    // Move mu toward the target by the error of this token's surprise.
    const float observed_surprise = -std::log2(cand_[static_cast<size_t>(selected_)].p);
    mu_ = mu_ - eta * (observed_surprise - tau);
}

float raw_token_probs(std::span<const float> logits, int32_t token, size_t n, std::vector<TokenProb>& top) {
    if (logits.empty()) throw std::invalid_argument("raw_token_probs: no logits");
    if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
        throw std::out_of_range("raw_token_probs: token " + std::to_string(token) + " is outside the vocabulary [0, " +
                                std::to_string(logits.size()) + ")");
    }
    const float max_l = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (float l : logits) sum += std::exp(l - max_l);

    // Keep the n highest logits in a heap whose top is the weakest of them; `prob` holds the
    // logit until the end.
    n = std::min(n, logits.size());
    auto better = [](const TokenProb& a, const TokenProb& b) { return logit_before(a.token, a.prob, b.token, b.prob); };
    top.clear();
    if (n > 0) {
        for (size_t i = 0; i < logits.size(); ++i) {
            const TokenProb c{static_cast<int32_t>(i), logits[i]};
            if (top.size() < n) {
                top.push_back(c);
                std::push_heap(top.begin(), top.end(), better);
            } else if (better(c, top.front())) {
                std::pop_heap(top.begin(), top.end(), better);
                top.back() = c;
                std::push_heap(top.begin(), top.end(), better);
            }
        }
        std::sort_heap(top.begin(), top.end(), better);
    }
    for (TokenProb& t : top) t.prob = static_cast<float>(std::exp(t.prob - max_l) / sum);
    return static_cast<float>(std::exp(logits[static_cast<size_t>(token)] - max_l) / sum);
}

}  // namespace moeserve
