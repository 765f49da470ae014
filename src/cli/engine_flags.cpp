#include "cli/engine_flags.h"

#include <algorithm>
#include <charconv>

#include "backend/select_backend.h"
#include "engine/rope_flags.h"
#include "memory/byte_size.h"

namespace moeserve::cli {

const char* const kEngineFlagsHelp =
    "  -m, --model FILE          GGUF model\n"
    "  -t, --threads N           threads (default: all cores)\n"
    "  -c, --ctx-size N          context size in tokens; max = the largest that fits (as --fit)\n"
    "  --fit                     use the largest context that fits in memory\n"
    "  --mem SIZE                memory budget for the fit check: 24GiB, 24GB, 512MiB (default: MemAvailable)\n"
    "  -ctk, --cache-type-k T    K cache type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl (default f16)\n"
    "  -ctv, --cache-type-v T    V cache type (default f16)\n"
    "  -ub, --ubatch-size N      prompt tokens per forward call (default 512)\n"
    "  --no-mmap                 read the model into memory instead of mapping it\n"
    "  --mlock                   keep the mapped model locked in RAM (a warning if the system refuses)\n"
    "  -ngl, --n-gpu-layers N    layers on the GPU: 0 = CPU (default), N > the layer count (99) or 'all' = the\n"
    "                            whole model on the GPU (CUDA builds: `make cuda`), up to the layer count = the\n"
    "                            output head and the last N-1 blocks there and the rest on the CPU (llama.cpp's\n"
    "                            count), 'auto' = the GPU if there is one\n"
    "  -cmoe, --cpu-moe          GPU runs: keep every layer's routed experts in host memory and run them on the CPU\n"
    "  -ncmoe, --n-cpu-moe N     GPU runs: the same for the first N layers\n"
    "  -ot, --override-tensor REGEX=BUFTYPE,...\n"
    "                            GPU runs: tensors whose name matches REGEX (first match wins) in host memory (CPU)\n"
    "                            or on the GPU (CUDA0); only routed experts may stay on the CPU ('exps=CPU')\n"
    "  --rope-scaling {none,linear,yarn}, --rope-scale N, --rope-freq-base N, --rope-freq-scale N,\n"
    "  --yarn-orig-ctx N, --yarn-ext-factor N, --yarn-attn-factor N, --yarn-beta-slow N, --yarn-beta-fast N\n"
    "                            RoPE over the model's own, as llama.cpp's flags (e.g. --rope-scaling yarn\n"
    "                            --rope-scale 4 --yarn-orig-ctx 32768 for 4x the trained context)\n";

namespace {

// The RoPE flag at the cursor (consumed), or nullptr.
const RopeFlag* rope_flag_named(Args& args) {
    for (const RopeFlag& r : rope_flags())
        if (args.flag({r.name})) return &r;
    return nullptr;
}

}  // namespace

bool parse_expert_placement_flag(Args& args, ExpertPlacementFlags& flags) {
    if (args.flag({"-cmoe", "--cpu-moe"})) {
        flags.cpu_moe = true;
    } else if (args.flag({"-ncmoe", "--n-cpu-moe"})) {
        flags.n_cpu_moe = static_cast<int>(args.int_value(0, 1 << 20));
    } else if (args.flag({"-ot", "--override-tensor"})) {
        const std::string v = args.value();
        size_t begin = 0;
        while (begin <= v.size()) {
            const size_t comma = std::min(v.find(',', begin), v.size());
            const std::string item = v.substr(begin, comma - begin);
            const size_t eq = item.find('=');
            if (eq == 0 || eq == std::string::npos || eq + 1 == item.size())
                throw UsageError("option -ot expects REGEX=BUFTYPE pairs, e.g. 'exps=CPU', got '" + v + "'");
            flags.override_tensor.push_back(item);
            begin = comma + 1;
        }
    } else {
        return false;
    }
    return true;
}

bool parse_engine_flag(Args& args, EngineOptions& opt) {
    if (args.flag({"-m", "--model"})) {
        opt.model_path = args.value();
    } else if (args.flag({"-t", "--threads"})) {
        opt.n_threads = static_cast<int>(args.int_value());
        if (opt.n_threads < 0) throw UsageError("--threads must be at least 1 (or 0 for all cores)");
    } else if (args.flag({"-c", "--ctx-size"})) {
        const std::string v = args.value();
        int64_t n = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (v == "max")
            opt.fit_ctx = true;
        else if (ec != std::errc() || end != v.data() + v.size())
            throw UsageError("option -c expects an integer or 'max', got '" + v + "'");
        else if (n < 0)
            throw UsageError("--ctx-size must not be negative");
        else
            opt.n_ctx = n;
    } else if (args.flag({"--fit"})) {
        opt.fit_ctx = true;
    } else if (args.flag({"--mem"})) {
        try {
            opt.mem_bytes = parse_byte_size(args.value());
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("--mem: ") + e.what());
        }
    } else if (args.flag({"-ctk", "--cache-type-k"})) {
        opt.type_k = parse_cache_type(args.value());
    } else if (args.flag({"-ctv", "--cache-type-v"})) {
        opt.type_v = parse_cache_type(args.value());
    } else if (args.flag({"-ngl", "--gpu-layers", "--n-gpu-layers"})) {
        try {
            opt.n_gpu_layers = parse_gpu_layers(args.value());
        } catch (const std::invalid_argument& e) {
            throw UsageError(e.what());
        }
    } else if (parse_expert_placement_flag(args, opt.experts)) {
    } else if (args.flag({"--no-mmap"})) {
        opt.load_mode = LoadMode::read;
    } else if (args.flag({"--mmap"})) {
        opt.load_mode = LoadMode::mmap;
    } else if (args.flag({"--mlock"})) {
        opt.load_mode = LoadMode::mlock;
    } else if (const RopeFlag* rope = rope_flag_named(args)) {
        const std::string value = args.value();
        try {
            apply_rope_flag(opt.rope, rope->name, value);
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("option ") + rope->name + ": " + e.what() + ", got '" + value + "'");
        }
    } else if (args.flag({"-ub", "--ubatch-size"})) {
        opt.n_ubatch = args.int_value();
        if (opt.n_ubatch < 1) throw UsageError("--ubatch-size must be at least 1");
    } else {
        return false;
    }
    return true;
}

}  // namespace moeserve::cli
