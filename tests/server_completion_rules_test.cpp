// llama-server's native completion rules for editors (spec server-behaviour
// §5.5, §5.7): n_indent and t_max_predict_ms end a code completion early,
// response_fields trims the answer. The answers are forced with the
// test-only `replay` field (serve --allow-replay), so each test knows the
// exact text the model "generates".
#include <gtest/gtest.h>

#include <string>

#include "fixtures.h"
#include "server_harness.h"

namespace moeserve {
namespace {

using test::curl;
using test::json;
using test::Server;

class ServerCompletionRules : public test::SharedServerTest<ServerCompletionRules> {
  public:
    static std::vector<std::string> server_args() {
        return {"-m",
                test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(),
                "-c",
                "4096",
                "-t",
                "1",
                "--allow-replay"};
    }

  protected:
    static json complete(const json& body) {
        const auto r = curl(server_->url("/completion"), "POST", body.dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body();
    }
};

const char* kCode = "def f():\n    x = 1\n    return x\nprint(f())\n";

TEST_F(ServerCompletionRules, n_indent_ends_at_a_line_indented_less_and_cuts_its_text) {
    const json cut = complete({{"prompt", "# code"}, {"replay", kCode}, {"n_indent", 4}});
    EXPECT_EQ(cut["content"], "def f():\n    x = 1\n    return x\n");
    EXPECT_EQ(cut["stop_type"], "limit");
    // The first line is never checked; deeper indentation than asked passes.
    EXPECT_EQ(complete({{"prompt", "# code"}, {"replay", kCode}, {"n_indent", 2}})["content"],
              "def f():\n    x = 1\n    return x\n");
    // More than the body's indentation: the body's first line is cut after its spaces.
    EXPECT_EQ(complete({{"prompt", "# code"}, {"replay", kCode}, {"n_indent", 8}})["content"], "def f():\n    ");
    // Off (0, the default): the whole text, ended by the model.
    const json whole = complete({{"prompt", "# code"}, {"replay", kCode}});
    EXPECT_EQ(whole["content"], kCode);
    EXPECT_EQ(whole["stop_type"], "eos");
    EXPECT_EQ(whole["generation_settings"]["n_indent"], 0);
}

TEST_F(ServerCompletionRules, t_max_predict_ms_ends_at_the_first_newline_after_the_time) {
    std::string lines;
    for (int i = 0; i < 500; ++i) lines += "a\n";
    // 1,000 tokens take far longer than 2 ms on any machine: the answer ends early, on a newline.
    const json early = complete({{"prompt", "x"}, {"replay", lines}, {"t_max_predict_ms", 2}});
    const std::string text = early["content"];
    EXPECT_EQ(early["stop_type"], "limit");
    EXPECT_LT(text.size(), lines.size());
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    EXPECT_EQ(lines.compare(0, text.size(), text), 0);
    EXPECT_EQ(complete({{"prompt", "x"}, {"replay", lines}})["content"], lines);  // -1, the default: off
    const auto bad = curl(server_->url("/completion"), "POST", R"({"prompt":"x","t_max_predict_ms":-2})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_NE(bad.body.find("t_max_predict_ms"), std::string::npos) << bad.body;
}

TEST_F(ServerCompletionRules, response_fields_keep_only_the_named_fields) {
    const json trimmed = complete({{"prompt", "x"},
                                   {"replay", "hello"},
                                   {"n_predict", 8},
                                   {"response_fields", {"content", "generation_settings/n_predict", "no/such"}}});
    EXPECT_EQ(trimmed, json({{"content", "hello"}, {"generation_settings/n_predict", 8}}));
    // The streamed final object is trimmed the same way.
    const auto r =
        curl(server_->url("/completion"), "POST",
             json({{"prompt", "x"}, {"replay", "hi"}, {"stream", true}, {"response_fields", {"stop_type"}}}).dump());
    const auto events = test::sse_payloads(r.body);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(json::parse(events.back()), json({{"stop_type", "eos"}}));
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// -r / --reverse-prompt: the stop strings of every request that sends none.
TEST(ServerReversePrompt, is_the_default_stop_list_and_a_requests_own_replaces_it) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-c", "512", "-t", "1",
              "--allow-replay", "-r", "wor", "--reverse-prompt", "zzz"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto complete = [&](const json& body) { return curl(s.url("/completion"), "POST", body.dump()).json_body(); };
    const json cut = complete({{"prompt", "x"}, {"replay", "hello world"}});
    EXPECT_EQ(cut["content"], "hello ");
    EXPECT_EQ(cut["stop_type"], "word");
    EXPECT_EQ(cut["stopping_word"], "wor");
    const json own = complete({{"prompt", "x"}, {"replay", "hello world"}, {"stop", {"ll"}}});
    EXPECT_EQ(own["content"], "he");
    EXPECT_EQ(own["stopping_word"], "ll");
    EXPECT_EQ(curl(s.url("/props")).json_body()["default_generation_settings"]["params"]["stop"], json({"wor", "zzz"}));
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// A hybrid model's recurrent state rewinds only to its snapshots: a prompt that shares
// a shorter prefix than the last snapshot is evaluated in full, and the log says so in
// llama-server's words.
TEST(ServerSlotLog, a_hybrid_model_logs_a_full_re_processing) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s(
        {"-m", test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(), "-np", "1", "-c", "1024", "-t", "1"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto complete = [&](const std::string& prompt) {
        const auto r = curl(s.url("/completion"), "POST", json({{"prompt", prompt}, {"n_predict", 1}}).dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body()["timings"];
    };
    complete("Hello there my good friend, how are you doing today?");
    EXPECT_EQ(s.log().find("forcing full prompt re-processing"), std::string::npos);
    const json again = complete("Hello there my good enemy");
    EXPECT_EQ(again["cache_n"], 0);
    EXPECT_NE(s.log().find("forcing full prompt re-processing due to lack of cache data"), std::string::npos)
        << s.log();
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// A chat completion at temperature 0 (4 tokens) on server s.
json chat(Server& s, const json& messages, bool cache_prompt = true) {
    const auto r = curl(
        s.url("/v1/chat/completions"), "POST",
        json({{"messages", messages}, {"max_tokens", 4}, {"temperature", 0}, {"cache_prompt", cache_prompt}}).dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json_body();
}

// Tokens of the rendered prompt (/apply-template, /tokenize) before the given
// text's last occurrence (end: after it).
size_t tokens_before(Server& s, const json& messages, const std::string& text, bool end) {
    const std::string prompt =
        curl(s.url("/apply-template"), "POST", json({{"messages", messages}}).dump()).json_body()["prompt"];
    const size_t at = prompt.rfind(text);
    EXPECT_NE(at, std::string::npos) << prompt;
    const json ids =
        curl(s.url("/tokenize"), "POST",
             json({{"content", prompt.substr(0, at + (end ? text.size() : 0))}, {"add_special", true}}).dump())
            .json_body()["tokens"];
    return ids.size();
}

// Chat requests on a hybrid model snapshot the recurrent state at the start and
// end of the last user message's content (spec server-behaviour §6.6): editing
// that message, or adding a message after it, resumes there instead of
// re-evaluating the whole conversation. The expected positions are counted here
// from the rendered prompt (/apply-template) and the tokenizer (/tokenize).
TEST(ServerTurnBoundaries, an_edited_or_continued_conversation_resumes_at_the_last_user_message) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s(
        {"-m", test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(), "-np", "1", "-c", "2048", "-t", "1"});
    ASSERT_TRUE(s.ready()) << s.log();
    const json sys = {{"role", "system"}, {"content", "You answer in one line."}};
    const json sea = {{"role", "user"}, {"content", "Tell me about the sea."}};
    const json wet = {{"role", "assistant"}, {"content", "It is wet and wide."}};
    const json sky = {{"role", "user"}, {"content", "And what about the sky?"}};
    const json hills = {{"role", "user"}, {"content", "And what about the hills?"}};

    chat(s, {sys, sea, wet, sky});
    const json edited = chat(s, {sys, sea, wet, hills});
    const size_t start = tokens_before(s, {sys, sea, wet, hills}, "And what about the hills?", false);
    EXPECT_GT(start, 10u);
    EXPECT_EQ(edited["timings"]["cache_n"], start) << s.log();
    EXPECT_EQ(edited["choices"][0]["message"], chat(s, {sys, sea, wet, hills}, false)["choices"][0]["message"]);

    EXPECT_EQ(s.log().find("forcing full prompt re-processing"), std::string::npos) << s.log();
    EXPECT_NE(s.log().find("recurrent-state snapshots per slot: 4 in the backend's memory"), std::string::npos)
        << s.log();

    chat(s, {sys, sea});
    const json followed = chat(s, {sys, sea, sky});
    EXPECT_EQ(followed["timings"]["cache_n"], tokens_before(s, {sys, sea, sky}, "Tell me about the sea.", true))
        << s.log();
    EXPECT_EQ(followed["choices"][0]["message"], chat(s, {sys, sea, sky}, false)["choices"][0]["message"]);
}

// Earlier messages (user and tool) keep the state at their start when
// --checkpoint-min-step tokens apart (here 4, so that the tiny conversation has
// several): an agent's conversation whose tool result or first question is
// edited resumes at that message. At the default spacing (8192) only the first
// message's start is kept (the end of the system prompt): the same edit resumes
// there.
TEST(ServerTurnBoundaries, an_earlier_message_edited_resumes_at_its_start) {
    MOESERVE_REQUIRE_FIXTURES();
    const std::string model = test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string();
    Server s({"-m", model, "-np", "1", "-c", "2048", "-t", "1", "--checkpoint-min-step", "4"});
    ASSERT_TRUE(s.ready()) << s.log();
    // A system prompt long enough to be kept at the default spacing (more than 64 tokens).
    const json sys = {{"role", "system"},
                      {"content",
                       "You look things up before you answer. You have one tool, water_temperature, which "
                       "gives the temperature of the sea at a place on the coast. Call it whenever a question "
                       "is about the sea, then answer in one short sentence with the number it gave you, and "
                       "say where the number came from."}};
    auto user = [](const std::string& text) { return json{{"role", "user"}, {"content", text}}; };
    const json call = {{"role", "assistant"},
                       {"content", ""},
                       {"tool_calls",
                        {{{"id", "call_1"},
                          {"type", "function"},
                          {"function", {{"name", "water_temperature"}, {"arguments", "{\"place\": \"Brest\"}"}}}}}}};
    auto result = [](const std::string& text) {
        return json{{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", text}};
    };
    const json said = {{"role", "assistant"}, {"content", "It is cold."}};
    const json next = user("And the air?");
    const json conversation = {sys, user("How warm is the sea at Brest?"), call, result("Water: 14 degrees."), said,
                               next};

    chat(s, conversation);
    json edited = conversation;
    edited[3] = result("Water: 19 degrees, calm.");
    const json r = chat(s, edited);
    EXPECT_EQ(r["timings"]["cache_n"], tokens_before(s, edited, "Water: 19 degrees, calm.", false)) << s.log();
    EXPECT_EQ(r["choices"][0]["message"], chat(s, edited, false)["choices"][0]["message"]);

    edited[1] = user("How warm is the sea at Roscoff?");
    const json first = chat(s, edited);
    EXPECT_EQ(first["timings"]["cache_n"], tokens_before(s, edited, "How warm is the sea at Roscoff?", false))
        << s.log();
    EXPECT_EQ(first["choices"][0]["message"], chat(s, edited, false)["choices"][0]["message"]);

    Server plain({"-m", model, "-np", "1", "-c", "2048", "-t", "1"});
    ASSERT_TRUE(plain.ready()) << plain.log();
    chat(plain, conversation);
    edited = conversation;
    edited[3] = result("Water: 19 degrees, calm.");
    EXPECT_EQ(chat(plain, edited)["timings"]["cache_n"],
              tokens_before(plain, edited, "How warm is the sea at Brest?", false))
        << plain.log();
}

// --ctx-checkpoints 2 keeps the prompt-end snapshots only: the same edit re-evaluates everything.
TEST(ServerTurnBoundaries, two_checkpoints_keep_prompt_ends_only) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/nemotron-h-moe-tiny-s1-f16.gguf").string(), "-np", "1", "-c", "2048", "-t",
              "1", "--ctx-checkpoints", "2"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto chat = [&](const std::string& last) {
        const json messages = {{{"role", "user"}, {"content", "Tell me about the sea."}},
                               {{"role", "assistant"}, {"content", "It is wet."}},
                               {{"role", "user"}, {"content", last}}};
        const auto r = curl(s.url("/v1/chat/completions"), "POST",
                            json({{"messages", messages}, {"max_tokens", 2}, {"temperature", 0}}).dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body()["timings"];
    };
    chat("And the sky?");
    EXPECT_EQ(chat("And the hills?")["cache_n"], 0);
    EXPECT_NE(s.log().find("snapshots per slot: 2 in the backend's memory"), std::string::npos) << s.log();
    EXPECT_NE(s.log().find("up to 0 in host RAM"), std::string::npos) << s.log();
    EXPECT_NE(s.log().find("forcing full prompt re-processing"), std::string::npos) << s.log();
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// Prefix sharing across slots: a conversation pinned to another slot that begins
// with the same system prompt takes those cells instead of evaluating them; the
// answer is what it is without any cache. The expected count is the common prefix
// of the two rendered prompts' tokens (/apply-template, /tokenize).
TEST(ServerPrefixSharing, a_system_prompt_another_slot_holds_is_not_evaluated_again) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "2", "-c", "2048", "-t", "1",
              "--metrics"});
    ASSERT_TRUE(s.ready()) << s.log();
    const json sys = {{"role", "system"},
                      {"content",
                       "You are a careful assistant for a shipping company. Answer briefly, cite the "
                       "relevant rule, and never invent a tracking number."}};
    auto messages = [&](const std::string& question) {
        return json::array({sys, {{"role", "user"}, {"content", question}}});
    };
    auto chat = [&](const std::string& question, int slot, bool cache_prompt = true) {
        const auto r = curl(s.url("/v1/chat/completions"), "POST",
                            json({{"messages", messages(question)},
                                  {"max_tokens", 4},
                                  {"temperature", 0},
                                  {"id_slot", slot},
                                  {"cache_prompt", cache_prompt}})
                                .dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body();
    };
    auto prompt_tokens = [&](const std::string& question) {
        const std::string prompt =
            curl(s.url("/apply-template"), "POST", json({{"messages", messages(question)}}).dump())
                .json_body()["prompt"];
        return curl(s.url("/tokenize"), "POST", json({{"content", prompt}, {"add_special", true}}).dump())
            .json_body()["tokens"];
    };
    const json a = prompt_tokens("Where is my parcel?"), b = prompt_tokens("How do I return a box?");
    size_t common = 0;
    while (common < a.size() && common < b.size() && a[common] == b[common]) ++common;
    ASSERT_GT(common, 20u);

    chat("Where is my parcel?", 0);
    const json shared = chat("How do I return a box?", 1);
    EXPECT_EQ(shared["timings"]["cache_n"], common) << s.log();
    EXPECT_EQ(shared["timings"]["prompt_n"], b.size() - common);
    EXPECT_EQ(shared["choices"][0]["message"], chat("How do I return a box?", 1, false)["choices"][0]["message"]);
    EXPECT_NE(s.log().find("shares " + std::to_string(common) + " prompt tokens of slot 0's cache"), std::string::npos)
        << s.log();
    const std::string metrics = curl(s.url("/metrics")).body;
    EXPECT_NE(metrics.find("moeserve:prefix_shared_tokens_total " + std::to_string(common)), std::string::npos)
        << metrics;
}

TEST(ServerPrefixSharing, no_prefix_sharing_evaluates_each_slots_copy) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "2", "-c", "1024", "-t", "1",
              "--no-prefix-sharing"});
    ASSERT_TRUE(s.ready()) << s.log();
    auto complete = [&](int slot) {
        const auto r = curl(s.url("/completion"), "POST",
                            json({{"prompt", "The same long opening of two prompts, word for word."},
                                  {"n_predict", 1},
                                  {"id_slot", slot}})
                                .dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body()["timings"];
    };
    complete(0);
    EXPECT_EQ(complete(1)["cache_n"], 0);
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// --cache-reuse N (and a request's n_cache_reuse): a chunk of the slot's cache after
// the common prefix that the prompt goes on with is shifted into place, not evaluated.
TEST(ServerCacheReuse, a_later_chunk_is_shifted_into_place) {
    MOESERVE_REQUIRE_FIXTURES();
    Server s({"-m", test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string(), "-np", "1", "-c", "1024", "-t", "1",
              "--cache-reuse", "16", "--cache-ram", "0"});  // no RAM prompt cache: it would bring the prompts back
    ASSERT_TRUE(s.ready()) << s.log();
    auto ids = [](int n, int start) {
        json t = json::array();
        for (int i = 0; i < n; ++i) t.push_back(start + (i * 7) % 200);
        return t;
    };
    auto join = [](std::initializer_list<json> parts) {
        json t = json::array();
        for (const auto& p : parts) t.insert(t.end(), p.begin(), p.end());
        return t;
    };
    const json a = ids(20, 10), x = ids(10, 150), b = ids(30, 40), c = ids(3, 5);
    auto complete = [&](const json& prompt, json extra = json::object()) {
        json body = {{"prompt", prompt}, {"n_predict", 2}, {"temperature", 0}};
        body.update(extra);
        const auto r = curl(s.url("/completion"), "POST", body.dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json_body();
    };
    complete(join({a, x, b}));
    const json reused = complete(join({a, b, c}));
    EXPECT_EQ(reused["timings"]["cache_n"], 50) << s.log();
    EXPECT_EQ(reused["generation_settings"]["n_cache_reuse"], 16);
    complete(join({a, x, b}));
    EXPECT_EQ(complete(join({a, b, c}), {{"n_cache_reuse", 0}})["timings"]["cache_n"], 20);
    const auto bad = curl(s.url("/completion"), "POST", json({{"prompt", "x"}, {"n_cache_reuse", -1}}).dump());
    EXPECT_EQ(bad.status, 400);
    EXPECT_NE(bad.body.find("n_cache_reuse"), std::string::npos) << bad.body;
}

}  // namespace
}  // namespace moeserve
