// Chat prompts from OpenAI requests, the way llama-server builds them with
// --jinja: the model's Jinja chat template rendered with llama.cpp's inputs
// (spec: ../shared/spec/chat-templates.md, section 3).
//
//   ChatTemplate t = ChatTemplate::from_vocab(tokenizer.vocab());  // or from_file / from_name_or_source
//   ChatTemplateInputs in;
//   in.messages = body["messages"];  in.tools = body.value("tools", json::array());
//   in.chat_template_kwargs = body.value("chat_template_kwargs", json::object());
//   ChatPrompt p = t.apply(in);        // p.prompt -> tokenizer (parse special tokens)
//   ChatStreamParser parser(p.syntax); // read the generated text back (chat_output.h)
#pragma once

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_output.h"
#include "chat/jinja_template.h"

namespace moeserve {

class Vocab;

// A request the template cannot be applied to (bad messages, tools or
// kwargs): the client's mistake, an HTTP 400.
class ChatRequestError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The template could not be loaded or failed while rendering: the message
// names the template line (jinja::TemplateError), an HTTP 500 at render time.
using ChatTemplateError = jinja::TemplateError;

// Which family's syntax the template teaches the model, from its text.
enum class ChatTemplateFamily {
    Generic,     // no known tool-call syntax: content (and <think> reasoning) only
    Qwen3,       // <tool_call> + JSON (Hermes style)
    Qwen3Coder,  // <tool_call><function=…><parameter=…> (Qwen3-Coder, Nemotron-3-Nano)
    Glm,         // <tool_call>NAME<arg_key>…</arg_key><arg_value>…</arg_value> (GLM-4.5 … 4.7)
};
std::string_view chat_template_family_name(ChatTemplateFamily f);
ChatTemplateFamily detect_chat_template_family(std::string_view source);
ToolCallFormat tool_call_format_of(ChatTemplateFamily f);

struct ChatTemplateInputs {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // as the client sent them
    nlohmann::ordered_json tools = nlohmann::ordered_json::array();     // OpenAI tools; null or [] for none
    bool add_generation_prompt = true;
    bool enable_thinking = true;  // the server's default; chat_template_kwargs.enable_thinking overrides it
    nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
    bool parse_tool_calls = true;  // false for tool_choice "none"
    ReasoningFormat reasoning_format = ReasoningFormat::Auto;
    std::optional<std::time_t> now;  // for date_string/datetime; the current time when unset
};

struct ChatPrompt {
    std::string prompt;             // text to tokenize, special tokens parsed; BOS/EOS text removed as llama.cpp does
    std::string generation_prompt;  // the suffix add_generation_prompt added (e.g. "<|im_start|>assistant\n<think>\n")
    ChatSyntax syntax;              // how to parse this request's output
};

class ChatTemplate {
  public:
    // source: Jinja text. bos/eos: the vocabulary's BOS/EOS token texts
    // (bos_token/eos_token). add_bos/add_eos: the tokenizer adds them itself,
    // so a rendered prompt's leading BOS / trailing EOS text is removed.
    // Throws ChatTemplateError when the source does not parse.
    ChatTemplate(std::string source, std::string bos_token = "", std::string eos_token = "", bool add_bos = false,
                 bool add_eos = false);

    // The GGUF's tokenizer.chat_template with that vocabulary's BOS/EOS.
    // Throws ChatTemplateError when the file has no template.
    static ChatTemplate from_vocab(const Vocab& vocab);
    // An override: --chat-template-file PATH (tokens taken from the vocabulary).
    static ChatTemplate from_file(const std::string& path, const Vocab* vocab = nullptr);
    // --chat-template VALUE: a built-in name (builtin_template_names()) or Jinja source.
    static ChatTemplate from_name_or_source(const std::string& value, const Vocab* vocab = nullptr);
    static std::vector<std::string> builtin_template_names();

    const std::string& source() const { return source_; }
    ChatTemplateFamily family() const { return family_; }
    // The template knows <think> blocks (reasoning models).
    bool supports_thinking() const { return supports_thinking_; }

    // Normalizes the request like llama.cpp (section 3.2), renders it, and
    // works out the output syntax. Throws ChatRequestError for a bad request
    // and ChatTemplateError when the template fails (raise_exception included).
    ChatPrompt apply(const ChatTemplateInputs& inputs) const;

    // Renders template-ready variables as they are (tests, tools).
    std::string render(const nlohmann::ordered_json& variables) const;

    // The request normalization alone: template-ready messages and tools.
    static nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& messages);
    static nlohmann::ordered_json normalize_tools(const nlohmann::ordered_json& tools);

    jinja::RenderLimits limits;

  private:
    std::string source_;
    std::shared_ptr<const jinja::Template> template_;
    std::string bos_, eos_;
    bool add_bos_ = false, add_eos_ = false;
    ChatTemplateFamily family_ = ChatTemplateFamily::Generic;
    bool supports_thinking_ = false;
};

}  // namespace moeserve
