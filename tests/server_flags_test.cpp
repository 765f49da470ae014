// `moeserve serve` flags: llama-server's spellings and defaults, values
// checked at start, environment variables, and --help listing every flag.
#include <gtest/gtest.h>

#include <map>

#include "server/http_server.h"
#include "server/server_options.h"

namespace moeserve {
namespace {

ServerOptions parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    return parse_server_args(args, [env](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

std::string error_of(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    try {
        parse(args, env);
    } catch (const ServerFlagError& e) {
        return e.what();
    }
    return "";
}

TEST(ServerFlags, defaults_are_llama_servers) {
    auto o = parse({"-m", "m.gguf"});
    EXPECT_EQ(o.model_path, "m.gguf");
    EXPECT_EQ(o.n_ctx, 0);
    EXPECT_EQ(o.n_parallel, -1);
    EXPECT_FALSE(o.kv_unified.has_value());
    EXPECT_EQ(o.n_batch, 2048);
    EXPECT_EQ(o.n_ubatch, 512);
    EXPECT_EQ(o.host, "127.0.0.1");
    EXPECT_EQ(o.port, 8080);
    EXPECT_EQ(o.cache_type_k, "f16");
    EXPECT_EQ(o.flash_attn, "auto");
    EXPECT_TRUE(o.jinja);
    EXPECT_TRUE(o.endpoint_slots);
    EXPECT_FALSE(o.endpoint_metrics);
    EXPECT_EQ(o.max_queue, 64u);
    EXPECT_EQ(o.timeout_s, 3600);
    EXPECT_FLOAT_EQ(o.sampling.temperature, 0.8f);
}

TEST(ServerFlags, accepts_a_llama_cpp_guide_command_line) {
    auto o = parse({"-m",
                    "model.gguf",
                    "-ngl",
                    "99",
                    "-c",
                    "786432",
                    "-np",
                    "1",
                    "--cache-type-k",
                    "q4_0",
                    "--cache-type-v",
                    "q4_0",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    "8081",
                    "-fa",
                    "on",
                    "-t",
                    "8",
                    "-b",
                    "4096",
                    "-ub",
                    "1024",
                    "-a",
                    "zeta,alpha",
                    "--api-key",
                    "k1,k2",
                    "--jinja",
                    "--metrics",
                    "--no-slots",
                    "--kv-unified",
                    "-n",
                    "256",
                    "--temp",
                    "0.2",
                    "--seed",
                    "7",
                    "--cont-batching",
                    "--timeout",
                    "60",
                    "--max-queue",
                    "8",
                    "--chat-template",
                    "chatml"});
    EXPECT_EQ(o.n_gpu_layers, "99");
    EXPECT_EQ(o.n_ctx, 786432);
    EXPECT_EQ(o.n_parallel, 1);
    EXPECT_EQ(o.cache_type_v, "q4_0");
    EXPECT_EQ(o.host, "0.0.0.0");
    EXPECT_EQ(o.port, 8081);
    EXPECT_EQ(o.flash_attn, "on");
    EXPECT_EQ(o.n_threads, 8);
    EXPECT_EQ(o.n_batch, 4096);
    EXPECT_EQ(o.n_ubatch, 1024);
    EXPECT_EQ(o.aliases, (std::vector<std::string>{"alpha", "zeta"}));  // sorted: the first is reported
    EXPECT_EQ(o.api_keys, (std::vector<std::string>{"k1", "k2"}));
    EXPECT_TRUE(o.endpoint_metrics);
    EXPECT_FALSE(o.endpoint_slots);
    EXPECT_EQ(o.kv_unified, true);
    EXPECT_EQ(o.n_predict, 256);
    EXPECT_FLOAT_EQ(o.sampling.temperature, 0.2f);
    EXPECT_EQ(o.sampling.seed, 7u);
    EXPECT_EQ(o.timeout_s, 60);
    EXPECT_EQ(o.max_queue, 8u);
    EXPECT_EQ(o.chat_template, "chatml");
}

TEST(ServerFlags, rejects_unknown_flags_and_bad_values_by_name) {
    EXPECT_NE(error_of({"-m", "m", "--frobnicate"}).find("'--frobnicate'"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "-c", "lots"}).find("-c"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "-np", "0"}).find("-np"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "--port", "70000"}).find("--port"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "-ctk", "q3_k"}).find("Unsupported cache type: q3_k"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "-fa", "maybe"}).find("-fa"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "-ctv", "q8_0", "-fa", "off"}).find("V cache quantization requires flash_attn"),
              std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "-c"}).find("needs a value"), std::string::npos);
    EXPECT_NE(error_of({"-c", "4096"}).find("no model"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m", "--chat-template-file", "/nonexistent.jinja"}).find("cannot open the file"),
              std::string::npos);
    EXPECT_EQ(error_of({"-m", "m", "--chat-template-file", "/dev/null"}), "");  // readable: accepted
    EXPECT_NE(error_of({"-m", "m", "-nocb"}).find("continuous batching"), std::string::npos);
}

// The rest of llama-server's flag table (spec server-behaviour §1.2): every
// flag is either applied, accepted where it changes nothing here (the help
// says why), or refused with a message that names it and says why.
TEST(ServerFlags, llama_server_placement_load_fit_and_chat_flags_apply) {
    auto d = parse({"-m", "m.gguf"});
    EXPECT_TRUE(d.fit);
    EXPECT_EQ(d.fit_target_mib, 1024);
    EXPECT_EQ(d.fit_ctx, 4096);
    EXPECT_FALSE(d.n_ctx_given);
    EXPECT_EQ(d.load_mode, LoadMode::mmap);
    EXPECT_TRUE(d.prefill_assistant);
    EXPECT_EQ(d.cors_origins, "*");
    EXPECT_TRUE(d.cors_credentials);
    EXPECT_FALSE(d.chat_template_kwargs.contains("enable_thinking"));

    auto o = parse({"-m",
                    "m.gguf",
                    "-fit",
                    "off",
                    "-fitt",
                    "512,256",
                    "-fitc",
                    "2048",
                    "--no-mmap",
                    "-cmoe",
                    "-ncmoe",
                    "4",
                    "-ot",
                    "exps=CPU,blk\\.1\\.=CPU",
                    "-nkvo",
                    "-sm",
                    "layer",
                    "-ts",
                    "1",
                    "-mg",
                    "0",
                    "-rea",
                    "off",
                    "--no-prefill-assistant",
                    "--cors-origins",
                    "localhost",
                    "--cors-credentials",
                    "off",
                    "--cache-reuse",
                    "256",
                    "-ctxcp",
                    "8",
                    "-cms",
                    "1024",
                    "-cram",
                    "0",
                    "--no-context-shift",
                    "--keep",
                    "0",
                    "--swa-full",
                    "--no-log-prefix",
                    "-lv",
                    "3",
                    "--no-warmup",
                    "--cache-idle-slots"});
    EXPECT_FALSE(o.fit);
    EXPECT_EQ(o.fit_target_mib, 512);
    EXPECT_EQ(o.fit_ctx, 2048);
    EXPECT_EQ(o.load_mode, LoadMode::read);
    EXPECT_TRUE(o.experts.cpu_moe);
    EXPECT_EQ(o.experts.n_cpu_moe, 4);
    EXPECT_EQ(o.experts.override_tensor, (std::vector<std::string>{"exps=CPU", "blk\\.1\\.=CPU"}));
    EXPECT_TRUE(o.no_kv_offload);
    EXPECT_EQ(o.chat_template_kwargs["enable_thinking"], false);
    EXPECT_FALSE(o.prefill_assistant);
    EXPECT_EQ(o.cors_origins, "localhost");
    EXPECT_FALSE(o.cors_credentials);

    EXPECT_EQ(parse({"-m", "m", "--mlock"}).load_mode, LoadMode::mlock);
    EXPECT_EQ(parse({"-m", "m", "-lm", "none"}).load_mode, LoadMode::read);
    EXPECT_EQ(parse({"-m", "m", "-lm", "dio"}).load_mode, LoadMode::read);
    EXPECT_EQ(parse({"-m", "m", "--no-mmap", "--mmap"}).load_mode, LoadMode::mmap);
    EXPECT_EQ(parse({"-m", "m", "-dev", "none"}).n_gpu_layers, "0");
    EXPECT_TRUE(parse({"-m", "m", "-c", "0"}).n_ctx_given);  // an explicit -c 0 keeps the training context
    EXPECT_TRUE(parse({"-m", "m"}, {{"LLAMA_ARG_CTX_SIZE", "8192"}}).n_ctx_given);
    EXPECT_EQ(parse({"-m", "m", "--reasoning-budget", "0"}).chat_template_kwargs["enable_thinking"], false);
    EXPECT_EQ(parse({"-m", "m", "-rea", "on"}).chat_template_kwargs["enable_thinking"], true);
    EXPECT_FALSE(parse({"-m", "m", "-rea", "off", "-rea", "auto"}).chat_template_kwargs.contains("enable_thinking"));
    // --chat-template-kwargs names it explicitly: that wins over -rea.
    EXPECT_EQ(parse({"-m", "m", "-rea", "off", "--chat-template-kwargs", "{\"enable_thinking\":true}"})
                  .chat_template_kwargs["enable_thinking"],
              true);
}

// Speculative decoding's flags as llama-server names them: --spec-type takes a
// comma list, tried in order; each kind's own flags set its longest draft,
// which sizes the logits rows and caps a request's speculative.n_max.
TEST(ServerFlags, speculative_decoding_kinds_and_their_limits) {
    const SpeculativeConfig off = parse({"-m", "m"}).speculative;
    EXPECT_FALSE(off.enabled);
    EXPECT_EQ(off.draft_max(), 0);
    const SpeculativeConfig mod = parse({"-m", "m", "--spec-type", "ngram-mod", "--spec-ngram-mod-n-match", "16",
                                         "--spec-ngram-mod-n-min", "8", "--spec-ngram-mod-n-max", "32"})
                                      .speculative;
    EXPECT_TRUE(mod.enabled);
    EXPECT_EQ(mod.kinds, std::vector<DraftKind>{DraftKind::ngram_mod});
    EXPECT_EQ(mod.mod.n_match, 16);
    EXPECT_EQ(mod.mod.n_min, 8);
    EXPECT_EQ(mod.mod.n_max, 32);
    EXPECT_EQ(mod.draft_max(), 32);
    // llama.cpp's defaults (24, 48, 64), and both kinds in the order named.
    const SpeculativeConfig both = parse({"-m", "m", "--spec-type", "ngram-mod,ngram-simple"}).speculative;
    EXPECT_EQ(both.kinds, (std::vector<DraftKind>{DraftKind::ngram_mod, DraftKind::ngram_simple}));
    EXPECT_EQ(both.mod.n_match, 24);
    EXPECT_EQ(both.mod.n_min, 48);
    EXPECT_EQ(both.draft_max(), 64);
    EXPECT_EQ(parse({"-m", "m"}, {{"LLAMA_ARG_SPEC_TYPE", "ngram-simple"}}).speculative.draft_max(), 16);
    EXPECT_FALSE(parse({"-m", "m", "--spec-type", "none"}).speculative.enabled);
    // The other kinds' settings are accepted (llama.cpp's commands set them all), the kinds refused.
    EXPECT_EQ(parse({"-m", "m", "--spec-type", "ngram-mod", "--spec-ngram-map-k-size-n", "8",
                     "--spec-ngram-map-k4v-min-hits", "2", "--spec-ngram-check-rate", "1"})
                  .speculative.kinds,
              std::vector<DraftKind>{DraftKind::ngram_mod});
}

TEST(ServerFlags, unsupported_llama_server_features_are_refused_by_name) {
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--slot-save-path", "/nonexistent/dir"}, "not a directory"},
        {{"--sleep-idle-seconds", "60"}, "--sleep-idle-seconds is not supported"},
        {{"--ssl-key-file", "k.pem"}, "HTTPS"},
        {{"--lora", "a.gguf"}, "--lora is not supported"},
        {{"-hf", "Qwen/Qwen3-Coder-30B-A3B-Instruct-GGUF"}, "does not download models"},
        {{"--tools", "all"}, "no built-in tools"},
        {{"--mmproj", "p.gguf"}, "multimodal"},
        {{"-md", "draft.gguf"}, "loads no draft model; --spec-type ngram-simple"},
        {{"--spec-type", "draft-eagle3"}, "needs a draft model"},
        {{"--spec-type", "ngram-map-k"}, "not implemented in moeserve; use ngram-simple or ngram-mod"},
        {{"--spec-ngram-mod-n-match", "0"}, "must be between 1 and"},
        {{"-lcs", "static.bin"}, "no ngram-cache speculation"},
        {{"--spec-type", "fast"}, "unknown speculative type 'fast'"},
        {{"--spec-ngram-simple-size-n", "0"}, "must be between 1 and"},
        {{"--models-dir", "/models"}, "router mode"},
        {{"--reranking"}, "reranking"},
        {{"-mg", "1"}, "one GPU"},
        {{"-dev", "CUDA1"}, "one GPU"},
        {{"-ot", "exps"}, "REGEX=BUFTYPE"},
        {{"--reasoning-budget", "-5"}, "must be between -1 and"},
        {{"-lm", "fast"}, "expected none, mmap, mlock or dio"},
        {{"-fit", "maybe"}, "expected on or off"},
    };
    for (const auto& [args, want] : cases) {
        std::vector<std::string> argv = {"-m", "m"};
        argv.insert(argv.end(), args.begin(), args.end());
        EXPECT_NE(error_of(argv).find(want), std::string::npos) << args.front() << ": " << error_of(argv);
    }
    EXPECT_EQ(error_of({"-m", "m", "--sleep-idle-seconds", "-1"}), "");  // the default: off
}

TEST(ServerFlags, reasoning_budget_is_a_token_count_or_no_thinking) {
    EXPECT_EQ(parse({"-m", "m"}).reasoning_budget, -1);
    EXPECT_EQ(parse({"-m", "m", "--reasoning-budget", "256"}).reasoning_budget, 256);
    const ServerOptions off = parse({"-m", "m", "--reasoning-budget", "0"});
    EXPECT_EQ(off.reasoning_budget, -1);
    EXPECT_FALSE(off.enable_thinking.value_or(true));
}

TEST(ServerFlags, cors_origin_follows_the_cors_flags) {
    ServerOptions o;  // defaults: * with credentials echoes the request's Origin
    EXPECT_EQ(cors_allowed_origin(o, "http://app.example"), "http://app.example");
    EXPECT_EQ(cors_allowed_origin(o, ""), "*");
    o.cors_credentials = false;
    EXPECT_EQ(cors_allowed_origin(o, "http://app.example"), "*");
    o.cors_origins = "localhost";
    EXPECT_EQ(cors_allowed_origin(o, "http://localhost:3000"), "http://localhost:3000");
    EXPECT_EQ(cors_allowed_origin(o, "http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    EXPECT_EQ(cors_allowed_origin(o, "http://[::1]:8080"), "http://[::1]:8080");
    EXPECT_EQ(cors_allowed_origin(o, "http://localhost.evil.example"), "");
    EXPECT_EQ(cors_allowed_origin(o, "http://app.example"), "");
    o.cors_origins = "https://a.example, https://b.example";
    EXPECT_EQ(cors_allowed_origin(o, "http://app.example"), "https://a.example, https://b.example");
}

TEST(ServerFlags, environment_variables_apply_and_the_command_line_wins) {
    auto o = parse({"-c", "2048"}, {{"LLAMA_ARG_MODEL", "env.gguf"},
                                    {"LLAMA_ARG_CTX_SIZE", "999"},
                                    {"LLAMA_ARG_ENDPOINT_METRICS", "1"},
                                    {"LLAMA_ARG_N_PARALLEL", "3"}});
    EXPECT_EQ(o.model_path, "env.gguf");
    EXPECT_EQ(o.n_ctx, 2048);
    EXPECT_TRUE(o.endpoint_metrics);
    EXPECT_EQ(o.n_parallel, 3);
}

// Spec server-behaviour §1.1: false words turn a switch off (its --no- form),
// and a negative variable such as LLAMA_ARG_NO_MMAP says "no" by being set.
TEST(ServerFlags, boolean_environment_variables_turn_switches_off_too) {
    auto off = parse({"-m", "m"}, {{"LLAMA_ARG_ENDPOINT_SLOTS", "false"},
                                   {"LLAMA_ARG_JINJA", "0"},
                                   {"LLAMA_ARG_CACHE_PROMPT", "off"},
                                   {"LLAMA_ARG_UI", "disabled"},
                                   {"LLAMA_ARG_MMAP", "false"}});
    EXPECT_FALSE(off.endpoint_slots);
    EXPECT_FALSE(off.jinja);
    EXPECT_FALSE(off.cache_prompt);
    EXPECT_FALSE(off.webui);
    EXPECT_EQ(off.load_mode, LoadMode::read);
    auto on = parse({"-m", "m"}, {{"LLAMA_ARG_ENDPOINT_SLOTS", "true"}, {"LLAMA_ARG_UI", "1"}});
    EXPECT_TRUE(on.endpoint_slots);
    EXPECT_TRUE(on.webui);
    EXPECT_EQ(parse({"-m", "m"}, {{"LLAMA_ARG_NO_MMAP", "yes"}}).load_mode, LoadMode::read);
    EXPECT_EQ(parse({"-m", "m"}, {{"LLAMA_ARG_NO_MMAP", ""}}).load_mode, LoadMode::read);
    EXPECT_TRUE(parse({"-m", "m"}, {{"LLAMA_ARG_KV_OFFLOAD", "0"}}).no_kv_offload);  // the spec's variable for -nkvo
    EXPECT_FALSE(parse({"-m", "m"}, {{"LLAMA_ARG_KV_OFFLOAD", "1"}}).no_kv_offload);
    // The command line still wins over the variable.
    EXPECT_TRUE(parse({"-m", "m", "--slots"}, {{"LLAMA_ARG_ENDPOINT_SLOTS", "false"}}).endpoint_slots);
    // A false continuous-batching variable is refused like -nocb; a bad word is named.
    EXPECT_NE(error_of({"-m", "m"}, {{"LLAMA_ARG_CONT_BATCHING", "false"}}).find("continuous batching"),
              std::string::npos);
    EXPECT_NE(error_of({"-m", "m"}, {{"LLAMA_ARG_JINJA", "maybe"}}).find("LLAMA_ARG_JINJA"), std::string::npos);
}

TEST(ServerFlags, help_documents_every_flag) {
    const std::string help = server_help();
    for (const char* flag : {"-m, --model",
                             "-c, --ctx-size",
                             "-np, --parallel",
                             "--n-gpu-layers",
                             "-ctk",
                             "-ctv",
                             "--flash-attn",
                             "--threads",
                             "--batch-size",
                             "--ubatch-size",
                             "--host",
                             "--port",
                             "--alias",
                             "--api-key",
                             "--jinja",
                             "--no-jinja",
                             "--chat-template",
                             "--chat-template-file",
                             "--metrics",
                             "--slots",
                             "--no-slots",
                             "--kv-unified",
                             "--predict",
                             "--temp",
                             "--seed",
                             "--cont-batching",
                             "--timeout",
                             "--max-queue",
                             "-h, --help"})
        EXPECT_NE(help.find(flag), std::string::npos) << flag;
    EXPECT_TRUE(parse({"-h"}).help);
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// The sampling flags of llama-server's table (spec server-behaviour §2), with
// its defaults: a value set on the command line becomes every request's default.
TEST(ServerFlags, sampling_flags_set_the_request_defaults) {
    const auto d = parse({"-m", "m.gguf"});
    EXPECT_FLOAT_EQ(d.sampling.dry_multiplier, 0.0f);
    EXPECT_FLOAT_EQ(d.sampling.dry_base, 1.75f);
    EXPECT_EQ(d.sampling.dry_allowed_length, 2);
    EXPECT_EQ(d.sampling.dry_penalty_last_n, -1);
    EXPECT_EQ(d.sampling.dry_sequence_breakers, (std::vector<std::string>{"\n", ":", "\"", "*"}));
    EXPECT_EQ(d.sampling.mirostat, 0);
    EXPECT_FLOAT_EQ(d.sampling.mirostat_eta, 0.1f);
    EXPECT_FLOAT_EQ(d.sampling.mirostat_tau, 5.0f);
    EXPECT_FLOAT_EQ(d.sampling.xtc_probability, 0.0f);
    EXPECT_FLOAT_EQ(d.sampling.xtc_threshold, 0.1f);
    EXPECT_FLOAT_EQ(d.sampling.top_n_sigma, -1.0f);

    const auto o = parse({"-m",
                          "m.gguf",
                          "--dry-multiplier",
                          "0.8",
                          "--dry-base",
                          "2",
                          "--dry-allowed-length",
                          "3",
                          "--dry-penalty-last-n",
                          "256",
                          "--dry-sequence-breaker",
                          "###",
                          "--dry-sequence-breaker",
                          "\n",
                          "--mirostat",
                          "2",
                          "--mirostat-lr",
                          "0.2",
                          "--mirostat-ent",
                          "4",
                          "--xtc-probability",
                          "0.5",
                          "--xtc-threshold",
                          "0.2",
                          "--top-nsigma",
                          "1.5"});
    EXPECT_FLOAT_EQ(o.sampling.dry_multiplier, 0.8f);
    EXPECT_FLOAT_EQ(o.sampling.dry_base, 2.0f);
    EXPECT_EQ(o.sampling.dry_allowed_length, 3);
    EXPECT_EQ(o.sampling.dry_penalty_last_n, 256);
    EXPECT_EQ(o.sampling.dry_sequence_breakers, (std::vector<std::string>{"###", "\n"}));
    EXPECT_EQ(o.sampling.mirostat, 2);
    EXPECT_FLOAT_EQ(o.sampling.mirostat_eta, 0.2f);
    EXPECT_FLOAT_EQ(o.sampling.mirostat_tau, 4.0f);
    EXPECT_FLOAT_EQ(o.sampling.xtc_probability, 0.5f);
    EXPECT_FLOAT_EQ(o.sampling.xtc_threshold, 0.2f);
    EXPECT_FLOAT_EQ(o.sampling.top_n_sigma, 1.5f);

    EXPECT_TRUE(parse({"-m", "m.gguf", "--dry-sequence-breaker", "none"}).sampling.dry_sequence_breakers.empty());
    EXPECT_NE(error_of({"-m", "m.gguf", "--mirostat", "3"}).find("--mirostat"), std::string::npos);
    EXPECT_NE(error_of({"-m", "m.gguf", "--dry-penalty-last-n", "-2"}).find("--dry-penalty-last-n"), std::string::npos);
}

}  // namespace
}  // namespace moeserve
