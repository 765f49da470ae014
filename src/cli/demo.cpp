// moeserve demo -o FILE: writes the built-in demo model.
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "synth/synth_model.h"

namespace moeserve::cli {
namespace {

int run_demo(const std::vector<std::string>& argv) {
    Args args(argv);
    std::string out;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::puts(
                "usage: moeserve demo -o FILE\n\n"
                "Writes the built-in demo model: a tiny qwen3moe GGUF with deterministic\n"
                "random weights and a byte-level vocabulary (no download needed).");
            return 0;
        } else if (args.flag({"-o", "--output"})) {
            out = args.value();
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve demo --help)");
        }
    }
    if (out.empty()) throw UsageError("no output file given: moeserve demo -o FILE");
    write_synth_model(out, demo_spec());
    std::fprintf(stderr, "wrote demo model to %s\n", out.c_str());
    return 0;
}

}  // namespace

MOESERVE_COMMAND("demo", "write the built-in demo model (tiny qwen3moe, random weights)", run_demo);

}  // namespace moeserve::cli
