// moeserve run: one prompt, generated text on stdout as it is produced, and
// prompt and generation speed on stderr at the end (like llama.cpp's CLI).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/engine_flags.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "text/tokenizer.h"

namespace moeserve::cli {
namespace {

const char* kUsage =
    "usage: moeserve run -m MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates a continuation of the prompt. Special tokens in the prompt are\n"
    "parsed; BOS is added when the vocabulary asks for it. Only the generated\n"
    "text goes to stdout; speeds go to stderr.\n"
    "\n"
    "  -m, --model FILE          GGUF model\n"
    "  -p, --prompt TEXT         the prompt\n"
    "  -f, --file FILE           read the prompt from FILE\n"
    "  -n, --n-predict N         tokens to generate (default -1: until end of generation or full context)\n"
    "  -t, --threads N           threads (default: all cores)\n"
    "  -c, --ctx-size N          context size (default: prompt + n, or 4096; 0 = the model's training\n"
    "                            context; max = the largest that fits, as --fit)\n"
    "  --fit                     use the largest context that fits in memory\n"
    "  --mem SIZE                memory budget for the fit check (default: MemAvailable)\n"
    "  -ctk, --cache-type-k T    K cache type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl (default f16)\n"
    "  -ctv, --cache-type-v T    V cache type (default f16)\n"
    "  -ub, --ubatch-size N      prompt tokens per forward call (default 512)\n"
    "  -ngl, --n-gpu-layers N    0 = CPU (default); all / N >= layers = the GPU (CUDA builds)\n"
    "  --temp T                  temperature (default 0.8; 0 = greedy)\n"
    "  --top-k N                 top-k (default 40; 0 = off)\n"
    "  --top-p P                 top-p (default 0.95; 1 = off)\n"
    "  --min-p P                 min-p (default 0.05; 0 = off)\n"
    "  --typical P               typical-p (default 1 = off)\n"
    "  --repeat-penalty F        repetition penalty (default 1 = off)\n"
    "  --repeat-last-n N         tokens the penalties look back over (default 64)\n"
    "  --presence-penalty F      presence penalty (default 0)\n"
    "  --frequency-penalty F     frequency penalty (default 0)\n"
    "  -s, --seed N              random seed (default: random)\n"
    "  --ignore-eos              keep generating past end-of-generation tokens\n";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_generate(const std::vector<std::string>& argv) {
    Args args(argv);
    EngineOptions opt;
    opt.n_ctx = -1;  // -c not given: the prompt plus -n (see below); -c 0 is the training context
    SamplingParams sp;
    std::string prompt;
    bool have_prompt = false, ignore_eos = false;
    int64_t n_predict = -1;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (parse_engine_flag(args, opt)) {
            continue;
        } else if (args.flag({"-p", "--prompt"})) {
            prompt = args.value(), have_prompt = true;
        } else if (args.flag({"-f", "--file"})) {
            prompt = read_file(args.value()), have_prompt = true;
        } else if (args.flag({"-n", "--n-predict"})) {
            n_predict = args.int_value();
        } else if (args.flag({"--temp"})) {
            sp.temperature = static_cast<float>(args.float_value());
        } else if (args.flag({"--top-k"})) {
            sp.top_k = static_cast<int32_t>(args.int_value());
        } else if (args.flag({"--top-p"})) {
            sp.top_p = static_cast<float>(args.float_value());
        } else if (args.flag({"--min-p"})) {
            sp.min_p = static_cast<float>(args.float_value());
        } else if (args.flag({"--typical"})) {
            sp.typical_p = static_cast<float>(args.float_value());
        } else if (args.flag({"--repeat-penalty"})) {
            sp.repeat_penalty = static_cast<float>(args.float_value());
        } else if (args.flag({"--repeat-last-n"})) {
            sp.repeat_last_n = static_cast<int32_t>(args.int_value());
        } else if (args.flag({"--presence-penalty"})) {
            sp.presence_penalty = static_cast<float>(args.float_value());
        } else if (args.flag({"--frequency-penalty"})) {
            sp.frequency_penalty = static_cast<float>(args.float_value());
        } else if (args.flag({"-s", "--seed"})) {
            sp.seed = static_cast<uint32_t>(args.int_value());
        } else if (args.flag({"--ignore-eos"})) {
            ignore_eos = true;
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve run --help)");
        }
    }
    if (opt.model_path.empty()) throw UsageError("no model given (-m FILE)");
    if (!have_prompt) throw UsageError("no prompt given (-p TEXT or -f FILE)");

    Tokenizer tokenizer = Tokenizer::from_file(opt.model_path);
    std::vector<int32_t> tokens = tokenizer.tokenize(prompt, /*add_special=*/true, /*parse_special=*/true);
    if (tokens.empty()) throw std::runtime_error("the prompt is empty after tokenization");
    if (opt.n_ctx < 0) opt.n_ctx = n_predict >= 0 ? static_cast<int64_t>(tokens.size()) + n_predict : 4096;
    Engine engine(opt);  // refuses a context that does not fit, before loading
    if (!engine.backend_note().empty()) std::fprintf(stderr, "%s\n", engine.backend_note().c_str());
    const int64_t n_ctx = engine.options().n_ctx;
    if (opt.fit_ctx)
        std::fprintf(stderr, "fit: -c %lld, the largest context that fits\n", static_cast<long long>(n_ctx));
    if (static_cast<int64_t>(tokens.size()) >= n_ctx)
        throw std::runtime_error(
            fmt::format("the prompt has {} tokens, more than the context size {} allows", tokens.size(), n_ctx));
    Sampler sampler(sp, static_cast<int32_t>(engine.n_vocab()), static_cast<int32_t>(n_ctx));
    for (int32_t t : tokens) sampler.accept(t);

    const auto t_prompt = std::chrono::steady_clock::now();
    std::vector<float> logits = engine.eval(0, tokens, /*all_logits=*/false);
    const double prompt_s = seconds_since(t_prompt);

    StreamingDetokenizer detok(tokenizer, /*render_special=*/false);
    const auto t_gen = std::chrono::steady_clock::now();
    int64_t n_gen = 0;
    while (n_predict < 0 || n_gen < n_predict) {
        int32_t next = sampler.sample(logits);
        sampler.accept(next);
        ++n_gen;
        if (!ignore_eos && tokenizer.is_eog(next)) break;
        std::string text = detok.push(next);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        if (engine.cache().seq_length(0) >= n_ctx) break;  // context full
        if (n_predict >= 0 && n_gen >= n_predict) break;
        logits = engine.eval(0, std::span<const int32_t>(&next, 1), false);
    }
    std::string rest = detok.flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fflush(stdout);
    const double gen_s = seconds_since(t_gen);
    std::fprintf(
        stderr, "\n\nprompt: %zu tokens in %.3f s (%.1f tokens/s)\ngeneration: %lld tokens in %.3f s (%.1f tokens/s)\n",
        tokens.size(), prompt_s, tokens.size() / std::max(prompt_s, 1e-9), static_cast<long long>(n_gen), gen_s,
        n_gen / std::max(gen_s, 1e-9));
    return 0;
}

}  // namespace

MOESERVE_COMMAND("run", "generate text from one prompt (prints text, then speed on stderr)", run_generate);

}  // namespace moeserve::cli
