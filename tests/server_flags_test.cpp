// `moeserve serve` flags: llama-server's spellings and defaults, values
// checked at start, environment variables, and --help listing every flag.
#include <gtest/gtest.h>

#include <map>

#include "server/server_options.h"

namespace moeserve {
namespace {

ServerOptions parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    return parse_server_args(args, [env](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

std::string error_of(std::vector<std::string> args) {
    try {
        parse(args);
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
