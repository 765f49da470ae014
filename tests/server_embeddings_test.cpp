// Embeddings (serve --embeddings): pooling and normalization against values
// worked out by hand; the scheduler's hidden states checked against an
// independent relation (the model's own logits are W_out · h, so W_out
// applied to a returned embedding must reproduce the logits the generation
// path computes); batching and concurrency leaving results unchanged; and
// the real server's endpoints with curl and the OpenAI SDK.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <future>
#include <numeric>

#include "engine/embedding.h"
#include "engine/engine.h"
#include "engine/scheduler.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "quant/dequantize.h"
#include "server/server_options.h"
#include "server_harness.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

using test::curl;
using test::json;
using test::Server;

std::string model_path() {
    return test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string();
}

double l2(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return std::sqrt(s);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double d = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
    return d;
}

TEST(EmbeddingPooling, normalization_follows_llama_cpp_common_embd_normalize) {
    std::vector<float> v = {3, -4};
    normalize_embedding(v, 2);  // Euclidean: length 5
    EXPECT_FLOAT_EQ(v[0], 0.6f);
    EXPECT_FLOAT_EQ(v[1], -0.8f);
    v = {3, -4};
    normalize_embedding(v, 1);  // taxicab: 7
    EXPECT_FLOAT_EQ(v[0], 3.0f / 7);
    EXPECT_FLOAT_EQ(v[1], -4.0f / 7);
    v = {3, -4};
    normalize_embedding(v, 0);  // largest magnitude -> 32760
    EXPECT_FLOAT_EQ(v[0], 3.0f * 32760 / 4);
    EXPECT_FLOAT_EQ(v[1], -32760.0f);
    v = {3, -4};
    normalize_embedding(v, 3);  // (27 + 64)^(1/3)
    EXPECT_NEAR(v[0], 3 / std::cbrt(91.0), 1e-6);
    v = {3, -4};
    normalize_embedding(v, -1);
    EXPECT_EQ(v, (std::vector<float>{3, -4}));
    v = {0, 0};
    normalize_embedding(v, 2);  // no division by zero
    EXPECT_EQ(v, (std::vector<float>{0, 0}));
}

TEST(EmbeddingPooling, mean_cls_last_and_none_pick_the_rows_llama_cpp_pools) {
    const std::vector<std::vector<float>> rows = {{1, 2}, {3, 6}, {5, 1}};
    auto pool = [&](Pooling p) {
        EmbeddingPooler pooler(p, 3, 2);
        for (int64_t i = 0; i < 3; ++i)
            if (pooler.wants(i)) pooler.add(rows[i]);
        return pooler.result(-1);
    };
    EXPECT_EQ(pool(Pooling::mean), (std::vector<std::vector<float>>{{3, 3}}));
    EXPECT_EQ(pool(Pooling::cls), (std::vector<std::vector<float>>{{1, 2}}));
    EXPECT_EQ(pool(Pooling::last), (std::vector<std::vector<float>>{{5, 1}}));
    EXPECT_EQ(pool(Pooling::none), rows);
    EmbeddingPooler last(Pooling::last, 3, 2);
    EXPECT_FALSE(last.wants(0));
    EXPECT_TRUE(last.wants(2));
    EXPECT_EQ(parse_pooling("mean"), Pooling::mean);
    EXPECT_EQ(parse_pooling("rank"), std::nullopt);
    EXPECT_EQ(pooling_from_gguf(3), Pooling::last);
    EXPECT_EQ(pooling_from_gguf(4), std::nullopt);
}

// The tiny fixture model with a scheduler whose embedding requests get the
// model's hidden states, and a second engine to compute references on.
struct EmbeddingRig {
    std::unique_ptr<Engine> engine, reference;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<Scheduler> scheduler;

    explicit EmbeddingRig(int n_slots, int64_t n_ubatch = 512) {
        SchedulerOptions so;
        so.layout = compute_slot_layout(2048, 4096, n_slots, false);
        so.n_batch = 512;
        so.n_ubatch = n_ubatch;
        EngineOptions eo;
        eo.model_path = model_path();
        eo.n_threads = 2;
        eo.n_ctx = so.layout.n_cells;
        eo.n_seq = n_slots;
        engine = std::make_unique<Engine>(eo);
        so.hidden_states = model_hidden_states(engine->model());
        tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_file(model_path()));
        scheduler = std::make_unique<Scheduler>(engine->model(), engine->cache(), *tokenizer, so);
        eo.n_ctx = 1024;
        eo.n_seq = 1;
        reference = std::make_unique<Engine>(eo);
    }

    // Submits the requests on one stream, steps until all are done and
    // returns their results by index.
    std::vector<GenerationResult> run(std::vector<GenerationRequest> rqs) {
        auto stream = std::make_shared<GenerationStream>();
        const size_t n = rqs.size();
        scheduler->submit(std::move(rqs), stream);
        std::vector<GenerationResult> out(n);
        size_t done = 0;
        for (int guard = 0; done < n && guard < 10000; ++guard) {
            scheduler->step();
            while (auto e = stream->next(std::chrono::milliseconds(0))) {
                EXPECT_NE(e->kind, GenerationEvent::Kind::error) << e->message;
                if (e->kind == GenerationEvent::Kind::done) out.at(e->index) = e->result, ++done;
            }
        }
        EXPECT_EQ(done, n);
        return out;
    }

    // The logits the generation path gives for every token of a fresh prompt.
    std::vector<std::vector<float>> reference_logits(const std::vector<int32_t>& prompt) {
        reference->cache().remove(0);
        const std::vector<float> all = reference->eval(0, prompt, /*all_logits=*/true);
        const size_t n_vocab = static_cast<size_t>(reference->n_vocab());
        std::vector<std::vector<float>> out;
        for (size_t i = 0; i < prompt.size(); ++i)
            out.emplace_back(all.begin() + i * n_vocab, all.begin() + (i + 1) * n_vocab);
        return out;
    }
};

GenerationRequest embed_request(std::vector<int32_t> prompt, Pooling pooling, int normalize, int index = 0) {
    GenerationRequest rq;
    rq.index = index;
    rq.prompt = std::move(prompt);
    rq.embed = true;
    rq.pooling = pooling;
    rq.embd_normalize = normalize;
    return rq;
}

// W_out · h, with W_out (output.weight, f16) read from the file and widened
// here rather than through the model's matmul.
std::vector<float> project(const GgufFile& file, const std::vector<float>& h) {
    const GgufTensorInfo* w = nullptr;
    for (const auto& t : file.tensors())
        if (t.name == "output.weight") w = &t;
    EXPECT_NE(w, nullptr);
    const int64_t n_embd = w->ne[0], n_vocab = w->ne[1];
    EXPECT_EQ(static_cast<int64_t>(h.size()), n_embd);
    std::vector<float> row(static_cast<size_t>(n_embd)), out(static_cast<size_t>(n_vocab));
    for (int64_t v = 0; v < n_vocab; ++v) {
        dequantize_row(w->type, file.tensor_data(*w) + v * w->row_bytes(), row.data(), n_embd);
        double s = 0;
        for (int64_t j = 0; j < n_embd; ++j) s += double(row[j]) * h[j];
        out[v] = static_cast<float>(s);
    }
    return out;
}

TEST(SchedulerEmbeddings, hidden_states_reproduce_the_models_logits_through_the_output_weight) {
    MOESERVE_REQUIRE_FIXTURES();
    EmbeddingRig rig(2);
    const GgufFile file = GgufFile::open(model_path());
    const std::vector<int32_t> prompt = rig.tokenizer->tokenize("The quick brown fox jumps", true, true);
    ASSERT_GE(prompt.size(), 4u);
    auto res = rig.run({embed_request(prompt, Pooling::none, 2)});
    const auto& rows = res[0].embedding;
    ASSERT_EQ(rows.size(), prompt.size());  // one unnormalized row per token
    const auto logits = rig.reference_logits(prompt);
    for (size_t i = 0; i < prompt.size(); ++i) {
        ASSERT_EQ(rows[i].size(), 256u);
        const std::vector<float> z = project(file, rows[i]);
        double scale = 0;
        for (float x : logits[i]) scale = std::max(scale, double(std::fabs(x)));
        // f16 weights: the model's matmul rounds differently from this double sum.
        EXPECT_LT(max_abs_diff(z, logits[i]), 2e-3 * scale + 1e-3) << "token " << i;
    }
    EXPECT_EQ(res[0].n_prompt, static_cast<int64_t>(prompt.size()));
}

TEST(SchedulerEmbeddings, pooled_embeddings_are_the_mean_first_and_last_rows_normalized) {
    MOESERVE_REQUIRE_FIXTURES();
    EmbeddingRig rig(4);
    const std::vector<int32_t> prompt = rig.tokenizer->tokenize("fill the middle, then pool it", true, true);
    auto res = rig.run({embed_request(prompt, Pooling::none, -1, 0), embed_request(prompt, Pooling::mean, 2, 1),
                        embed_request(prompt, Pooling::cls, 2, 2), embed_request(prompt, Pooling::last, -1, 3)});
    const auto& rows = res[0].embedding;
    ASSERT_EQ(rows.size(), prompt.size());
    std::vector<float> mean(256, 0.0f);
    for (const auto& r : rows)
        for (size_t j = 0; j < 256; ++j) mean[j] += r[j] / static_cast<float>(rows.size());
    const double n_mean = l2(mean), n_first = l2(rows.front());
    for (auto& x : mean) x = static_cast<float>(x / n_mean);
    std::vector<float> first = rows.front();
    for (auto& x : first) x = static_cast<float>(x / n_first);
    ASSERT_EQ(res[1].embedding.size(), 1u);
    EXPECT_LT(max_abs_diff(res[1].embedding[0], mean), 1e-5);
    EXPECT_NEAR(l2(res[1].embedding[0]), 1.0, 1e-5);
    EXPECT_LT(max_abs_diff(res[2].embedding[0], first), 1e-5);
    EXPECT_LT(max_abs_diff(res[3].embedding[0], rows.back()), 1e-6);  // -1: unnormalized
    EXPECT_GT(l2(res[3].embedding[0]), 1.5);                          // (so the check above could tell)
}

TEST(SchedulerEmbeddings, batching_with_other_work_and_small_micro_batches_changes_nothing) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::vector<std::string> texts = {"alpha beta gamma", "the same text", "the same text",
                                            "a longer input that spans several micro-batches of eight tokens"};
    std::vector<std::vector<float>> alone;
    {
        EmbeddingRig rig(1);
        for (const auto& t : texts)
            alone.push_back(
                rig.run({embed_request(rig.tokenizer->tokenize(t, true, true), Pooling::mean, 2)})[0].embedding.at(0));
    }
    EXPECT_EQ(alone[1], alone[2]);
    EXPECT_GT(max_abs_diff(alone[0], alone[1]), 1e-3);

    // Four slots, micro-batches of 8 tokens, and a generation running beside the embeddings.
    EmbeddingRig rig(4, 8);
    auto gen_stream = std::make_shared<GenerationStream>();
    GenerationRequest gen;
    gen.prompt = rig.tokenizer->tokenize("keep generating while embeddings run", true, true);
    gen.n_predict = 40;
    gen.ignore_eos = true;
    gen.sampling.temperature = 0.0f;
    rig.scheduler->submit({gen}, gen_stream);
    rig.scheduler->step();  // the generation has its slot first
    std::vector<GenerationRequest> rqs;
    for (size_t i = 0; i < texts.size(); ++i)
        rqs.push_back(embed_request(rig.tokenizer->tokenize(texts[i], true, true), Pooling::mean, 2, int(i)));
    auto together = rig.run(rqs);
    bool gen_done = false;
    for (int i = 0; i < 1000 && !gen_done; ++i) {
        rig.scheduler->step();
        while (auto e = gen_stream->next(std::chrono::milliseconds(0))) {
            EXPECT_NE(e->kind, GenerationEvent::Kind::error) << e->message;
            gen_done |= e->kind == GenerationEvent::Kind::done;
        }
    }
    EXPECT_TRUE(gen_done);
    for (size_t i = 0; i < texts.size(); ++i) EXPECT_LT(max_abs_diff(together[i].embedding.at(0), alone[i]), 1e-5) << i;
}

TEST(SchedulerEmbeddings, refusals_name_the_problem) {
    MOESERVE_REQUIRE_FIXTURES();
    EmbeddingRig rig(1);
    auto stream = std::make_shared<GenerationStream>();
    try {
        rig.scheduler->submit({embed_request({}, Pooling::mean, 2)}, stream);
        FAIL();
    } catch (const SubmitError& e) {
        EXPECT_EQ(e.status, 400);
        EXPECT_STREQ(e.what(), "Input content cannot be empty");
    }
    // An embedding may fill its slot (nothing is generated after it), one token more may not.
    const int64_t n_ctx = rig.scheduler->n_ctx_slot();
    EXPECT_NO_THROW(rig.run({embed_request(std::vector<int32_t>(n_ctx, 17), Pooling::last, 2)}));
    try {
        rig.scheduler->submit({embed_request(std::vector<int32_t>(n_ctx + 1, 17), Pooling::mean, 2)}, stream);
        FAIL();
    } catch (const SubmitError& e) {
        EXPECT_EQ(e.status, 400);
        EXPECT_EQ(e.type, "exceed_context_size_error");
        EXPECT_EQ(std::string(e.what()), "input (" + std::to_string(n_ctx + 1) +
                                             " tokens) is larger than the max context size (" + std::to_string(n_ctx) +
                                             " tokens). skipping");
    }
    SchedulerOptions so = rig.scheduler->options();
    so.hidden_states = nullptr;
    Scheduler plain(rig.engine->model(), rig.engine->cache(), *rig.tokenizer, so);
    try {
        plain.submit({embed_request({1, 2, 3}, Pooling::mean, 2)}, stream);
        FAIL();
    } catch (const SubmitError& e) {
        EXPECT_EQ(e.status, 501);
        EXPECT_EQ(e.type, "not_supported_error");
    }
}

// ---- The real server -------------------------------------------------------

class ServerEmbeddingsE2E : public test::SharedServerTest<ServerEmbeddingsE2E> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m", model_path(), "-np", "4", "-c", "2048", "-t", "2", "--embeddings", "--pooling", "mean"};
    }
};

std::vector<float> floats(const json& a) {
    return a.get<std::vector<float>>();
}

// The vector of a text alone and in a batch with others: bit-identical on the
// CPU; a GPU's products add in another order for another batch size (matrix-
// vector kernel or GEMM), so there they may differ by float rounding.
void expect_same_vector(const json& alone, const json& batched) {
    const char* extra = std::getenv("MOESERVE_TEST_SERVER_ARGS");
    if (extra && std::string(extra).find("-ngl") != std::string::npos)
        EXPECT_LT(max_abs_diff(floats(alone), floats(batched)), 1e-5);  // as the concurrency test below
    else
        EXPECT_EQ(alone, batched);
}

TEST_F(ServerEmbeddingsE2E, openai_shape_unit_length_and_identical_inputs_give_identical_vectors) {
    auto r = curl(server_->url("/v1/embeddings"), "POST",
                  R"({"input":["hello world","hello world","something else entirely"],"model":"my-name"})");
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.json_body();
    EXPECT_EQ(j["object"], "list");
    EXPECT_EQ(j["model"], "my-name");  // llama-server echoes the request's model
    ASSERT_EQ(j["data"].size(), 3u);
    int64_t n_tokens = 0;
    for (const char* t : {"hello world", "hello world", "something else entirely"})
        n_tokens += curl(server_->url("/tokenize"), "POST", json{{"content", t}, {"add_special", true}}.dump())
                        .json_body()["tokens"]
                        .size();
    EXPECT_EQ(j["usage"], (json{{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}));
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(j["data"][i]["object"], "embedding");
        EXPECT_EQ(j["data"][i]["index"], i);
        ASSERT_EQ(j["data"][i]["embedding"].size(), 256u);
        EXPECT_NEAR(l2(floats(j["data"][i]["embedding"])), 1.0, 1e-5);
    }
    EXPECT_EQ(j["data"][0]["embedding"], j["data"][1]["embedding"]);
    EXPECT_GT(max_abs_diff(floats(j["data"][0]["embedding"]), floats(j["data"][2]["embedding"])), 1e-3);

    // A single string, token ids and base64 give the same vector; without "model" the server's name is reported.
    auto one = curl(server_->url("/v1/embeddings"), "POST", R"({"input":"hello world"})").json_body();
    EXPECT_EQ(one["model"], model_path());
    expect_same_vector(one["data"][0]["embedding"], j["data"][0]["embedding"]);
    const json ids = curl(server_->url("/tokenize"), "POST", R"({"content":"hello world","add_special":true})")
                         .json_body()["tokens"];
    auto by_ids = curl(server_->url("/v1/embeddings"), "POST", json{{"input", json::array({ids})}}.dump()).json_body();
    EXPECT_EQ(by_ids["data"][0]["embedding"], one["data"][0]["embedding"]);
    auto b64 = curl(server_->url("/v1/embeddings"), "POST", R"({"input":"hello world","encoding_format":"base64"})")
                   .json_body();
    EXPECT_EQ(b64["data"][0]["encoding_format"], "base64");
    const std::string enc = b64["data"][0]["embedding"];
    std::string bytes;
    int bits = 0;
    uint32_t acc = 0;
    const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (char c : enc) {
        if (c == '=') break;
        acc = (acc << 6) | static_cast<uint32_t>(digits.find(c));
        if ((bits += 6) >= 8) bytes += static_cast<char>((acc >> (bits -= 8)) & 0xff);
    }
    ASSERT_EQ(bytes.size(), 256 * sizeof(float));
    std::vector<float> decoded(256);
    std::memcpy(decoded.data(), bytes.data(), bytes.size());
    EXPECT_EQ(decoded, floats(one["data"][0]["embedding"]));
}

TEST_F(ServerEmbeddingsE2E, native_routes_answer_an_array_of_pooled_vectors) {
    auto oai = curl(server_->url("/v1/embeddings"), "POST", R"({"input":"hello world"})").json_body();
    for (const char* route : {"/embedding", "/embeddings"}) {
        auto r = curl(server_->url(route), "POST", R"({"content":"hello world"})");
        ASSERT_EQ(r.status, 200) << r.body;
        const json j = r.json_body();
        ASSERT_TRUE(j.is_array());
        ASSERT_EQ(j.size(), 1u);
        EXPECT_EQ(j[0]["index"], 0);
        ASSERT_EQ(j[0]["embedding"].size(), 1u);  // one pooled vector, in an array
        EXPECT_EQ(j[0]["embedding"][0], oai["data"][0]["embedding"]);
    }
    // "content" on the OpenAI route answers in the native shape, as llama-server does.
    EXPECT_TRUE(curl(server_->url("/v1/embeddings"), "POST", R"({"content":"x"})").json_body().is_array());
    // embd_normalize -1: the raw mean, longer than 1.
    auto raw = curl(server_->url("/embedding"), "POST", R"({"content":"hello world","embd_normalize":-1})").json_body();
    const auto v = floats(raw[0]["embedding"][0]);
    const double n = l2(v);
    EXPECT_GT(std::fabs(n - 1.0), 1e-2);
    std::vector<float> unit = v;
    for (auto& x : unit) x = static_cast<float>(x / n);
    EXPECT_LT(max_abs_diff(unit, floats(oai["data"][0]["embedding"])), 1e-6);
}

TEST_F(ServerEmbeddingsE2E, concurrent_requests_get_the_vectors_they_get_alone) {
    const std::vector<std::string> texts = {
        "one",           "two words",     "three words here",
        "the same text", "the same text", "a much longer input, long enough to take several tokens of prompt"};
    std::vector<json> alone;
    for (const auto& t : texts)
        alone.push_back(curl(server_->url("/v1/embeddings"), "POST", json{{"input", t}}.dump())
                            .json_body()["data"][0]["embedding"]);
    EXPECT_EQ(alone[3], alone[4]);
    for (int round = 0; round < 2; ++round) {
        std::vector<std::future<test::HttpResult>> futures;
        for (const auto& t : texts)
            futures.push_back(std::async(std::launch::async, [&, t] {
                return curl(server_->url("/v1/embeddings"), "POST", json{{"input", t}}.dump());
            }));
        for (size_t i = 0; i < texts.size(); ++i) {
            auto r = futures[i].get();
            ASSERT_EQ(r.status, 200) << r.body;
            EXPECT_LT(max_abs_diff(floats(r.json_body()["data"][0]["embedding"]), floats(alone[i])), 1e-5) << texts[i];
        }
    }
    // Many inputs in one request (more than slots plus queue would hold at once).
    json many = json::array();
    for (int i = 0; i < 100; ++i) many.push_back(texts[i % texts.size()]);
    auto r = curl(server_->url("/v1/embeddings"), "POST", json{{"input", many}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.json_body();
    ASSERT_EQ(j["data"].size(), 100u);
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(j["data"][i]["index"], i);
        EXPECT_LT(max_abs_diff(floats(j["data"][i]["embedding"]), floats(alone[i % texts.size()])), 1e-5) << i;
    }
}

TEST_F(ServerEmbeddingsE2E, bad_requests_are_400s_with_llama_servers_messages) {
    auto msg = [&](const std::string& body) {
        auto r = curl(server_->url("/v1/embeddings"), "POST", body);
        EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
        return r.json_body()["error"]["message"].get<std::string>();
    };
    EXPECT_EQ(msg(R"({"model":"x"})"), "\"input\" or \"content\" must be provided");
    EXPECT_EQ(msg(R"({"input":""})"), "Input content cannot be empty");
    EXPECT_EQ(msg(R"({"input":"x","encoding_format":"int8"})"),
              "The format to return the embeddings in. Can be either float or base64");
    std::string long_text;
    for (int i = 0; i < 700; ++i) long_text += "word ";
    auto r = curl(server_->url("/v1/embeddings"), "POST", json{{"input", long_text}}.dump());
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json_body()["error"]["type"], "exceed_context_size_error") << r.body;
    EXPECT_EQ(r.json_body()["error"]["n_ctx"], 512);
    // Completions keep working beside embeddings.
    auto c = curl(server_->url("/completion"), "POST", R"({"prompt":"Hi","n_predict":4})");
    EXPECT_EQ(c.status, 200) << c.body;
}

TEST_F(ServerEmbeddingsE2E, openai_sdk_embeddings_create) {
    if (!test::have_node_modules()) GTEST_SKIP() << "tests/e2e/server/node_modules missing (npm ci there)";
    std::string out;
    const int rc = test::run_node("sdk_embeddings.mjs", {server_->url("/v1")}, out);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("embeddings ok"), std::string::npos) << out;
}

TEST(ServerEmbeddingsFlags, without_embeddings_501_and_pooling_none_is_not_openai_compatible) {
    MOESERVE_REQUIRE_FIXTURES();
    {
        Server s({"-m", model_path(), "-np", "1", "-c", "512", "-t", "1"});
        ASSERT_TRUE(s.ready()) << s.log();
        for (const char* route : {"/v1/embeddings", "/embedding", "/embeddings"}) {
            auto r = curl(s.url(route), "POST", R"({"input":"x"})");
            EXPECT_EQ(r.status, 501) << route;
            EXPECT_EQ(r.json_body()["error"]["message"],
                      "This server does not support embeddings. Start it with `--embeddings`");
        }
    }
    // The fixture has no pooling_type: pooling none, as in llama-server.
    Server s({"-m", model_path(), "-np", "1", "-c", "512", "-t", "1", "--embeddings"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto r = curl(s.url("/v1/embeddings"), "POST", R"({"input":"x"})");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json_body()["error"]["message"],
              "Pooling type 'none' is not OAI compatible. Please use a different pooling type");
    const json ids = curl(s.url("/tokenize"), "POST", R"({"content":"hello world"})").json_body()["tokens"];
    auto n = curl(s.url("/embeddings"), "POST", R"({"content":"hello world"})");
    ASSERT_EQ(n.status, 200) << n.body;
    ASSERT_EQ(n.json_body()[0]["embedding"].size(), ids.size());  // one unnormalized vector per token
    EXPECT_GT(std::fabs(l2(floats(n.json_body()[0]["embedding"][0])) - 1.0), 1e-2);
}

TEST(ServerEmbeddingsFlags, flags_parse_as_llama_server_and_are_documented) {
    const ServerOptions o = parse_server_args({"-m", "x.gguf", "--embeddings", "--pooling", "last", "-ub", "256"});
    EXPECT_TRUE(o.embeddings);
    EXPECT_EQ(o.pooling, "last");
    EXPECT_EQ(o.n_batch, 256);  // llama-server: with embeddings, n_batch = n_ubatch
    EXPECT_EQ(parse_server_args({"-m", "x.gguf", "-ub", "256"}).n_batch, 2048);
    auto env = [](const char* name) -> const char* {
        return std::string(name) == "LLAMA_ARG_POOLING"      ? "cls"
               : std::string(name) == "LLAMA_ARG_EMBEDDINGS" ? "1"
                                                             : nullptr;
    };
    const ServerOptions e = parse_server_args({"-m", "x.gguf"}, env);
    EXPECT_TRUE(e.embeddings);
    EXPECT_EQ(e.pooling, "cls");
    try {
        parse_server_args({"-m", "x.gguf", "--pooling", "rank"});
        FAIL();
    } catch (const ServerFlagError& err) {
        EXPECT_NE(std::string(err.what()).find("reranking, which moeserve does not have"), std::string::npos)
            << err.what();
    }
    EXPECT_THROW(parse_server_args({"-m", "x.gguf", "--pooling", "avg"}), ServerFlagError);
    const std::string help = server_help();
    for (const char* flag :
         {"--embedding, --embeddings", "--pooling {none,mean,cls,last}", "--spm-infill", "/infill", "/v1/embeddings"})
        EXPECT_NE(help.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace moeserve
