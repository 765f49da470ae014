// moeserve vocab-from-hf: a vocabulary-only GGUF from a Hugging Face
// tokenizer.json (byte-level BPE), laid out as llama.cpp's converter does.
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "text/hf_vocab.h"

namespace moeserve::cli {
namespace {

const char* kUsage =
    "usage: moeserve vocab-from-hf tokenizer.json [tokenizer_config.json] -o vocab.gguf\n"
    "                              [--pre NAME] [--vocab-size N] [--arch NAME]\n"
    "\n"
    "Writes the tokenizer of a Hugging Face model as a vocabulary-only GGUF\n"
    "(tokenizer.ggml.*): tokens, token types, merges, special token ids, add_bos/add_eos\n"
    "and the chat template (the last three from tokenizer_config.json).\n"
    "\n"
    "  -o, --output FILE  the GGUF to write\n"
    "  --pre NAME         tokenizer.ggml.pre (default: detected from the pre-tokenizer regex;\n"
    "                     qwen2, llama-bpe and gpt-2 are recognised)\n"
    "  --vocab-size N     pad the token list with [PADn] to N entries (the model's vocab_size)\n"
    "  --arch NAME        also write general.architecture\n";

int run_vocab_from_hf(const std::vector<std::string>& argv) {
    Args args(argv);
    std::vector<std::string> inputs;
    std::string output;
    HfVocabOptions options;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (args.flag({"-o", "--output"})) {
            output = args.value();
        } else if (args.flag({"--pre"})) {
            options.pre = args.value();
        } else if (args.flag({"--vocab-size"})) {
            int64_t n = args.int_value();
            if (n <= 0) throw UsageError("--vocab-size must be positive");
            options.vocab_size = size_t(n);
        } else if (args.flag({"--arch"})) {
            options.architecture = args.value();
        } else if (args.peek().size() > 1 && args.peek()[0] == '-') {
            throw UsageError("unknown option " + args.peek() + " (see moeserve vocab-from-hf --help)");
        } else {
            inputs.push_back(args.next());
        }
    }
    if (inputs.empty() || inputs.size() > 2)
        throw UsageError("give tokenizer.json and optionally tokenizer_config.json (see --help)");
    if (output.empty()) throw UsageError("no output file given (-o vocab.gguf)");
    convert_hf_vocab(inputs[0], inputs.size() > 1 ? inputs[1] : "", output, options);
    std::printf("wrote %s\n", output.c_str());
    return 0;
}

}  // namespace

MOESERVE_COMMAND("vocab-from-hf", "write a vocab-only GGUF from a Hugging Face tokenizer.json", run_vocab_from_hf);

}  // namespace moeserve::cli
