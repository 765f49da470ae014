// Chat templates against the rendered vectors in ../shared/fixtures/chat/
// (Python Jinja2 configured as transformers/llama.cpp do), and the request
// normalization and output-syntax detection of ChatTemplate.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "chat/chat.h"
#include "fixtures.h"
#include "gguf/gguf_file.h"
#include "run_command.h"
#include "text/vocab.h"

namespace moeserve {
namespace {

using json = nlohmann::ordered_json;

struct ChatCase {
    std::string file;
    json data;
    std::string source;
};

std::vector<ChatCase> load_cases() {
    std::vector<ChatCase> cases;
    for (const auto& entry : std::filesystem::directory_iterator(test::fixture("chat"))) {
        if (entry.path().extension() != ".json") continue;
        ChatCase c;
        c.file = entry.path().filename().string();
        c.data = json::parse(test::slurp(entry.path().string()));
        c.source = test::slurp(test::fixture("templates/" + c.data["template"].get<std::string>()).string());
        cases.push_back(std::move(c));
    }
    std::sort(cases.begin(), cases.end(), [](const ChatCase& a, const ChatCase& b) { return a.file < b.file; });
    return cases;
}

std::string first_difference(const std::string& got, const std::string& want) {
    size_t k = 0;
    while (k < got.size() && k < want.size() && got[k] == want[k]) ++k;
    size_t from = k > 40 ? k - 40 : 0;
    return "first difference at byte " + std::to_string(k) + "\n  got:  " + json(got.substr(from, 100)).dump() +
           "\n  want: " + json(want.substr(from, 100)).dump();
}

std::string fixture_source(const std::string& name) {
    return test::slurp(test::fixture("templates/" + name).string());
}

TEST(ChatTemplateFixtures, JinjaRendersEveryFixtureByteForByte) {
    MOESERVE_REQUIRE_FIXTURES();
    auto cases = load_cases();
    ASSERT_EQ(cases.size(), 20u);
    for (const auto& c : cases) {
        SCOPED_TRACE(c.file);
        json vars = c.data["extra_variables"];
        vars["messages"] = c.data["messages"];
        if (!c.data["tools"].empty()) vars["tools"] = c.data["tools"];
        vars["add_generation_prompt"] = c.data["add_generation_prompt"];
        std::string got = jinja::Template(c.source).render(vars);
        std::string want = c.data["expected_prompt"];
        EXPECT_EQ(got, want) << first_difference(got, want);
    }
}

TEST(ChatTemplateFixtures, ApplyWithKwargsRendersEveryFixtureByteForByte) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const auto& c : load_cases()) {
        SCOPED_TRACE(c.file);
        ChatTemplate t(c.source);
        ChatTemplateInputs in;
        in.messages = c.data["messages"];
        in.tools = c.data["tools"];
        in.add_generation_prompt = c.data["add_generation_prompt"];
        in.chat_template_kwargs = c.data["extra_variables"];
        ChatPrompt p = t.apply(in);
        std::string want = c.data["expected_prompt"];
        EXPECT_EQ(p.prompt, want) << first_difference(p.prompt, want);
    }
}

TEST(ChatTemplateFixtures, ApplyAcceptsOpenAiJsonStringArguments) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const auto& c : load_cases()) {
        SCOPED_TRACE(c.file);
        json messages = c.data["messages"];
        for (auto& m : messages)
            if (m.contains("tool_calls"))
                for (auto& call : m["tool_calls"])
                    call["function"]["arguments"] = call["function"]["arguments"].dump();  // as clients send them
        ChatTemplateInputs in;
        in.messages = messages;
        in.tools = c.data["tools"];
        in.chat_template_kwargs = c.data["extra_variables"];
        EXPECT_EQ(ChatTemplate(c.source).apply(in).prompt, c.data["expected_prompt"].get<std::string>());
    }
}

TEST(ChatTemplateFixtures, EnableThinkingTrueRendersLikeTheServerDefault) {
    MOESERVE_REQUIRE_FIXTURES();
    for (const auto& c : load_cases()) {
        SCOPED_TRACE(c.file);
        json kwargs = c.data["extra_variables"];
        if (kwargs.value("enable_thinking", false) != true) continue;
        kwargs.erase("enable_thinking");
        ChatTemplateInputs in;
        in.messages = c.data["messages"];
        in.tools = c.data["tools"];
        in.chat_template_kwargs = kwargs;
        EXPECT_EQ(ChatTemplate(c.source).apply(in).prompt, c.data["expected_prompt"].get<std::string>());
    }
}

struct GenerationPromptCase {
    const char* file;
    bool thinking;
    const char* generation_prompt;
    const char* forced_prefix;
    bool model_may_think;
    ToolCallFormat format;
};

TEST(ChatTemplateFixtures, GenerationPromptAndOutputSyntaxPerFamily) {
    MOESERVE_REQUIRE_FIXTURES();
    const GenerationPromptCase cases[] = {
        {"Qwen3-Coder.jinja", true, "<|im_start|>assistant\n", "", false, ToolCallFormat::XmlFunction},
        {"Qwen3-Coder.jinja", false, "<|im_start|>assistant\n", "", false, ToolCallFormat::XmlFunction},
        {"Qwen-Qwen3-0.6B.jinja", true, "<|im_start|>assistant\n", "", true, ToolCallFormat::HermesJson},
        {"Qwen-Qwen3-0.6B.jinja", false, "<|im_start|>assistant\n<think>\n\n</think>\n\n", "", false,
         ToolCallFormat::HermesJson},
        {"GLM-4.7-Flash.jinja", true, "<|assistant|><think>", "<think>", false, ToolCallFormat::GlmArgKeyValue},
        {"GLM-4.7-Flash.jinja", false, "<|assistant|></think>", "", false, ToolCallFormat::GlmArgKeyValue},
        {"NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja", true, "<|im_start|>assistant\n<think>\n", "<think>\n", false,
         ToolCallFormat::XmlFunction},
        {"NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja", false, "<|im_start|>assistant\n<think></think>", "", false,
         ToolCallFormat::XmlFunction},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.file) + (c.thinking ? " thinking" : " no thinking"));
        ChatTemplate t(fixture_source(c.file));
        ChatTemplateInputs in;
        in.messages = json::array({{{"role", "user"}, {"content", "Hi"}}});
        in.tools = json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
        in.chat_template_kwargs = {{"enable_thinking", c.thinking}};
        ChatPrompt p = t.apply(in);
        EXPECT_EQ(p.generation_prompt, c.generation_prompt);
        EXPECT_EQ(p.syntax.forced_reasoning_prefix, c.forced_prefix);
        EXPECT_EQ(p.syntax.model_may_think, c.model_may_think);
        EXPECT_EQ(p.syntax.tool_format, c.format);
        EXPECT_TRUE(p.syntax.parse_tool_calls);
        EXPECT_TRUE(p.prompt.ends_with(p.generation_prompt));
    }
}

TEST(ChatTemplateFamilyDetection, RecognisesTheFourTemplates) {
    MOESERVE_REQUIRE_FIXTURES();
    EXPECT_EQ(ChatTemplate(fixture_source("Qwen3-Coder.jinja")).family(), ChatTemplateFamily::Qwen3Coder);
    EXPECT_EQ(ChatTemplate(fixture_source("Qwen-Qwen3-0.6B.jinja")).family(), ChatTemplateFamily::Qwen3);
    EXPECT_EQ(ChatTemplate(fixture_source("GLM-4.7-Flash.jinja")).family(), ChatTemplateFamily::Glm);
    EXPECT_EQ(ChatTemplate(fixture_source("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja")).family(),
              ChatTemplateFamily::Qwen3Coder);
    EXPECT_FALSE(ChatTemplate(fixture_source("Qwen3-Coder.jinja")).supports_thinking());
    EXPECT_TRUE(ChatTemplate(fixture_source("GLM-4.7-Flash.jinja")).supports_thinking());
    EXPECT_EQ(ChatTemplate::from_name_or_source("chatml").family(), ChatTemplateFamily::Generic);
}

TEST(ChatTemplateFixtures, GgufTemplatesRenderLikeTheFixtureCopies) {
    MOESERVE_REQUIRE_FIXTURES();
    // Each tiny model carries its family's template; the first case of each
    // family must render identically through the model's own copy.
    const std::pair<const char*, const char*> models[] = {
        {"models/qwen3moe-tiny-s1-f16.gguf", "qwen3__tool_turn.json"},
        {"models/nemotron-h-moe-tiny-s1-f16.gguf", "nemotron-3-nano__tool_turn.json"},
        {"models/glm47flash-tiny-s1-f16.gguf", "glm-4.7-flash__tool_turn.json"},
    };
    for (const auto& [model, case_file] : models) {
        SCOPED_TRACE(model);
        GgufFile file = GgufFile::open(test::fixture(model).string());
        Vocab vocab = Vocab::from_gguf(file);
        ChatTemplate t = ChatTemplate::from_vocab(vocab);
        json c = json::parse(test::slurp(test::fixture(std::string("chat/") + case_file).string()));
        ChatTemplateInputs in;
        in.messages = c["messages"];
        in.tools = c["tools"];
        in.chat_template_kwargs = c["extra_variables"];
        std::string want = c["expected_prompt"];
        // llama.cpp removes a BOS text the tokenizer will add itself.
        if (vocab.add_bos() && vocab.valid(vocab.special().bos) && want.starts_with(vocab.text(vocab.special().bos)))
            want.erase(0, vocab.text(vocab.special().bos).size());
        EXPECT_EQ(t.apply(in).prompt, want);
    }
}

TEST(ChatTemplateRequest, NormalizesMessagesLikeLlamaCpp) {
    json messages = json::parse(R"([
        {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "assistant", "content": null, "reasoning_content": "",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    ])");
    json n = ChatTemplate::normalize_messages(messages);
    EXPECT_EQ(n.dump(), json::parse(R"([
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}, "id": "c1"}]},
        {"role": "tool", "content": "ok", "tool_call_id": "c1"}
    ])")
                            .dump());
}

TEST(ChatTemplateRequest, RebuildsToolsWithDefaultsAndDropsExtraKeys) {
    json tools = json::parse(R"([{"type": "function", "function": {"name": "f", "strict": true}}])");
    EXPECT_EQ(ChatTemplate::normalize_tools(tools).dump(),
              R"([{"type":"function","function":{"name":"f","description":"","parameters":{}}}])");
}

TEST(ChatTemplateRequest, RejectsBadRequestsWithAClearMessage) {
    auto message_of = [](json messages) {
        try {
            ChatTemplate::normalize_messages(messages);
        } catch (const ChatRequestError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(message_of(json::array()), "'messages' must not be empty");
    EXPECT_EQ(message_of(json::array({{{"content", "x"}}})), "messages[0].role must be a string");
    EXPECT_EQ(message_of(json::array({{{"role", "user"}}})), "messages[0] needs 'content' or 'tool_calls'");
    EXPECT_EQ(message_of(json::parse(R"([{"role":"user","content":[{"type":"image_url","image_url":{}}]}])")),
              "messages[0].content: part type 'image_url' is not supported (text only)");
    EXPECT_EQ(message_of(
                  json::parse(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{bad"}}]}])")),
              "messages[0].tool_calls[0].function.arguments is not valid JSON");

    ChatTemplate t = ChatTemplate::from_name_or_source("chatml");
    ChatTemplateInputs in;
    in.messages = json::array({{{"role", "user"}, {"content", "x"}}});
    in.chat_template_kwargs = {{"enable_thinking", "yes"}};
    EXPECT_THROW(t.apply(in), ChatRequestError);
    EXPECT_THROW(ChatTemplate::from_name_or_source("no-such-template"), ChatTemplateError);
}

TEST(ChatTemplateRequest, PreserveReasoningKeepsHistoryThinking) {
    MOESERVE_REQUIRE_FIXTURES();
    json c =
        json::parse(test::slurp(test::fixture("chat/glm-4.7-flash__tool_turn_keep_history_thinking.json").string()));
    ChatTemplateInputs in;
    in.messages = c["messages"];
    in.tools = c["tools"];
    in.chat_template_kwargs = {{"preserve_reasoning", true}};
    EXPECT_EQ(ChatTemplate(fixture_source("GLM-4.7-Flash.jinja")).apply(in).prompt,
              c["expected_prompt"].get<std::string>());
}

TEST(ChatTemplateRequest, StripsLeadingBosTheTokenizerAddsItself) {
    ChatTemplate t("{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}", "<s>", "</s>", true, false);
    ChatTemplateInputs in;
    in.messages = json::array({{{"role", "user"}, {"content", "x"}}});
    in.add_generation_prompt = false;
    EXPECT_EQ(t.apply(in).prompt, "[x]</s>");
    ChatTemplate keep("{{ bos_token }}[{{ messages[0].content }}]", "<s>", "</s>", false, false);
    EXPECT_EQ(keep.apply(in).prompt, "<s>[x]");
}

TEST(ChatTemplateRequest, ToolChoiceNoneDisablesToolCallParsing) {
    MOESERVE_REQUIRE_FIXTURES();
    ChatTemplateInputs in;
    in.messages = json::array({{{"role", "user"}, {"content", "x"}}});
    in.tools = json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
    in.parse_tool_calls = false;
    EXPECT_FALSE(ChatTemplate(fixture_source("Qwen3-Coder.jinja")).apply(in).syntax.parse_tool_calls);
    in.parse_tool_calls = true;
    in.tools = json::array();
    EXPECT_FALSE(ChatTemplate(fixture_source("Qwen3-Coder.jinja")).apply(in).syntax.parse_tool_calls);
}

}  // namespace
}  // namespace moeserve
