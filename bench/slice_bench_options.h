// The command line the synthetic-slice benchmarks share (engine_bench,
// deepseek2_bench, nemotron_bench; cpu_attention_bench reads its own options
// with the same reader): every value is checked before anything runs, so a
// bad one ends the program with one message naming it and the usage, never
// an exception escaping main or a model written for nothing.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/bench_runner.h"
#include "engine/engine.h"
#include "synth/quant_mix.h"
#include "synth/synth_model.h"

namespace moeserve::bench {

// argv, option by option: flag() the next option, value() its argument.
class ArgReader {
  public:
    ArgReader(int argc, char** argv) : argc_(argc), argv_(argv) {}
    bool more() const { return i_ + 1 < argc_; }
    const std::string& flag() { return flag_ = argv_[++i_]; }
    std::string value() {
        if (i_ + 1 >= argc_) throw std::runtime_error(flag_ + " needs a value");
        return argv_[++i_];
    }
    // A whole number in [min, max].
    int64_t number(int64_t min, int64_t max) {
        const std::string v = value();
        size_t used = 0;
        int64_t n = 0;
        try {
            n = std::stoll(v, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != v.size() || n < min || n > max)
            throw std::runtime_error(flag_ + " takes a whole number from " + std::to_string(min) + " to " +
                                     std::to_string(max) + ", not '" + v + "'");
        return n;
    }
    // A comma-separated list of at least one item.
    std::vector<std::string> list() {
        const std::string v = value();
        std::vector<std::string> out;
        std::stringstream ss(v);
        for (std::string item; std::getline(ss, item, ',');)
            if (!item.empty()) out.push_back(item);
        if (out.empty()) throw std::runtime_error(flag_ + " needs a comma-separated list, not '" + v + "'");
        return out;
    }
    // Context depths: "0,8192,32768".
    std::vector<int64_t> depths() {
        const std::string v = value();
        try {
            return parse_int_list(v);
        } catch (const std::exception& e) {
            throw std::runtime_error(flag_ + ": " + e.what());
        }
    }
    // Cache types, each one the engine accepts.
    std::vector<std::string> caches() {
        std::vector<std::string> names = list();
        for (const auto& n : names) try {
                parse_cache_type(n);
            } catch (const std::exception& e) {
                throw std::runtime_error(flag_ + ": " + e.what());
            }
        return names;
    }

  private:
    int argc_;
    char** argv_;
    int i_ = 0;
    std::string flag_;
};

struct SliceBenchOptions {
    int threads = 2;
    std::string dir = std::filesystem::temp_directory_path().string();
    std::vector<int64_t> depths;
    int64_t n_prefill = 512, n_decode = 32;
    std::vector<std::string> mixes, caches;
};

// Reads argv over opt (which holds the program's defaults). Returns false
// when --help printed the usage; throws std::runtime_error naming a bad
// option or value.
inline bool parse_slice_bench_options(int argc, char** argv, const std::string& usage, SliceBenchOptions& opt) {
    ArgReader args(argc, argv);
    while (args.more()) {
        const std::string& a = args.flag();
        if (a == "-h" || a == "--help") {
            std::fputs(usage.c_str(), stdout);
            return false;
        }
        if (a == "--threads")
            opt.threads = static_cast<int>(args.number(1, 1024));
        else if (a == "--dir")
            opt.dir = args.value();
        else if (a == "--depths")
            opt.depths = args.depths();
        else if (a == "--prefill")
            opt.n_prefill = args.number(0, 1 << 20);
        else if (a == "--decode")
            opt.n_decode = args.number(1, 1 << 20);
        else if (a == "--mix") {
            opt.mixes = args.list();
            for (const auto& m : opt.mixes)
                if (!file_mix_from_name(m))
                    throw std::runtime_error("--mix: unknown mix '" + m + "' (F16, Q8_0, Q4_K_M, IQ4_XS)");
        } else if (a == "--cache")
            opt.caches = args.caches();
        else
            throw std::runtime_error("unknown option " + a);
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
