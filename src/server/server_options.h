// The server's own layer (src/server/): HTTP routes, the OpenAI and native
// JSON mapping, SSE, metrics and chat prompt formatting, over the engine's
// Scheduler.
//
// This header: everything `moeserve serve` can be told on its command line,
// with llama-server's flag names and defaults (spec server-behaviour §1),
// and the table-driven parser for it (server_flags.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/expert_placement.h"
#include "chat/chat_output.h"
#include "engine/ngram_draft.h"
#include "engine/sampler.h"
#include "gguf/mapped_file.h"
#include "memory/kv_cache.h"
#include "model/model_params.h"

namespace moeserve {

struct ServerOptions {
    // Model
    std::string model_path;
    std::vector<std::string> aliases;     // -a; empty: the -m string
    std::string n_gpu_layers = "auto";    // -ngl: N, auto or all (backend/select_backend.h)
    LoadMode load_mode = LoadMode::mmap;  // -lm, --mmap, --no-mmap, --mlock, -dio

    // Placement of tensors in host memory (llama-server's -cmoe, -ncmoe, -ot,
    // -nkvo): a CPU run has everything there already; a GPU run keeps the
    // routed experts of the layers they name there (expert_placement.h) and
    // refuses -nkvo.
    ExpertPlacementFlags experts;
    bool no_kv_offload = false;

    // --fit: with no -c, lower the context until the plan fits with
    // fit_target_mib to spare, never below fit_ctx.
    bool fit = true;
    int64_t fit_target_mib = 1024;
    int64_t fit_ctx = 4096;
    bool n_ctx_given = false;  // -c (or LLAMA_ARG_CTX_SIZE) was given, even as 0: --fit leaves it alone

    // Context, slots, batching
    int64_t n_ctx = 0;    // total cells; 0: the training context
    int n_parallel = -1;  // -1: auto (4 slots, unified cache)
    std::optional<bool> kv_unified;
    int64_t n_batch = 2048;  // tokens per scheduler step
    int64_t n_ubatch = 512;  // tokens per forward call
    int n_threads = -1;      // -1: all cores
    int n_threads_batch = -1;
    int64_t n_predict = -1;  // server default for requests
    std::string cache_type_k = "f16";
    std::string cache_type_v = "f16";
    std::string flash_attn = "auto";  // on|off|auto
    bool cont_batching = true;        // always on; the flag is accepted
    bool cache_prompt = true;
    bool ignore_eos = false;                   // --ignore-eos: a request's default
    std::vector<std::string> reverse_prompts;  // -r: the stop strings of requests that send none
    double slot_prompt_similarity = 0.1;
    bool context_shift = false;     // --context-shift: a full slot drops old tokens and goes on
    int64_t keep = 0;               // --keep: a request's default n_keep
    int64_t cache_reuse = 0;        // --cache-reuse: a request's default n_cache_reuse
    SpeculativeConfig speculative;  // --spec-type ngram-simple, --spec-draft-n-max, ...
    int64_t cache_ram_mib = 8192;   // --cache-ram: the RAM prompt cache's limit (-1 = no limit, 0 = off)
    std::string slot_save_path;     // --slot-save-path: where POST /slots/{id}?action=save|restore keep files
    // --ctx-checkpoints: hybrid models' recurrent-state snapshots per slot (as
    // llama-server, 32): the first RecurrentState::kDeviceSnapshots in the backend's
    // memory, the rest (message starts) in host RAM.
    int ctx_checkpoints = KvCacheConfig{}.n_rs_snapshots;
    // --checkpoint-min-step: the fewest tokens between two message-start snapshots.
    int64_t checkpoint_min_step = 8192;
    bool prefix_sharing = true;  // --no-prefix-sharing: slots never share KV cells

    // HTTP
    std::string host = "127.0.0.1";
    int port = 8080;
    std::vector<std::string> api_keys;
    int timeout_s = 3600;
    int threads_http = -1;  // -1: slots + queue + 4
    size_t max_queue = 64;
    size_t max_body_bytes = 64u << 20;
    int shutdown_timeout_s = 10;  // for requests in flight at SIGTERM/SIGINT
    int sse_ping_interval_s = 30;
    bool endpoint_metrics = false;
    bool endpoint_slots = true;
    bool endpoint_props = false;
    bool webui = true;              // the chat page at "/" (--no-webui)
    int64_t reasoning_budget = -1;  // --reasoning-budget N > 0: thinking tokens per answer
    std::string api_prefix;
    // CORS (spec §4.3): "*" echoes the request's Origin while credentials
    // are on; "localhost" echoes only local origins; else the list as given.
    std::string cors_origins = "*";
    std::string cors_methods = "GET, POST, DELETE, OPTIONS";
    std::string cors_headers = "*";
    bool cors_credentials = true;
    std::string log_file;  // --log-file: server logs (stderr) go to this file

    // Embeddings and infill
    bool embeddings = false;  // --embeddings: serve /v1/embeddings, /embedding, /embeddings
    std::string pooling;      // --pooling none|mean|cls|last; empty: the GGUF's {arch}.pooling_type, else none
    bool spm_infill = false;  // /infill: suffix before prefix (Suffix/Prefix/Middle)

    // Chat
    bool jinja = true;
    std::string chat_template;       // a built-in name or template source
    std::string chat_template_file;  // a Jinja template read from this file (instead of the model's)
    nlohmann::json chat_template_kwargs = nlohmann::json::object();
    ReasoningFormat reasoning_format = ReasoningFormat::Auto;  // --reasoning-format
    std::optional<bool> enable_thinking;  // -rea on|off, --reasoning-budget 0: the enable_thinking kwarg's default
    bool prefill_assistant = true;        // a trailing assistant message is continued, not closed
    bool special = false;                 // render special tokens in output text
    bool allow_replay = false;            // testing: requests may force their output ("replay")

    // Sampling defaults for requests
    SamplingParams sampling;
    // The sampling settings given by flag or variable, by their GGUF names
    // (temp, top_k, ..., sequence): the model's general.sampling.* values
    // replace the defaults of the others (model_sampling_defaults.h).
    std::set<std::string> sampling_given;
    RopeOverrides rope;             // --rope-scaling, --rope-scale, --yarn-*
    bool dry_breakers_set = false;  // a --dry-sequence-breaker replaced the default breakers

    bool help = false;  // -h: print server_help() and exit
};

// A flag or value the server does not accept; the message names it.
class ServerFlagError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

using EnvLookup = std::function<const char*(const char*)>;

// Parses `moeserve serve` arguments. llama-server's LLAMA_ARG_* environment
// variables are read first (through env; nullptr: none), the command line
// wins. Throws ServerFlagError for an unknown flag, a missing or bad value,
// or an inconsistent combination.
ServerOptions parse_server_args(const std::vector<std::string>& args, const EnvLookup& env = nullptr);

// The --help text: every flag with its environment variable and default.
std::string server_help();

}  // namespace moeserve
