// moeserve logits: the conformance tool. Evaluates a token list as one
// prompt and writes the logits at every position in the golden format.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/engine_flags.h"
#include "engine/engine.h"

namespace moeserve::cli {
namespace {

const char* kUsage =
    "usage: moeserve logits -m MODEL --tokens FILE.json -o PREFIX [options]\n"
    "\n"
    "Reads {\"tokens\": [...]} (the golden files have this field), evaluates all\n"
    "tokens as one prompt and writes PREFIX.json (n_vocab, tokens) and\n"
    "PREFIX.logits.f32 (little-endian f32, one row of n_vocab logits per token).\n"
    "\n"
    "  -m, --model FILE          GGUF model\n"
    "  --tokens FILE             JSON file with a \"tokens\" array\n"
    "  -o, --output PREFIX       output prefix\n"
    "  -t, --threads N           threads (default: all cores)\n"
    "  -c, --ctx-size N          KV cache size (default: number of tokens)\n"
    "  -ctk, --cache-type-k T    K cache type (default f16)\n"
    "  -ctv, --cache-type-v T    V cache type (default f16)\n"
    "  -ub, --ubatch-size N      tokens per forward call (default 512)\n"
    "  -ngl, --n-gpu-layers N    0 = CPU (default); all / N >= layers = the GPU (CUDA builds)\n";

int run_logits(const std::vector<std::string>& argv) {
    Args args(argv);
    EngineOptions opt;
    std::string tokens_path, prefix;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (parse_engine_flag(args, opt)) {
            continue;
        } else if (args.flag({"--tokens"})) {
            tokens_path = args.value();
        } else if (args.flag({"-o", "--output"})) {
            prefix = args.value();
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve logits --help)");
        }
    }
    if (opt.model_path.empty() || tokens_path.empty() || prefix.empty())
        throw UsageError("-m, --tokens and -o are required (see moeserve logits --help)");

    std::ifstream in(tokens_path);
    if (!in) throw std::runtime_error(tokens_path + ": cannot open");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(tokens_path + ": not valid JSON: " + e.what());
    }
    if (!j.contains("tokens") || !j["tokens"].is_array())
        throw std::runtime_error(tokens_path + ": needs a \"tokens\" array");
    std::vector<int32_t> tokens;
    for (const auto& t : j["tokens"]) {
        if (!t.is_number_integer()) throw std::runtime_error(tokens_path + ": \"tokens\" must hold integers");
        tokens.push_back(t.get<int32_t>());
    }
    if (tokens.empty()) throw std::runtime_error(tokens_path + ": \"tokens\" is empty");
    if (opt.n_ctx == 0) opt.n_ctx = static_cast<int64_t>(tokens.size());

    Engine engine(opt);
    if (!engine.backend_note().empty()) std::fprintf(stderr, "%s\n", engine.backend_note().c_str());
    std::vector<float> logits = engine.eval(0, tokens, /*all_logits=*/true);

    std::ofstream meta(prefix + ".json");
    meta << nlohmann::json{{"n_vocab", engine.n_vocab()}, {"tokens", tokens}}.dump() << "\n";
    std::ofstream bin(prefix + ".logits.f32", std::ios::binary);
    bin.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
    if (!meta || !bin) throw std::runtime_error(prefix + ": write failed");
    std::fprintf(stderr, "wrote %zu rows of %lld logits to %s.logits.f32\n", tokens.size(),
                 static_cast<long long>(engine.n_vocab()), prefix.c_str());
    return 0;
}

}  // namespace

MOESERVE_COMMAND("logits", "write the logits of a token list (conformance against llama.cpp goldens)", run_logits);

}  // namespace moeserve::cli
