// moeserve synth: writes a GGUF with random weights and the exact tensor
// shapes, metadata and tokenizer layout of a real model, directly in the
// chosen weight mix (random blocks, no quantization), so benchmarks and
// memory plans run on full-size models without a download.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cli/args.h"
#include "cli/command.h"
#include "gguf/gguf_file.h"
#include "memory/byte_size.h"
#include "synth/presets.h"

namespace moeserve::cli {
namespace {

const char* kUsage =
    "usage: moeserve synth --preset NAME -o FILE [--type MIX] [--layers N] [--header-only] [--seed N]\n"
    "       moeserve synth --list\n"
    "\n"
    "Writes a model with random weights and the real tensor shapes, metadata\n"
    "and tokenizer layout (placeholder token strings) of a preset, directly in\n"
    "the weight mix llama-quantize would give it.\n"
    "\n"
    "  --preset NAME    see --list\n"
    "  -o, --output F   the GGUF file to write\n"
    "  --type MIX       F16, Q8_0, Q4_K_M (default) or IQ4_XS\n"
    "  --layers N       keep only the first N layers (full-width layers for CPU benchmarks)\n"
    "  --header-only    metadata and tensor infos only, no data (for inspect and plan);\n"
    "                   marked with moeserve.header_only = true\n"
    "  --seed N         random seed (default 42)\n"
    "  --list           list the presets\n";

// Prints "written / total" for the file being written, twice a second.
class ProgressLine {
  public:
    ProgressLine(std::string path, uint64_t total) : path_(std::move(path)), total_(total) {
        thread_ = std::thread([this] { loop(); });
    }
    ~ProgressLine() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ = true;
        }
        wake_.notify_all();
        thread_.join();
        std::fprintf(stderr, "\n");
    }

  private:
    void loop() {
        const auto t0 = std::chrono::steady_clock::now();
        std::unique_lock<std::mutex> lock(mutex_);
        while (!wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return done_; })) {
            std::error_code ec;
            const uint64_t n = std::filesystem::file_size(path_, ec);
            if (ec) continue;
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::fprintf(stderr, "\rsynth: %s of %s (%.0f%%), %.2f GB/s   ", format_bytes(n).c_str(),
                         format_bytes(total_).c_str(), 100.0 * n / total_, n / s / 1e9);
        }
    }

    std::string path_;
    uint64_t total_;
    bool done_ = false;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::thread thread_;
};

void list_presets() {
    for (const auto& p : synth_presets()) std::printf("  %-26s %s\n", p.name, p.description);
}

int run_synth(const std::vector<std::string>& argv) {
    Args args(argv);
    std::string preset, out;
    FileMix mix = FileMix::Q4_K_M;
    int layers = 0;
    bool header_only = false;
    uint64_t seed = 42;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (args.flag({"--list"})) {
            list_presets();
            return 0;
        } else if (args.flag({"--preset"})) {
            preset = args.value();
        } else if (args.flag({"-o", "--output"})) {
            out = args.value();
        } else if (args.flag({"--type"})) {
            const std::string name = args.value();
            auto m = file_mix_from_name(name);
            if (!m) throw UsageError("unknown --type '" + name + "' (allowed: F16, Q8_0, Q4_K_M, IQ4_XS)");
            mix = *m;
        } else if (args.flag({"--layers"})) {
            layers = static_cast<int>(args.int_value());
        } else if (args.flag({"--header-only"})) {
            header_only = true;
        } else if (args.flag({"--seed"})) {
            seed = static_cast<uint64_t>(args.int_value());
        } else {
            throw UsageError("unknown argument '" + args.peek() + "' (see moeserve synth --help)");
        }
    }
    if (preset.empty()) throw UsageError("no preset given (--preset NAME; --list shows them)");
    if (out.empty()) throw UsageError("no output file given (-o FILE)");
    std::optional<SynthSpec> spec = synth_preset(preset, mix);
    if (!spec) {
        std::fprintf(stderr, "moeserve synth: unknown preset '%s'; the presets are:\n", preset.c_str());
        list_presets();
        return 2;
    }
    if (layers) {
        try {
            cut_layers(*spec, layers);
        } catch (const std::invalid_argument& e) {
            throw UsageError(e.what());
        }
    }
    spec->seed = seed;

    // The header alone tells the size to expect and the parameter count.
    SynthSpec header = *spec;
    header.header_only = true;
    const std::string header_path =
        (std::filesystem::temp_directory_path() / fmt::format("moeserve-synth-{}.gguf", ::getpid())).string();
    write_synth_model(header_only ? out : header_path, header);
    const GgufFile info = GgufFile::open(header_only ? out : header_path);
    uint64_t data = 0;
    int64_t params = 0;
    for (const auto& t : info.tensors()) {
        data += (t.nbytes + info.alignment() - 1) / info.alignment() * info.alignment();
        params += t.n_elements();
    }
    if (!header_only) {
        std::filesystem::remove(header_path);
        const uint64_t total = info.data_offset() + data;
        if (total > (uint64_t{256} << 20)) {
            ProgressLine progress(out + ".partial", total);
            write_synth_model(out, *spec);
        } else {
            write_synth_model(out, *spec);
        }
    }
    std::fprintf(stderr, "wrote %s: %s, %d layers, %s parameters, %s%s, %s of weights\n", out.c_str(),
                 spec->arch.c_str(), synth_layer_count(*spec), format_param_count(params).c_str(), file_mix_name(mix),
                 header_only ? " (header only)" : "", format_bytes(data).c_str());
    return 0;
}

}  // namespace

MOESERVE_COMMAND("synth", "write a model with random weights and a real model's shapes (presets)", run_synth);

}  // namespace moeserve::cli
