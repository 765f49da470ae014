// The `moeserve serve` flag table: one row per flag (names, value, env var,
// help, what it sets). Parsing, environment variables and --help all come
// from the table.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string_view>

#include "engine/embedding.h"
#include "engine/engine.h"
#include "engine/rope_flags.h"
#include "engine/sampler.h"
#include "server/server_options.h"

namespace moeserve {
namespace {

using Apply = void (*)(ServerOptions&, const std::string& flag, const std::string& value);

struct Flag {
    std::vector<const char*> names;
    const char* value;  // value placeholder ("N"); nullptr: a switch
    const char* env;    // LLAMA_ARG_* variable, or nullptr
    const char* help;
    Apply apply;
    const char* group = nullptr;  // starts a new --help section
};

[[noreturn]] void bad(const std::string& flag, const std::string& value, const std::string& why) {
    throw ServerFlagError(fmt::format("invalid value '{}' for {}: {}", value, flag, why));
}

int64_t to_int(const std::string& flag, const std::string& v, int64_t lo, int64_t hi) {
    int64_t x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || p != v.data() + v.size()) bad(flag, v, "expected an integer");
    if (x < lo || x > hi) bad(flag, v, fmt::format("must be between {} and {}", lo, hi));
    return x;
}

float to_float(const std::string& flag, const std::string& v) {
    try {
        size_t used = 0;
        double x = std::stod(v, &used);
        if (used == v.size() && std::isfinite(x)) return static_cast<float>(x);
    } catch (const std::exception&) {
    }
    bad(flag, v, "expected a number");
}

constexpr const char* kCheckpointsHelp =
    "hybrid models (Nemotron): recurrent-state snapshots kept per slot (default: 32): two at the prompt's end and "
    "two at the start and end of the last user message, in the backend's memory, so that an edited or "
    "followed-up conversation resumes there, and the rest in host RAM, as used, at the start of the first user "
    "or tool message (the end of the system prompt, when 64 tokens or more) and of later ones at least "
    "--checkpoint-min-step tokens apart; 0 = none";

constexpr const char* kCheckpointStepHelp =
    "hybrid models: the fewest tokens between two snapshots kept at message starts (default: 8192)";

constexpr const char* kCacheReuseHelp =
    "after a prompt's common prefix with its slot, reuse chunks of at least N tokens found further on in the "
    "slot's cache by shifting them into place (re-rotating their keys) instead of evaluating them; models whose "
    "cache can shift (Qwen3-MoE), with prompt caching (default: 0, off)";

constexpr const char* kNoPrefixSharingHelp =
    "each slot evaluates and stores its own copy of a prompt prefix another slot holds (as llama-server); "
    "by default the cells are shared";

// A flag llama-server has and moeserve does not: the error says why.
constexpr const char* kNoBuiltinTools =
    "moeserve has no built-in tools (clients declare their own in the request's \"tools\")";

[[noreturn]] void unsupported(const std::string& flag, const std::string& why) {
    throw ServerFlagError(fmt::format("{} is not supported: {}", flag, why));
}

std::optional<bool> bool_word(std::string v) {
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v == "true" || v == "1" || v == "on" || v == "enabled") return true;
    if (v == "false" || v == "0" || v == "off" || v == "disabled") return false;
    return std::nullopt;
}

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    size_t b = 0;
    while (b <= s.size()) {
        size_t e = s.find(',', b);
        if (e == std::string::npos) e = s.size();
        if (e > b) out.push_back(s.substr(b, e - b));
        b = e + 1;
    }
    return out;
}

const std::vector<Flag>& flags() {
    static const std::vector<Flag> table = [] {
        std::vector<Flag> t = {
            {{"-h", "--help"},
             nullptr,
             nullptr,
             "print this help and exit",
             [](ServerOptions& o, auto&, auto&) { o.help = true; },
             "General"},

            {{"-m", "--model"},
             "FNAME",
             "LLAMA_ARG_MODEL",
             "GGUF model file (required)",
             [](ServerOptions& o, auto&, auto& v) { o.model_path = v; },
             "Model"},
            {{"-a", "--alias"},
             "NAME[,NAME...]",
             "LLAMA_ARG_ALIAS",
             "model names for the API; the first in sort order is reported (default: the -m path as given)",
             [](ServerOptions& o, auto&, auto& v) {
                 o.aliases = split_commas(v);
                 std::sort(o.aliases.begin(), o.aliases.end());
             }},
            {{"-ngl", "--gpu-layers", "--n-gpu-layers"},
             "N|auto|all",
             "LLAMA_ARG_N_GPU_LAYERS",
             "layers on the GPU: N above the layer count (99) or 'all' = the whole model, N up to it = the output "
             "head and the last N-1 layers, as llama.cpp counts (the embedding and the first layers stay on the "
             "CPU), 'auto' = the GPU when the build has CUDA and a device is present, 0 = CPU (a CPU build runs on "
             "the CPU with a note)",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (v != "auto" && v != "all") to_int(f, v, -1, 1 << 20);
                 o.n_gpu_layers = v;
             }},
            {{"-fit", "--fit"},
             "on|off",
             "LLAMA_ARG_FIT",
             "with no -c, lower the context until everything fits in memory (a GPU run: on the card) with "
             "--fit-target to spare; on a GPU with no -ngl, -ot, -cmoe or -ncmoe, then keep the first layers' routed "
             "experts in host memory if even --fit-ctx does not fit (default on)",
             [](ServerOptions& o, auto& f, auto& v) {
                 auto b = bool_word(v);
                 if (!b) bad(f, v, "expected on or off");
                 o.fit = *b;
             }},
            {{"-fitt", "--fit-target"},
             "MiB[,...]",
             "LLAMA_ARG_FIT_TARGET",
             "memory --fit leaves free (default 1024 MiB; one device: the first value)",
             [](ServerOptions& o, auto& f, auto& v) {
                 const auto parts = split_commas(v);
                 if (parts.empty()) bad(f, v, "expected MiB");
                 o.fit_target_mib = to_int(f, parts.front(), 0, int64_t(1) << 40);
             }},
            {{"-fitc", "--fit-ctx"},
             "N",
             "LLAMA_ARG_FIT_CTX",
             "the smallest context --fit may choose (default 4096)",
             [](ServerOptions& o, auto& f, auto& v) { o.fit_ctx = to_int(f, v, 1, int64_t(1) << 31); }},
            {{"-lm", "--load-mode"},
             "none|mmap|mlock|dio",
             "LLAMA_ARG_LOAD_MODE",
             "how the model gets into memory: mmap (default), mlock (mapped and locked in RAM), none or dio (read "
             "into memory)",
             [](ServerOptions& o, auto& f, auto& v) {
                 auto m = load_mode_from_name(v);
                 if (!m) bad(f, v, "expected none, mmap, mlock or dio");
                 o.load_mode = *m;
             }},
            {{"--mmap"},
             nullptr,
             "LLAMA_ARG_MMAP",
             "map the model file (default; the same as -lm mmap)",
             [](ServerOptions& o, auto&, auto&) { o.load_mode = LoadMode::mmap; }},
            {{"--no-mmap"},
             nullptr,
             "LLAMA_ARG_NO_MMAP",
             "read the model into memory (-lm none)",
             [](ServerOptions& o, auto&, auto&) { o.load_mode = LoadMode::read; }},
            {{"--mlock"},
             nullptr,
             "LLAMA_ARG_MLOCK",
             "lock the mapped model in RAM (-lm mlock; a warning if the system refuses)",
             [](ServerOptions& o, auto&, auto&) { o.load_mode = LoadMode::mlock; }},
            {{"-dio", "--direct-io"},
             nullptr,
             "LLAMA_ARG_DIO",
             "read the model into memory (-lm dio; the same as none here)",
             [](ServerOptions& o, auto&, auto&) { o.load_mode = LoadMode::read; }},
            {{"-cmoe", "--cpu-moe"},
             nullptr,
             "LLAMA_ARG_CPU_MOE",
             "keep every layer's routed experts in host memory and run them on the CPU, the rest on the GPU (a "
             "CPU run has them there anyway)",
             [](ServerOptions& o, auto&, auto&) { o.experts.cpu_moe = true; }},
            {{"-ncmoe", "--n-cpu-moe"},
             "N",
             "LLAMA_ARG_N_CPU_MOE",
             "the same for the routed experts of the first N layers",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.experts.n_cpu_moe = static_cast<int>(to_int(f, v, 0, 1 << 20));
             }},
            {{"-ot", "--override-tensor"},
             "REGEX=BUFTYPE,...",
             "LLAMA_ARG_OVERRIDE_TENSOR",
             "tensors to place by regex, first match wins: BUFTYPE CPU keeps them in host memory, CUDA0 on the GPU; "
             "on a GPU only routed experts may go to the CPU (e.g. 'exps=CPU', 'blk\\.(1[0-9])\\.ffn_.*_exps=CPU')",
             [](ServerOptions& o, auto& f, auto& v) {
                 for (const auto& item : split_commas(v)) {
                     const size_t eq = item.find('=');
                     if (eq == 0 || eq == std::string::npos || eq + 1 == item.size())
                         bad(f, v, "expected REGEX=BUFTYPE pairs, e.g. 'exps=CPU'");
                     o.experts.override_tensor.push_back(item);
                 }
             }},
            {{"-kvo", "--kv-offload"},
             nullptr,
             "LLAMA_ARG_KV_OFFLOAD",
             "keep the KV cache with the layers' weights (default)",
             [](ServerOptions& o, auto&, auto&) { o.no_kv_offload = false; }},
            {{"-nkvo", "--no-kv-offload"},
             nullptr,
             "LLAMA_ARG_NO_KV_OFFLOAD",
             "keep the KV cache in host memory: always so on the CPU; refused on a GPU",
             [](ServerOptions& o, auto&, auto&) { o.no_kv_offload = true; }},
            {{"-dev", "--device"},
             "LIST",
             "LLAMA_ARG_DEVICE",
             "devices to use: 'none' = the CPU only (as -ngl 0); CUDA0 = the GPU",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (v == "none") {
                     o.n_gpu_layers = "0";
                     return;
                 }
                 for (const auto& d : split_commas(v))
                     if (d != "CUDA0" && d != "cuda0")
                         bad(f, v, "moeserve drives one GPU, CUDA0 (or 'none' for the CPU)");
             }},
            {{"-sm", "--split-mode"},
             "none|layer|row",
             "LLAMA_ARG_SPLIT_MODE",
             "how to split over several GPUs: accepted, moeserve uses one",
             [](ServerOptions&, auto& f, auto& v) {
                 if (v != "none" && v != "layer" && v != "row" && v != "tensor")
                     bad(f, v, "expected none, layer, row or tensor");
             }},
            {{"-ts", "--tensor-split"},
             "N0,N1,...",
             "LLAMA_ARG_TENSOR_SPLIT",
             "shares of the model per GPU: accepted, moeserve uses one",
             [](ServerOptions&, auto& f, auto& v) {
                 for (const auto& x : split_commas(v)) to_float(f, x);
             }},
            {{"-mg", "--main-gpu"},
             "N",
             "LLAMA_ARG_MAIN_GPU",
             "the GPU to use: 0 (moeserve drives one)",
             [](ServerOptions&, auto& f, auto& v) {
                 if (to_int(f, v, 0, 1 << 20) != 0) bad(f, v, "moeserve drives one GPU, device 0");
             }},

            {{"-c", "--ctx-size"},
             "N",
             "LLAMA_ARG_CTX_SIZE",
             "total KV cells over all slots (default 0 = the model's training context)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.n_ctx = to_int(f, v, 0, int64_t(1) << 31);
                 o.n_ctx_given = true;
             },
             "Context and slots"},
            {{"-np", "--parallel"},
             "N",
             "LLAMA_ARG_N_PARALLEL",
             "slots (requests served at once); default auto = 4 slots sharing a unified cache",
             [](ServerOptions& o, auto& f, auto& v) {
                 int64_t n = to_int(f, v, -1, 4096);
                 if (n == 0) bad(f, v, "the number of slots must be at least 1 (or -1 for auto)");
                 o.n_parallel = static_cast<int>(n);
             }},
            {{"-kvu", "--kv-unified"},
             nullptr,
             "LLAMA_ARG_KV_UNIFIED",
             "one KV pool shared by all slots; any slot may grow to the whole context (default: on only with -np auto)",
             [](ServerOptions& o, auto&, auto&) { o.kv_unified = true; }},
            {{"-no-kvu", "--no-kv-unified"},
             nullptr,
             nullptr,
             "give each slot its own -c/N cells",
             [](ServerOptions& o, auto&, auto&) { o.kv_unified = false; }},
            {{"-b", "--batch-size"},
             "N",
             "LLAMA_ARG_BATCH",
             "most tokens per scheduler step (default 2048)",
             [](ServerOptions& o, auto& f, auto& v) { o.n_batch = to_int(f, v, 1, 1 << 24); }},
            {{"-ub", "--ubatch-size"},
             "N",
             "LLAMA_ARG_UBATCH",
             "most tokens per forward pass (default 512)",
             [](ServerOptions& o, auto& f, auto& v) { o.n_ubatch = to_int(f, v, 1, 1 << 24); }},
            {{"-cb", "--cont-batching"},
             nullptr,
             "LLAMA_ARG_CONT_BATCHING",
             "continuous batching (always on; accepted for compatibility)",
             [](ServerOptions& o, auto&, auto&) { o.cont_batching = true; }},
            {{"-nocb", "--no-cont-batching"},
             nullptr,
             nullptr,
             "refused: moeserve always batches continuously",
             [](ServerOptions&, auto& f, auto&) {
                 throw ServerFlagError(f + " is not supported: moeserve always uses continuous batching");
             }},
            {{"--cache-prompt"},
             nullptr,
             "LLAMA_ARG_CACHE_PROMPT",
             "reuse a slot's cached prompt prefix (default)",
             [](ServerOptions& o, auto&, auto&) { o.cache_prompt = true; }},
            {{"--no-cache-prompt"},
             nullptr,
             nullptr,
             "re-evaluate every prompt in full by default",
             [](ServerOptions& o, auto&, auto&) { o.cache_prompt = false; }},
            {{"--cache-reuse"},
             "N",
             "LLAMA_ARG_CACHE_REUSE",
             kCacheReuseHelp,
             [](ServerOptions& o, auto& f, auto& v) { o.cache_reuse = to_int(f, v, 0, INT32_MAX); }},
            {{"-ctxcp", "--ctx-checkpoints", "--swa-checkpoints"},
             "N",
             "LLAMA_ARG_CTX_CHECKPOINTS",
             kCheckpointsHelp,
             [](ServerOptions& o, auto& f, auto& v) {
                 o.ctx_checkpoints = static_cast<int>(to_int(f, v, 0, 1 << 20));
             }},
            {{"-cms", "--checkpoint-min-step"},
             "N",
             "LLAMA_ARG_CHECKPOINT_MIN_SPACING_NT",
             kCheckpointStepHelp,
             [](ServerOptions& o, auto& f, auto& v) { o.checkpoint_min_step = to_int(f, v, 0, int64_t(1) << 31); }},
            {{"-cram", "--cache-ram"},
             "MiB",
             "LLAMA_ARG_CACHE_RAM",
             "RAM prompt cache: a slot's prompt is saved to host memory when the slot goes to another conversation "
             "(or its cells are needed), and loaded back when that conversation returns (default 8192, at most half "
             "the memory available at start; -1 = that, 0 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.cache_ram_mib = to_int(f, v, -1, int64_t(1) << 40); }},
            {{"--cache-idle-slots"},
             nullptr,
             "LLAMA_ARG_CACHE_IDLE_SLOTS",
             "accepted: an idle slot is saved to the RAM prompt cache when its cells are needed (default)",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--no-cache-idle-slots"},
             nullptr,
             nullptr,
             "accepted (see --cache-idle-slots)",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--context-shift"},
             nullptr,
             "LLAMA_ARG_CONTEXT_SHIFT",
             "when a generating slot is full, drop n_discard tokens after the first n_keep (half of the rest by "
             "default; --keep, or the request's n_keep) and go on, with the later keys re-rotated; models whose cache "
             "cannot (hybrid Mamba, MLA, YaRN RoPE) and GPU runs are refused at start",
             [](ServerOptions& o, auto&, auto&) { o.context_shift = true; }},
            {{"--no-context-shift"},
             nullptr,
             nullptr,
             "stop a generation at the slot's context limit with finish_reason \"length\" (default)",
             [](ServerOptions& o, auto&, auto&) { o.context_shift = false; }},
            {{"--keep"},
             "N",
             nullptr,
             "tokens of the prompt a context shift keeps (default 0; -1 = the whole prompt)",
             [](ServerOptions& o, auto& f, auto& v) { o.keep = to_int(f, v, -1, int64_t(1) << 31); }},
            {{"--swa-full"},
             nullptr,
             "LLAMA_ARG_SWA_FULL",
             "accepted: the supported models have no sliding-window attention",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--slot-save-path"},
             "DIR",
             nullptr,
             "enable POST /slots/{id}?action=save|restore|erase, with the files in DIR (which must exist)",
             [](ServerOptions& o, auto& f, auto& v) {
                 std::error_code ec;
                 if (!std::filesystem::is_directory(v, ec)) bad(f, v, "not a directory");
                 o.slot_save_path = v;
             }},
            {{"--sleep-idle-seconds"},
             "N",
             nullptr,
             "refused for N >= 0: the model stays loaded (default -1)",
             [](ServerOptions&, auto& f, auto& v) {
                 if (to_int(f, v, -1, int64_t(1) << 31) != -1)
                     unsupported(f, "the model stays loaded while the server runs");
             }},
            {{"-sps", "--slot-prompt-similarity"},
             "F",
             nullptr,
             "prefer the idle slot sharing at least this share of the prompt (default 0.10; 0 = least recently used)",
             [](ServerOptions& o, auto& f, auto& v) {
                 float x = to_float(f, v);
                 if (x < 0 || x > 1) bad(f, v, "must be between 0 and 1");
                 o.slot_prompt_similarity = x;
             }},
            {{"-n", "--predict", "--n-predict"},
             "N",
             "LLAMA_ARG_N_PREDICT",
             "default tokens to generate per request (-1 = until end of generation or a full slot)",
             [](ServerOptions& o, auto& f, auto& v) { o.n_predict = to_int(f, v, -1, INT32_MAX); }},

            {{"-ctk", "--cache-type-k"},
             "TYPE",
             "LLAMA_ARG_CACHE_TYPE_K",
             "K cache type: f32 f16 bf16 q8_0 q4_0 q4_1 iq4_nl q5_0 q5_1 (default f16)",
             [](ServerOptions& o, auto& f, auto& v) {
                 try {
                     parse_cache_type(v);
                 } catch (const std::exception&) {
                     throw ServerFlagError(fmt::format("Unsupported cache type: {} (for {})", v, f));
                 }
                 o.cache_type_k = v;
             },
             "KV cache and attention"},
            {{"-ctv", "--cache-type-v"},
             "TYPE",
             "LLAMA_ARG_CACHE_TYPE_V",
             "V cache type (same list; default f16)",
             [](ServerOptions& o, auto& f, auto& v) {
                 try {
                     parse_cache_type(v);
                 } catch (const std::exception&) {
                     throw ServerFlagError(fmt::format("Unsupported cache type: {} (for {})", v, f));
                 }
                 o.cache_type_v = v;
             }},
            {{"-fa", "--flash-attn"},
             "on|off|auto",
             "LLAMA_ARG_FLASH_ATTN",
             "flash attention (default auto); a quantized V cache needs it",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (v == "auto" || v == "-1") {
                     o.flash_attn = "auto";
                 } else if (auto b = bool_word(v)) {
                     o.flash_attn = *b ? "on" : "off";
                 } else {
                     bad(f, v, "expected on, off or auto");
                 }
             }},
            {{"-t", "--threads"},
             "N",
             "LLAMA_ARG_THREADS",
             "CPU threads (default -1 = all cores)",
             [](ServerOptions& o, auto& f, auto& v) {
                 int64_t n = to_int(f, v, -1, 4096);
                 if (n == 0) bad(f, v, "use -1 for all cores or a positive count");
                 o.n_threads = static_cast<int>(n);
             }},
            {{"-tb", "--threads-batch"},
             "N",
             "LLAMA_ARG_THREADS_BATCH",
             "CPU threads for prompt batches (accepted; -t is used for both)",
             [](ServerOptions& o, auto& f, auto& v) { o.n_threads_batch = static_cast<int>(to_int(f, v, -1, 4096)); }},

            {{"--host"},
             "HOST",
             "LLAMA_ARG_HOST",
             "address to listen on (default 127.0.0.1)",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (v.size() > 5 && v.ends_with(".sock")) bad(f, v, "UNIX sockets are not supported");
                 o.host = v;
             },
             "HTTP"},
            {{"--port"},
             "PORT",
             "LLAMA_ARG_PORT",
             "port to listen on (default 8080; 0 picks a free port)",
             [](ServerOptions& o, auto& f, auto& v) { o.port = static_cast<int>(to_int(f, v, 0, 65535)); }},
            {{"--api-key"},
             "KEY[,KEY...]",
             "LLAMA_API_KEY",
             "require 'Authorization: Bearer KEY' on every route except /health and /models",
             [](ServerOptions& o, auto&, auto& v) {
                 for (auto& k : split_commas(v)) o.api_keys.push_back(k);
             }},
            {{"--api-key-file"},
             "FNAME",
             "LLAMA_ARG_API_KEY_FILE",
             "read API keys from a file, one per line ('#' comments)",
             [](ServerOptions& o, auto& f, auto& v) {
                 std::ifstream in(v);
                 if (!in) bad(f, v, "cannot open the file");
                 std::string line;
                 while (std::getline(in, line)) {
                     while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
                     if (!line.empty() && line[0] != '#') o.api_keys.push_back(line);
                 }
             }},
            {{"--api-prefix"},
             "PREFIX",
             "LLAMA_ARG_API_PREFIX",
             "serve every route under this prefix (e.g. /api)",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (!v.empty() && (v[0] != '/' || v.back() == '/'))
                     bad(f, v, "must start with '/' and not end with '/'");
                 o.api_prefix = v;
             }},
            {{"-to", "--timeout"},
             "N",
             "LLAMA_ARG_TIMEOUT",
             "socket read/write timeout in seconds (default 3600)",
             [](ServerOptions& o, auto& f, auto& v) { o.timeout_s = static_cast<int>(to_int(f, v, 1, 1 << 30)); }},
            {{"--threads-http"},
             "N",
             "LLAMA_ARG_THREADS_HTTP",
             "most HTTP worker threads, one per open connection, started on demand (default -1 = the larger of 512 "
             "and slots + --max-queue + 4)",
             [](ServerOptions& o, auto& f, auto& v) { o.threads_http = static_cast<int>(to_int(f, v, -1, 4096)); }},
            {{"--max-queue"},
             "N",
             nullptr,
             "requests that may wait for a slot; more get 503 with Retry-After (default 64)",
             [](ServerOptions& o, auto& f, auto& v) { o.max_queue = static_cast<size_t>(to_int(f, v, 0, 1 << 20)); }},
            {{"--shutdown-timeout"},
             "N",
             nullptr,
             "seconds requests in flight get to finish after SIGTERM/SIGINT before they are cancelled (default 10)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.shutdown_timeout_s = static_cast<int>(to_int(f, v, 0, 1 << 20));
             }},
            {{"--max-body-size"},
             "BYTES",
             nullptr,
             "largest request body accepted (default 67108864 = 64 MiB)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.max_body_bytes = static_cast<size_t>(to_int(f, v, 1024, int64_t(1) << 40));
             }},
            {{"--sse-ping-interval"},
             "N",
             "LLAMA_ARG_SSE_PING_INTERVAL",
             "seconds of silence before an SSE keep-alive comment (default 30; -1 = never)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.sse_ping_interval_s = static_cast<int>(to_int(f, v, -1, 1 << 20));
             }},
            {{"--metrics"},
             nullptr,
             "LLAMA_ARG_ENDPOINT_METRICS",
             "enable GET /metrics (Prometheus)",
             [](ServerOptions& o, auto&, auto&) { o.endpoint_metrics = true; }},
            {{"--slots"},
             nullptr,
             "LLAMA_ARG_ENDPOINT_SLOTS",
             "enable GET /slots (default)",
             [](ServerOptions& o, auto&, auto&) { o.endpoint_slots = true; }},
            {{"--no-slots"},
             nullptr,
             nullptr,
             "disable GET /slots",
             [](ServerOptions& o, auto&, auto&) { o.endpoint_slots = false; }},
            {{"--props"},
             nullptr,
             "LLAMA_ARG_ENDPOINT_PROPS",
             "enable POST /props (accepted, changes nothing)",
             [](ServerOptions& o, auto&, auto&) { o.endpoint_props = true; }},
            {{"--webui", "--ui"},
             nullptr,
             "LLAMA_ARG_UI",
             "serve the built-in chat page at / (default)",
             [](ServerOptions& o, auto&, auto&) { o.webui = true; }},
            {{"--no-webui", "--no-ui"},
             nullptr,
             nullptr,
             "do not serve the built-in chat page at / (the API routes are unchanged)",
             [](ServerOptions& o, auto&, auto&) { o.webui = false; }},
            {{"--cors-origins"},
             "LIST",
             nullptr,
             "allowed CORS origins: * (default: echo the request's Origin), localhost (only local origins), or a list",
             [](ServerOptions& o, auto&, auto& v) { o.cors_origins = v; }},
            {{"--cors-methods"},
             "LIST",
             nullptr,
             "Access-Control-Allow-Methods of a preflight (default 'GET, POST, DELETE, OPTIONS')",
             [](ServerOptions& o, auto&, auto& v) { o.cors_methods = v; }},
            {{"--cors-headers"},
             "LIST",
             nullptr,
             "Access-Control-Allow-Headers of a preflight (default *)",
             [](ServerOptions& o, auto&, auto& v) { o.cors_headers = v; }},
            {{"--cors-credentials"},
             "on|off",
             nullptr,
             "allow credentials (default on)",
             [](ServerOptions& o, auto& f, auto& v) {
                 auto b = bool_word(v);
                 if (!b) bad(f, v, "expected on or off");
                 o.cors_credentials = *b;
             }},
            {{"--ssl-key-file", "--ssl-cert-file"},
             "FNAME",
             nullptr,
             "refused: no HTTPS built in (serve behind a TLS proxy)",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve is built without HTTPS; put a TLS proxy (nginx, caddy) in front of it");
             }},
            {{"--log-file"},
             "FNAME",
             "LLAMA_LOG_FILE",
             "write the server's log to this file instead of stderr",
             [](ServerOptions& o, auto&, auto& v) { o.log_file = v; }},
            {{"-lv", "--log-verbosity", "--verbosity"},
             "N",
             "LLAMA_LOG_VERBOSITY",
             "accepted: moeserve logs what llama-server shows at the default level",
             [](ServerOptions&, auto& f, auto& v) { to_int(f, v, -1, 1 << 20); }},
            {{"-v", "--verbose", "--log-verbose"},
             nullptr,
             nullptr,
             "accepted (see -lv)",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--no-log-prefix", "--no-log-timestamps", "--log-prefix", "--log-timestamps"},
             nullptr,
             nullptr,
             "accepted: moeserve's log lines have no prefix or timestamps",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--no-warmup", "--warmup"},
             nullptr,
             nullptr,
             "accepted: there is no warm-up run",
             [](ServerOptions&, auto&, auto&) {}},

            {{"--embedding", "--embeddings"},
             nullptr,
             "LLAMA_ARG_EMBEDDINGS",
             "serve /v1/embeddings, /embedding and /embeddings: the prompt's final hidden states (after the output "
             "norm), pooled with --pooling and L2-normalized; sets -b to -ub as llama-server does",
             [](ServerOptions& o, auto&, auto&) { o.embeddings = true; },
             "Embeddings and infill"},
            {{"--pooling"},
             "{none,mean,cls,last}",
             "LLAMA_ARG_POOLING",
             "how an embedding pools the prompt's tokens (default: the model's pooling_type, else none; /v1/embeddings "
             "needs one other than none)",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (v == "rank") bad(f, v, "rank pooling is for reranking, which moeserve does not have");
                 if (!parse_pooling(v)) bad(f, v, "expected none, mean, cls or last");
                 o.pooling = v;
             }},
            {{"--spm-infill"},
             nullptr,
             nullptr,
             "/infill: put the suffix before the prefix (Suffix/Prefix/Middle), as some models prefer (default: "
             "Prefix/Suffix/Middle)",
             [](ServerOptions& o, auto&, auto&) { o.spm_infill = true; }},
            {{"--reranking", "--rerank"},
             nullptr,
             "LLAMA_ARG_RERANKING",
             "refused: no reranking models",
             [](ServerOptions&, auto& f, auto&) { unsupported(f, "moeserve serves no reranking models"); }},
            {{"-hf", "-hfr", "--hf-repo", "-hff", "--hf-file", "-hfd", "-hfrd", "--hf-repo-draft", "-mu",
              "--model-url"},
             "REPO",
             nullptr,
             "refused: models are not downloaded",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve does not download models; give the GGUF file with -m FILE");
             }},
            {{"--tools"},
             "LIST",
             nullptr,
             "refused: no built-in tools",
             [](ServerOptions&, auto& f, auto&) { unsupported(f, kNoBuiltinTools); }},
            {{"--agent"},
             nullptr,
             nullptr,
             "refused: no built-in tools",
             [](ServerOptions&, auto& f, auto&) { unsupported(f, kNoBuiltinTools); }},
            {{"--lora", "--lora-scaled", "--control-vector"},
             "FNAME",
             nullptr,
             "refused: no adapters",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve loads no LoRA adapters or control vectors");
             }},
            {{"-mm", "--mmproj", "-mmu", "--mmproj-url"},
             "FNAME",
             nullptr,
             "refused: text models only",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve serves text models (no multimodal projector)");
             }},
            {{"--models-dir", "--models-preset"},
             "PATH",
             nullptr,
             "refused: one model per server",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve serves one model per process (no router mode); start one server per model");
             }},
            {{"--spec-type"},
             "TYPE",
             "LLAMA_ARG_SPEC_TYPE",
             "speculative decoding: none (default), ngram-simple (guesses copied from the conversation's own "
             "earlier tokens) or ngram-mod (guesses walked through a hashed pool of the n-grams all slots have "
             "seen), or both as a comma list, tried in that order; the guesses are verified in one forward pass "
             "with the token they follow (the answer is the one without speculation; hybrid models keep a copy of "
             "each slot's recurrent state to roll back to). Draft models and n-gram maps are refused",
             [](ServerOptions& o, auto& f, auto& v) {
                 try {
                     o.speculative.kinds = parse_spec_type(v);
                     o.speculative.enabled = !o.speculative.kinds.empty();
                 } catch (const std::invalid_argument& e) {
                     bad(f, v, e.what());
                 }
             },
             "Speculative decoding"},
            {{"--spec-draft-n-max", "--draft-max", "--draft", "--draft-n"},
             "N",
             "LLAMA_ARG_DRAFT_MAX",
             "ngram-simple: most guessed tokens verified with each generated one (default: 16)",
             [](ServerOptions& o, auto& f, auto& v) { o.speculative.n_max = static_cast<int>(to_int(f, v, 0, 1024)); }},
            {{"--spec-draft-n-min", "--draft-min", "--draft-n-min"},
             "N",
             "LLAMA_ARG_DRAFT_MIN",
             "fewest guessed tokens worth verifying (default: 0; a request's speculative.n_min)",
             [](ServerOptions& o, auto& f, auto& v) { o.speculative.n_min = static_cast<int>(to_int(f, v, 0, 1024)); }},
            {{"--spec-draft-p-min", "--draft-p-min"},
             "P",
             "LLAMA_ARG_DRAFT_P_MIN",
             "accepted: a draft model's probability threshold (no effect on n-gram guesses)",
             [](ServerOptions&, auto& f, auto& v) { (void)to_float(f, v); }},
            {{"--spec-ngram-simple-size-n", "--spec-ngram-size-n"},
             "N",
             nullptr,
             "ngram-simple: tokens of the pattern looked up in the history, the newest one included (default: 12)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.speculative.ngram.size_n = static_cast<int>(to_int(f, v, 1, 1024));
             }},
            {{"--spec-ngram-simple-size-m", "--spec-ngram-size-m"},
             "N",
             nullptr,
             "ngram-simple: most tokens copied after the pattern's earlier occurrence (default: 48)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.speculative.ngram.size_m = static_cast<int>(to_int(f, v, 1, 1024));
             }},
            {{"--spec-ngram-simple-min-hits"},
             "N",
             nullptr,
             "accepted: ngram-simple does not count hits (as in llama.cpp)",
             [](ServerOptions&, auto& f, auto& v) { (void)to_int(f, v, 1, INT32_MAX); }},
            {{"--spec-ngram-map-k-size-n", "--spec-ngram-map-k-size-m", "--spec-ngram-map-k-min-hits",
              "--spec-ngram-map-k4v-size-n", "--spec-ngram-map-k4v-size-m", "--spec-ngram-map-k4v-min-hits",
              "--spec-ngram-min-hits", "--spec-ngram-check-rate"},
             "N",
             nullptr,
             "accepted: the n-gram maps' settings (--spec-type ngram-map-k and ngram-map-k4v are refused); "
             "guesses are looked up at every token",
             [](ServerOptions&, auto& f, auto& v) { (void)to_int(f, v, 0, INT32_MAX); }},
            {{"-lcs", "--lookup-cache-static", "-lcd", "--lookup-cache-dynamic"},
             "FNAME",
             nullptr,
             "refused: ngram-cache's lookup files (use --spec-type ngram-mod, whose pool the slots share)",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f,
                             "moeserve has no ngram-cache speculation; --spec-type ngram-mod keeps a pool of the "
                             "n-grams all slots have seen");
             }},
            {{"--spec-ngram-mod-n-match"},
             "N",
             nullptr,
             "ngram-mod: tokens hashed to look up the next one, the newest included (default: 24; llama.cpp warns "
             "below 16)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.speculative.mod.n_match = static_cast<int>(to_int(f, v, 1, 1024));
             }},
            {{"--spec-ngram-mod-n-min"},
             "N",
             nullptr,
             "ngram-mod: a walk through the pool that stops before N tokens is no draft (default: 48)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.speculative.mod.n_min = static_cast<int>(to_int(f, v, 0, 1024));
             }},
            {{"--spec-ngram-mod-n-max"},
             "N",
             nullptr,
             "ngram-mod: most guessed tokens verified with each generated one (default: 64)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.speculative.mod.n_max = static_cast<int>(to_int(f, v, 1, 1024));
             }},
            {{"-md", "--model-draft", "--spec-draft-model"},
             "FNAME",
             nullptr,
             "refused: no draft models (use --spec-type ngram-simple or ngram-mod)",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f,
                             "moeserve loads no draft model; --spec-type ngram-simple or ngram-mod speculates "
                             "without one");
             }},

            {{"--jinja"},
             nullptr,
             "LLAMA_ARG_JINJA",
             "use the model's chat template (default on)",
             [](ServerOptions& o, auto&, auto&) { o.jinja = true; },
             "Chat"},
            {{"--no-jinja"},
             nullptr,
             nullptr,
             "plain chat formatting; requests with tools are refused",
             [](ServerOptions& o, auto&, auto&) { o.jinja = false; }},
            {{"--chat-template"},
             "NAME|TEMPLATE",
             "LLAMA_ARG_CHAT_TEMPLATE",
             "chat format: chatml, qwen3, glm4, nemotron, or template source of one of those families "
             "(default: from the GGUF)",
             [](ServerOptions& o, auto&, auto& v) { o.chat_template = v; }},
            {{"--chat-template-file"},
             "FNAME",
             nullptr,
             "Jinja chat template from a file, instead of the model's",
             [](ServerOptions& o, auto&, auto& v) { o.chat_template_file = v; }},
            {{"--chat-template-kwargs"},
             "JSON",
             nullptr,
             "default extra template variables, e.g. '{\"enable_thinking\":false}'",
             [](ServerOptions& o, auto& f, auto& v) {
                 auto j = nlohmann::json::parse(v, nullptr, false);
                 if (j.is_discarded() || !j.is_object()) bad(f, v, "expected a JSON object");
                 o.chat_template_kwargs = j;
             }},
            {{"--no-prefix-sharing"},
             nullptr,
             "MOESERVE_NO_PREFIX_SHARING",
             kNoPrefixSharingHelp,
             [](ServerOptions& o, auto&, auto&) { o.prefix_sharing = false; }},
            {{"--allow-replay"},
             nullptr,
             nullptr,
             "testing: a request's \"replay\" text is emitted as the answer, token by token, then end of "
             "generation (for testing clients and output parsing without a trained model)",
             [](ServerOptions& o, auto&, auto&) { o.allow_replay = true; }},
            {{"--reasoning-format"},
             "FORMAT",
             "LLAMA_ARG_THINK",
             "where thinking goes: auto or deepseek (reasoning_content, default), none (left in content with its "
             "tags); deepseek-legacy is read as deepseek",
             [](ServerOptions& o, auto& f, auto& v) {
                 auto r = parse_reasoning_format(v);
                 if (!r) bad(f, v, "expected none, deepseek, deepseek-legacy or auto");
                 o.reasoning_format = *r;
             }},
            {{"-rea", "--reasoning"},
             "on|off|auto",
             nullptr,
             "thinking: on or off sets the templates' enable_thinking; auto leaves it to the template (default)",
             [](ServerOptions& o, auto& f, auto& v) {
                 if (v == "auto") {
                     o.enable_thinking.reset();
                     return;
                 }
                 auto b = bool_word(v);
                 if (!b) bad(f, v, "expected on, off or auto");
                 o.enable_thinking = *b;
             }},
            {{"--reasoning-budget"},
             "N",
             nullptr,
             "thinking budget: -1 = unlimited (default), 0 = no thinking (enable_thinking false), N = at most N "
             "tokens of reasoning, then the template's closing marker is written and the answer follows",
             [](ServerOptions& o, auto& f, auto& v) {
                 const int64_t n = to_int(f, v, -1, int64_t(1) << 31);
                 if (n == 0) o.enable_thinking = false;
                 o.reasoning_budget = n > 0 ? n : -1;
             }},
            {{"--prefill-assistant"},
             nullptr,
             nullptr,
             "continue a trailing assistant message (default)",
             [](ServerOptions& o, auto&, auto&) { o.prefill_assistant = true; }},
            {{"--no-prefill-assistant"},
             nullptr,
             "LLAMA_ARG_NO_PREFILL_ASSISTANT",
             "render a trailing assistant message as a finished turn, then the generation prompt",
             [](ServerOptions& o, auto&, auto&) { o.prefill_assistant = false; }},
            {{"-sp", "--special"},
             nullptr,
             nullptr,
             "render special tokens in generated text",
             [](ServerOptions& o, auto&, auto&) { o.special = true; }},

            {{"--temp"},
             "T",
             nullptr,
             "temperature (default 0.8; 0 = greedy)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.temperature = to_float(f, v); },
             "Sampling defaults"},
            {{"--top-k"},
             "N",
             nullptr,
             "top-k (default 40; 0 = off)",
             [](ServerOptions& o, auto& f,
                auto& v) { o.sampling.top_k = static_cast<int32_t>(to_int(f, v, 0, INT32_MAX)); }},
            {{"--top-p"},
             "P",
             nullptr,
             "top-p (default 0.95; 1 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.top_p = to_float(f, v); }},
            {{"--min-p"},
             "P",
             nullptr,
             "min-p (default 0.05; 0 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.min_p = to_float(f, v); }},
            {{"--typical"},
             "P",
             nullptr,
             "typical-p (default 1 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.typical_p = to_float(f, v); }},
            {{"--repeat-penalty"},
             "F",
             nullptr,
             "repetition penalty (default 1 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.repeat_penalty = to_float(f, v); }},
            {{"--repeat-last-n"},
             "N",
             nullptr,
             "tokens the penalties look back over (default 64; -1 = the slot context)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.sampling.repeat_last_n = static_cast<int32_t>(to_int(f, v, -1, INT32_MAX));
             }},
            {{"--presence-penalty"},
             "F",
             nullptr,
             "presence penalty (default 0)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.presence_penalty = to_float(f, v); }},
            {{"--xtc-probability"},
             "F",
             nullptr,
             "XTC: probability of removing the top choices (default 0 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.xtc_probability = to_float(f, v); }},
            {{"--xtc-threshold"},
             "F",
             nullptr,
             "XTC: probability a choice needs to be removed (default 0.1; above 0.5 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.xtc_threshold = to_float(f, v); }},
            {{"--top-nsigma", "--top-n-sigma"},
             "F",
             nullptr,
             "keep tokens within F standard deviations of the top logit (default -1 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.top_n_sigma = to_float(f, v); }},
            {{"--dry-multiplier"},
             "F",
             nullptr,
             "DRY repetition penalty strength (default 0 = off)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.dry_multiplier = to_float(f, v); }},
            {{"--dry-base"},
             "F",
             nullptr,
             "DRY: the penalty grows as F^(repeat length - allowed length) (default 1.75)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.dry_base = to_float(f, v); }},
            {{"--dry-allowed-length"},
             "N",
             nullptr,
             "DRY: repeats up to N tokens are free (default 2)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.sampling.dry_allowed_length = static_cast<int32_t>(to_int(f, v, 0, INT32_MAX));
             }},
            {{"--dry-penalty-last-n"},
             "N",
             nullptr,
             "DRY: how many recent tokens to search (default -1 = the context, 0 = off)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.sampling.dry_penalty_last_n = static_cast<int32_t>(to_int(f, v, -1, INT32_MAX));
             }},
            {{"--dry-sequence-breaker"},
             "S",
             nullptr,
             "DRY: a string that ends a repeat; repeat the flag for several; \"none\" for none "
             "(default: \\n : \" *)",
             [](ServerOptions& o, auto&, auto& v) {
                 // The first use replaces the defaults, as llama-server does.
                 if (!o.dry_breakers_set) o.sampling.dry_sequence_breakers.clear();
                 o.dry_breakers_set = true;
                 if (v != "none") o.sampling.dry_sequence_breakers.push_back(v);
             }},
            {{"--mirostat"},
             "N",
             nullptr,
             "Mirostat sampling: 0 off (default), 1 Mirostat, 2 Mirostat 2.0 (replaces the sampler list)",
             [](ServerOptions& o, auto& f, auto& v) {
                 o.sampling.mirostat = static_cast<int32_t>(to_int(f, v, 0, 2));
             }},
            {{"--mirostat-lr"},
             "F",
             nullptr,
             "Mirostat learning rate eta (default 0.1)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.mirostat_eta = to_float(f, v); }},
            {{"--mirostat-ent"},
             "F",
             nullptr,
             "Mirostat target entropy tau (default 5.0)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.mirostat_tau = to_float(f, v); }},
            {{"--frequency-penalty"},
             "F",
             nullptr,
             "frequency penalty (default 0)",
             [](ServerOptions& o, auto& f, auto& v) { o.sampling.frequency_penalty = to_float(f, v); }},
            {{"-s", "--seed"},
             "N",
             nullptr,
             "random seed (default -1 = random)",
             [](ServerOptions& o, auto& f, auto& v) {
                 int64_t s = to_int(f, v, -1, UINT32_MAX);
                 o.sampling.seed = s < 0 ? kRandomSeed : static_cast<uint32_t>(s);
             }},
            {{"--samplers"},
             "NAMES",
             "LLAMA_ARG_SAMPLERS",
             "the default sampler order, names separated by ';' (e.g. 'top_k;top_p;min_p;temperature')",
             [](ServerOptions& o, auto& f, auto& v) {
                 std::vector<SamplerType> order;
                 size_t at = 0;
                 while (at <= v.size()) {
                     const size_t end = std::min(v.find(';', at), v.size());
                     const std::string name = v.substr(at, end - at);
                     if (!name.empty()) {
                         auto t = sampler_type_from_name(name);
                         if (!t) bad(f, v, "unknown sampler '" + name + "'");
                         order.push_back(*t);
                     }
                     at = end + 1;
                 }
                 if (order.empty()) bad(f, v, "expected sampler names separated by ';'");
                 o.sampling.samplers = order;
             }},
            {{"--sampling-seq", "--sampler-seq"},
             "LETTERS",
             nullptr,
             "the default sampler order as letters (e.g. 'kfypmt'), as --samplers",
             [](ServerOptions& o, auto& f, auto& v) {
                 std::vector<SamplerType> order;
                 for (char c : v) {
                     auto t = sampler_type_from_char(c);
                     if (!t) bad(f, v, std::string("unknown sampler letter '") + c + "'");
                     order.push_back(*t);
                 }
                 if (order.empty()) bad(f, v, "expected sampler letters");
                 o.sampling.samplers = order;
             }},
            {{"-r", "--reverse-prompt"},
             "TEXT",
             nullptr,
             "a stop string every request has unless it sends its own \"stop\" (repeat for several)",
             [](ServerOptions& o, auto&, auto& v) { o.reverse_prompts.push_back(v); }},
            {{"--ignore-eos"},
             nullptr,
             nullptr,
             "keep generating past end-of-generation tokens (a request's ignore_eos overrides it)",
             [](ServerOptions& o, auto&, auto&) { o.ignore_eos = true; }},

            {{"--numa"},
             "TYPE",
             nullptr,
             "accepted: no NUMA placement (distribute, isolate, numactl)",
             [](ServerOptions&, auto& f, auto& v) {
                 if (v != "distribute" && v != "isolate" && v != "numactl")
                     bad(f, v, "expected distribute, isolate or numactl");
             },
             "Accepted for compatibility"},
            {{"--prio", "--prio-batch", "--poll", "--poll-batch", "-dt", "--defrag-thold"},
             "N",
             nullptr,
             "accepted: thread priority, polling and defragmentation are not tunable here",
             [](ServerOptions&, auto& f, auto& v) { to_float(f, v); }},
            {{"-C", "--cpu-mask", "-Cr", "--cpu-range", "-Cb", "--cpu-mask-batch", "-Crb", "--cpu-range-batch"},
             "MASK",
             nullptr,
             "accepted: threads are not pinned",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--cpu-strict", "--cpu-strict-batch"},
             "0|1",
             nullptr,
             "accepted: threads are not pinned",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--log-disable", "--log-colors", "--no-perf", "--perf", "--verbose-prompt", "--offline", "--no-escape",
              "--escape"},
             nullptr,
             nullptr,
             "accepted: no effect on moeserve's log or behaviour",
             [](ServerOptions&, auto&, auto&) {}},
            {{"--override-kv"},
             "KEY=TYPE:VALUE",
             nullptr,
             "refused: model metadata is read as stored",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve reads the model's metadata as stored (edit the GGUF to change it)");
             }},
            {{"-gan", "--grp-attn-n", "-gaw", "--grp-attn-w"},
             "N",
             nullptr,
             "refused: no self-extend attention",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f, "moeserve has no self-extend (group attention); use --rope-scaling yarn");
             }},
            {{"-ngld", "--gpu-layers-draft", "-devd", "--device-draft", "-cd", "--ctx-size-draft", "--spec-replace"},
             "N",
             nullptr,
             "refused: no draft models",
             [](ServerOptions&, auto& f, auto&) {
                 unsupported(f,
                             "moeserve loads no draft model; --spec-type ngram-simple or ngram-mod speculates "
                             "without one");
             }},
        };
        // llama.cpp's RoPE flags (engine/rope_flags.h), a section of their own.
        const char* group = "RoPE, over the model's own";
        for (const RopeFlag& r : rope_flags()) {
            t.push_back({{r.name},
                         r.value,
                         r.env,
                         r.help,
                         [](ServerOptions& o, auto& f, auto& v) {
                             // f is the flag, or its LLAMA_ARG_* variable.
                             for (const RopeFlag& rf : rope_flags())
                                 if (f == rf.name || f == rf.env) try {
                                         apply_rope_flag(o.rope, rf.name, v);
                                         return;
                                     } catch (const std::invalid_argument& e) {
                                         bad(f, v, e.what());
                                     }
                         },
                         group});
            group = nullptr;
        }
        return t;
    }();
    return table;
}

const Flag* find_flag(const std::string& name) {
    for (const auto& f : flags())
        for (const char* n : f.names)
            if (name == n) return &f;
    return nullptr;
}

// The "--no-X" switch of a "--X" switch, if there is one.
const Flag* negation_of(const Flag& f) {
    for (const char* n : f.names) {
        const std::string name = n;
        if (name.rfind("--", 0) != 0) continue;
        if (const Flag* no = find_flag("--no-" + name.substr(2)); no && !no->value) return no;
    }
    return nullptr;
}

// Records that the user chose a sampling setting, by the name of its
// general.sampling.* key: the model's recommendation no longer replaces it.
void note_sampling_setting(ServerOptions& o, const Flag& f) {
    static const std::pair<std::string_view, const char*> keys[] = {
        {"--temp", "temp"},
        {"--top-k", "top_k"},
        {"--top-p", "top_p"},
        {"--min-p", "min_p"},
        {"--xtc-probability", "xtc_probability"},
        {"--xtc-threshold", "xtc_threshold"},
        {"--repeat-last-n", "penalty_last_n"},
        {"--repeat-penalty", "penalty_repeat"},
        {"--mirostat", "mirostat"},
        {"--mirostat-lr", "mirostat_eta"},
        {"--mirostat-ent", "mirostat_tau"},
        {"--samplers", "sequence"},
        {"--sampling-seq", "sequence"},
    };
    for (const auto& [flag, key] : keys)
        if (f.names.back() == flag || f.names.front() == flag) o.sampling_given.insert(key);
}

void validate(ServerOptions& o) {
    if (o.help) return;
    if (o.model_path.empty()) throw ServerFlagError("no model given: use -m FILE (or LLAMA_ARG_MODEL)");
    if (o.n_ubatch > o.n_batch) o.n_ubatch = o.n_batch;
    // llama-server with embeddings submits at most one micro-batch per step.
    if (o.embeddings && o.n_batch > o.n_ubatch) o.n_batch = o.n_ubatch;
    const bool v_quantized = o.cache_type_v != "f16" && o.cache_type_v != "f32" && o.cache_type_v != "bf16";
    if (v_quantized && o.flash_attn == "off")
        throw ServerFlagError(
            fmt::format("V cache quantization requires flash_attn (-ctv {} with -fa off)", o.cache_type_v));
    // -rea / --reasoning-budget 0 set the default; --chat-template-kwargs and requests can still name it.
    if (o.enable_thinking && !o.chat_template_kwargs.contains("enable_thinking"))
        o.chat_template_kwargs["enable_thinking"] = *o.enable_thinking;
    if (!o.chat_template_file.empty()) {
        std::ifstream in(o.chat_template_file);
        if (!in)
            throw ServerFlagError(fmt::format("--chat-template-file {}: cannot open the file", o.chat_template_file));
    }
}

}  // namespace

ServerOptions parse_server_args(const std::vector<std::string>& args, const EnvLookup& env) {
    ServerOptions o;
    if (env) {
        for (const auto& f : flags()) {
            if (!f.env) continue;
            const char* v = env(f.env);
            if (!v) continue;
            if (f.value) {
                f.apply(o, f.env, v);
            } else if (std::string_view(f.env).find("_NO_") != std::string_view::npos) {
                f.apply(o, f.env, v);  // LLAMA_ARG_NO_MMAP and the like: being set at all says "no"
            } else {
                auto b = bool_word(v);
                if (!b) bad(f.env, v, "expected true/false, 1/0, on/off or enabled/disabled");
                if (*b)
                    f.apply(o, f.env, v);
                else if (const Flag* no = negation_of(f))  // LLAMA_ARG_ENDPOINT_SLOTS=false is --no-slots
                    no->apply(o, f.env, v);
            }
            note_sampling_setting(o, f);
        }
    }
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& name = args[i];
        const Flag* f = find_flag(name);
        if (!f) throw ServerFlagError(fmt::format("unknown argument '{}' (see moeserve serve --help)", name));
        std::string value;
        if (f->value) {
            if (i + 1 >= args.size())
                throw ServerFlagError(fmt::format("option {} needs a value ({})", name, f->value));
            value = args[++i];
        }
        f->apply(o, name, value);
        note_sampling_setting(o, *f);
    }
    validate(o);
    return o;
}

std::string server_help() {
    std::string out =
        "usage: moeserve serve -m MODEL [options]\n"
        "\n"
        "An OpenAI-compatible HTTP server, a drop-in for llama-server: the same flags,\n"
        "routes and JSON. Routes: /v1/chat/completions, /v1/completions, /completion,\n"
        "/infill, /v1/embeddings, /embedding(s) (with --embeddings), /v1/models,\n"
        "/health, /metrics, /slots, /props, /tokenize, /detokenize, /apply-template.\n"
        "Flags can also come from the LLAMA_ARG_* variables shown;\n"
        "the command line wins.\n";
    for (const auto& f : flags()) {
        if (f.group) out += fmt::format("\n{}:\n", f.group);
        std::string names;
        for (const char* n : f.names) names += (names.empty() ? "" : ", ") + std::string(n);
        if (f.value) names += std::string(" ") + f.value;
        std::string help = f.help;
        if (f.env) help += fmt::format(" [env: {}]", f.env);
        if (names.size() < 34)
            out += fmt::format("  {:<34} {}\n", names, help);
        else
            out += fmt::format("  {}\n  {:<34} {}\n", names, "", help);
    }
    return out;
}

}  // namespace moeserve
