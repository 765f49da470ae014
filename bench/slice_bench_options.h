// The command line the synthetic-slice benchmarks share (engine_bench,
// deepseek2_bench, nemotron_bench; cpu_attention_bench reads its own options
// with the same helpers), read with the subcommands' cli::Args: every value
// is checked before anything runs, so a
// bad one ends the program with one message naming it and the usage, never
// an exception escaping main or a model written for nothing.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "cli/args.h"
#include "engine/bench_runner.h"
#include "engine/engine.h"
#include "synth/quant_mix.h"
#include "synth/synth_model.h"

namespace moeserve::bench {

// The options after argv[0], for cli::Args.
inline std::vector<std::string> bench_args(int argc, char** argv) {
    return std::vector<std::string>(argv + 1, argv + argc);
}

// The value of the flag just matched as context depths ("0,8192,32768").
inline std::vector<int64_t> depths_value(cli::Args& args) {
    const std::string v = args.value();
    try {
        return parse_int_list(v);
    } catch (const std::exception& e) {
        throw cli::UsageError("option " + args.last_flag() + ": " + e.what());
    }
}

// The value of the flag just matched as cache types, each one the engine takes.
inline std::vector<std::string> caches_value(cli::Args& args) {
    std::vector<std::string> names = args.list_value();
    for (const auto& n : names) try {
            parse_cache_type(n);
        } catch (const std::exception& e) {
            throw cli::UsageError("option " + args.last_flag() + ": " + e.what());
        }
    return names;
}

struct SliceBenchOptions {
    int threads = 2;
    std::string dir = std::filesystem::temp_directory_path().string();
    std::vector<int64_t> depths;
    int64_t n_prefill = 512, n_decode = 32;
    std::vector<std::string> mixes, caches;
    // --split on,off: GQA decode at depth with its cells split into chunks
    // across the threads (the default), or one softmax over all cells.
    std::vector<std::string> splits = {"on"};
};

// Reads argv over opt (which holds the program's defaults). Returns false
// when --help printed the usage; throws std::runtime_error naming a bad
// option or value.
inline bool parse_slice_bench_options(int argc, char** argv, const std::string& usage, SliceBenchOptions& opt) {
    const std::vector<std::string> argv_rest = bench_args(argc, argv);
    cli::Args args(argv_rest);
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(usage.c_str(), stdout);
            return false;
        }
        if (args.flag({"--threads"})) {
            opt.threads = static_cast<int>(args.int_value(1, 1024));
        } else if (args.flag({"--dir"})) {
            opt.dir = args.value();
        } else if (args.flag({"--depths"})) {
            opt.depths = depths_value(args);
        } else if (args.flag({"--prefill"})) {
            opt.n_prefill = args.int_value(0, 1 << 20);
        } else if (args.flag({"--decode"})) {
            opt.n_decode = args.int_value(1, 1 << 20);
        } else if (args.flag({"--mix"})) {
            opt.mixes = args.list_value();
            for (const auto& m : opt.mixes)
                if (!file_mix_from_name(m))
                    throw cli::UsageError("option --mix: unknown mix '" + m + "' (F16, Q8_0, Q4_K_M, IQ4_XS)");
        } else if (args.flag({"--cache"})) {
            opt.caches = caches_value(args);
        } else if (args.flag({"--split"})) {
            opt.splits = args.list_value();
            for (const auto& s : opt.splits)
                if (s != "on" && s != "off")
                    throw cli::UsageError("option --split: expected on or off, got '" + s + "'");
        } else {
            throw cli::UsageError("unknown option " + args.next());
        }
    }
    return true;
}

// The slice model at `dir`/moeserve-bench-`name`.gguf, written from spec the
// first time (later runs reuse it).
inline std::string slice_model(const std::string& dir, const std::string& name, const SynthSpec& spec) {
    const std::string path = dir + "/moeserve-bench-" + name + ".gguf";
    if (!std::filesystem::exists(path)) {
        std::fprintf(stderr, "writing %s ...\n", path.c_str());
        write_synth_model(path, spec);
    }
    return path;
}

// An engine over the slice with `cache` K and V rows and room for n_ctx cells.
inline EngineOptions slice_engine(const std::string& path, int threads, const std::string& cache, int64_t n_ctx) {
    EngineOptions opt;
    opt.model_path = path;
    opt.n_threads = threads;
    opt.n_ctx = n_ctx;
    opt.type_k = opt.type_v = parse_cache_type(cache);
    return opt;
}

// --split off on a CPU engine: its decode attention takes one softmax over
// all of a token's cells (CpuBackend::set_attention_split), as before the
// split; "on" leaves the default.
inline void apply_attention_split(Engine& engine, const std::string& split) {
    if (split == "on") return;
    if (auto* cpu = dynamic_cast<CpuBackend*>(&engine.backend())) cpu->set_attention_split(int64_t{1} << 40);
}

// The options of `program` over `defaults`, or the end of the program:
// status 0 after --help, 2 after the message and usage for a bad option.
inline SliceBenchOptions slice_bench_options_or_exit(int argc, char** argv, const char* program,
                                                     const std::string& usage, SliceBenchOptions defaults) {
    try {
        if (!parse_slice_bench_options(argc, argv, usage, defaults)) std::exit(0);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n%s", program, e.what(), usage.c_str());
        std::exit(2);
    }
    return defaults;
}

}  // namespace moeserve::bench
