// Speculative decoding benchmark: how much faster a slot generates with
// --spec-type ngram-simple (or ngram-mod) when its answer repeats runs of its context (code
// being edited, a file quoted back, a summary citing its source), on the
// synthetic slices of realistic width: Qwen3-MoE (engine_bench's model, the
// default), Nemotron-3-Nano (nemotron_bench's: its Mamba2 state is rolled back
// when guesses are rejected) or GLM-4.7-Flash (deepseek2_bench's).
//
// The answer is forced token by token (GenerationRequest::replay, the
// server's --allow-replay): a share of it copies runs of `--run` tokens from
// random places in the prompt, the rest is random tokens. The forward passes
// are the real ones (a random-weight model's own greedy answer would say
// nothing about real text), so a guess is confirmed exactly when the forced
// answer continues as the context did, and each confirmed guess saves a
// forward pass of its own. The scheduler runs the same request with and
// without speculation, --reps times each, alternated, on one engine each (the
// prompt evaluated once, then reused from the slot's cache); generation
// tokens/s count the answer's tokens over its generation time (the prompt
// excluded), the median of the repetitions. Each repetition forces another
// answer (the same share copied, other runs, other random tokens), so that
// ngram-mod's pool, which keeps what earlier answers wrote, cannot guess the
// random tokens from an earlier repetition.
//
// usage: speculative_bench [--threads N] [--dir DIR] [--contexts 2048,8192] [--answer 256]
//                          [--copy 0,0.5,0.9] [--run 100] [--cache f16,q4_0] [--mix Q4_K_M]
//                          [--n-max 16] [--size-n 12] [--size-m 48] [--arch qwen3moe|nemotron|glm]
//                          [--reps 3] [--spec-type ngram-simple] [--mod-n-match 24] [--mod-n-min 48]
//                          [--mod-n-max 64]
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "cli/args.h"
#include "engine/engine.h"
#include "engine/scheduler.h"
#include "slice_bench_options.h"
#include "synth/presets.h"
#include "synth/synth_model.h"
#include "text/tokenizer.h"

using namespace moeserve;

namespace {

struct Options {
    int threads = 2;
    std::string dir = std::filesystem::temp_directory_path().string();
    std::vector<int64_t> contexts = {2048, 8192};
    int64_t answer = 256;
    std::vector<double> copy = {0.0, 0.5, 0.9};
    int64_t run = 100;
    std::vector<std::string> caches = {"f16", "q4_0"};
    std::string mix = "Q4_K_M";
    std::string arch = "qwen3moe";
    int reps = 3;  // generations of each variant, alternated; the median is reported
    SpeculativeConfig spec = [] {
        SpeculativeConfig c;
        c.enabled = true;
        c.kinds = {DraftKind::ngram_simple};
        return c;
    }();
};

const char* const kUsage =
    "usage: speculative_bench [--threads N] [--dir DIR] [--contexts 2048,8192] [--answer 256] [--copy 0,0.5,0.9]\n"
    "                         [--run 100] [--cache f16,q4_0] [--mix Q4_K_M] [--n-max 16] [--size-n 12] [--size-m 48]\n"
    "                         [--arch qwen3moe|nemotron|glm] [--reps 3] [--spec-type ngram-simple]\n"
    "                         [--mod-n-match 24] [--mod-n-min 48] [--mod-n-max 64]\n";

bool parse(int argc, char** argv, Options& o) {
    const std::vector<std::string> rest = bench::bench_args(argc, argv);
    cli::Args args(rest);
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return false;
        } else if (args.flag({"--threads"})) {
            o.threads = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--dir"})) {
            o.dir = args.value();
        } else if (args.flag({"--contexts"})) {
            o.contexts = bench::depths_value(args);
        } else if (args.flag({"--answer"})) {
            o.answer = args.int_value(1, 1 << 20);
        } else if (args.flag({"--copy"})) {
            o.copy.clear();
            for (const std::string& v : args.list_value()) {
                const double x = std::stod(v);
                if (!(x >= 0 && x <= 1)) throw cli::UsageError("option --copy: shares lie in [0, 1], got " + v);
                o.copy.push_back(x);
            }
        } else if (args.flag({"--run"})) {
            o.run = args.int_value(1, 1 << 20);
        } else if (args.flag({"--cache"})) {
            o.caches = bench::caches_value(args);
        } else if (args.flag({"--mix"})) {
            o.mix = args.value();
            if (!file_mix_from_name(o.mix))
                throw cli::UsageError("option --mix: unknown mix '" + o.mix + "' (F16, Q8_0, Q4_K_M, IQ4_XS)");
        } else if (args.flag({"--arch"})) {
            o.arch = args.value();
            if (o.arch != "qwen3moe" && o.arch != "nemotron" && o.arch != "glm")
                throw cli::UsageError("option --arch: qwen3moe, nemotron or glm, not '" + o.arch + "'");
        } else if (args.flag({"--reps"})) {
            o.reps = static_cast<int>(args.int_value(1, 100));
        } else if (args.flag({"--n-max"})) {
            o.spec.n_max = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--size-n"})) {
            o.spec.ngram.size_n = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--size-m"})) {
            o.spec.ngram.size_m = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--spec-type"})) {
            try {
                o.spec.kinds = parse_spec_type(args.value());
            } catch (const std::invalid_argument& e) {
                throw cli::UsageError(std::string("option --spec-type: ") + e.what());
            }
            if (o.spec.kinds.empty()) throw cli::UsageError("option --spec-type: name at least one kind");
        } else if (args.flag({"--mod-n-match"})) {
            o.spec.mod.n_match = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--mod-n-min"})) {
            o.spec.mod.n_min = static_cast<int>(args.int_value(0, 1024));
        } else if (args.flag({"--mod-n-max"})) {
            o.spec.mod.n_max = static_cast<int>(args.int_value(1, 1024));
        } else {
            throw cli::UsageError("unknown option " + args.next());
        }
    }
    return true;
}

// A random prompt and `reps` answers, each about `copy` runs of `run` tokens
// taken from random places in the prompt (the rest random).
struct Workload {
    std::vector<int32_t> prompt;
    std::vector<std::vector<int32_t>> answers;
};

Workload make_workload(int64_t n_prompt, int64_t n_answer, double copy, int64_t run, int32_t n_vocab, int reps,
                       uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> token(16, n_vocab - 16);
    Workload w;
    for (int64_t i = 0; i < n_prompt; ++i) w.prompt.push_back(token(rng));
    std::uniform_real_distribution<double> coin(0, 1);
    for (int r = 0; r < reps; ++r) {
        std::vector<int32_t>& answer = w.answers.emplace_back();
        while (static_cast<int64_t>(answer.size()) < n_answer) {
            const int64_t n = std::min(run, n_answer - static_cast<int64_t>(answer.size()));
            if (coin(rng) < copy && n_prompt > run) {
                const int64_t at = std::uniform_int_distribution<int64_t>(0, n_prompt - run)(rng);
                answer.insert(answer.end(), w.prompt.begin() + at, w.prompt.begin() + at + n);
            } else {
                for (int64_t i = 0; i < n; ++i) answer.push_back(token(rng));
            }
        }
    }
    return w;
}

struct Result {
    double tokens_per_s = 0;
    int64_t draft_n = 0, draft_accepted = 0;
};

// One engine and scheduler of two slots that answer the workload's request
// again and again, slot 0 without speculation (speculative.n_max 0), slot 1
// with it: the first answer in a slot evaluates the prompt, the later ones
// reuse it from the slot's cache (prefix reuse, as a server does), so that
// repetitions measure generation alone, and one thread pool serves both.
class Generator {
  public:
    Generator(const std::string& path, const Options& o, const std::string& cache, const Workload& w)
        : o_(o), w_(w), tokenizer_(Tokenizer::from_file(path)) {
        const int64_t n_ctx = static_cast<int64_t>(w.prompt.size() + w.answers[0].size()) + 64;
        SchedulerOptions so;
        so.layout = compute_slot_layout(2 * n_ctx, int64_t{1} << 30, 2, false);
        so.speculative = o.spec;
        EngineOptions eo = bench::slice_engine(path, o.threads, cache, so.layout.n_cells);
        eo.n_seq = 2;
        eo.speculative = true;  // a hybrid model's rollback copies
        eo.spec_draft_max = o.spec.draft_max();
        engine_ = std::make_unique<Engine>(eo);
        scheduler_ = std::make_unique<Scheduler>(engine_->model(), engine_->cache(), tokenizer_, so);
    }

    Result generate(bool speculative, int rep) {
        const std::vector<int32_t>& answer = w_.answers.at(static_cast<size_t>(rep));
        GenerationRequest rq;
        rq.prompt = w_.prompt;
        rq.n_predict = static_cast<int64_t>(answer.size());
        rq.replay = answer;
        rq.ignore_eos = true;
        rq.sampling.temperature = 0;
        rq.spec_n_max = speculative ? o_.spec.draft_max() : 0;
        rq.id_slot = speculative ? 1 : 0;
        auto stream = std::make_shared<GenerationStream>();
        scheduler_->submit({std::move(rq)}, stream);
        for (;;) {
            scheduler_->step();
            while (auto e = stream->next(std::chrono::milliseconds(0))) {
                if (e->kind == GenerationEvent::Kind::error) throw std::runtime_error(e->message);
                if (e->kind != GenerationEvent::Kind::done) continue;
                const Timings& t = e->result.timings;
                return {1000.0 * static_cast<double>(t.predicted_n) / t.predicted_ms, t.draft_n, t.draft_n_accepted};
            }
        }
    }

  private:
    const Options& o_;
    const Workload& w_;
    Tokenizer tokenizer_;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<Scheduler> scheduler_;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    try {
        if (!parse(argc, argv, o)) return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "speculative_bench: %s\n%s", e.what(), kUsage);
        return 2;
    }
    const FileMix mix = *file_mix_from_name(o.mix);
    std::string path;
    if (o.arch == "nemotron") {
        path = bench::slice_model(o.dir, "nemotron-" + o.mix, nemotron_bench_spec(mix));
    } else if (o.arch == "glm") {
        SynthSpec spec = *synth_preset("glm-4.7-flash", mix);
        cut_layers(spec, 3);  // deepseek2_bench's slice: the dense layer and two MoE layers
        spec.n_vocab = 704;
        path = bench::slice_model(o.dir, "glm47flash-3L-" + o.mix, spec);
    } else {
        path = bench::slice_model(o.dir, o.mix, bench_spec(mix));
    }
    const int32_t n_vocab = static_cast<int32_t>(Tokenizer::from_file(path).vocab().size());

    std::string kinds;
    for (DraftKind k : o.spec.kinds) {
        if (!kinds.empty()) kinds += ", then ";
        kinds += k == DraftKind::ngram_simple ? fmt::format("ngram-simple (size_n {}, size_m {}, n_max {})",
                                                            o.spec.ngram.size_n, o.spec.ngram.size_m, o.spec.n_max)
                                              : fmt::format("ngram-mod (n_match {}, n_min {}, n_max {})",
                                                            o.spec.mod.n_match, o.spec.mod.n_min, o.spec.mod.n_max);
    }
    fmt::print("{} slice; {}; answers of {} tokens, copied runs of {}; {} threads\n\n", o.arch, kinds, o.answer, o.run,
               o.threads);
    fmt::print(
        "| weights | KV cache | context | copied | tok/s without | tok/s with | guessed | confirmed | speed-up |\n");
    fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const std::string& cache : o.caches)
        for (int64_t ctx : o.contexts)
            for (double copy : o.copy) {
                const Workload w = make_workload(ctx, o.answer, copy, o.run, n_vocab, o.reps,
                                                 7 + static_cast<uint32_t>(ctx) + static_cast<uint32_t>(1000 * copy));
                // The two alternate, so that the machine's drift hits both alike.
                Generator g(path, o, cache, w);
                std::vector<double> off_tps, on_tps;
                Result on;
                for (int r = 0; r < o.reps; ++r) {
                    off_tps.push_back(g.generate(false, r).tokens_per_s);
                    on = g.generate(true, r);
                    on_tps.push_back(on.tokens_per_s);
                }
                Result off{median(off_tps), 0, 0};
                on.tokens_per_s = median(on_tps);
                fmt::print("| {} | {} | {} | {:.0f}% | {:.1f} | {:.1f} | {} | {} | {:.2f}x |\n", o.mix, cache, ctx,
                           100 * copy, off.tokens_per_s, on.tokens_per_s, on.draft_n, on.draft_accepted,
                           on.tokens_per_s / off.tokens_per_s);
                std::fflush(stdout);
            }
    return 0;
}
