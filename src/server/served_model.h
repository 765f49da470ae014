// The model a server serves once loaded: engine, tokenizer, chat formatter
// and scheduler (running its inference thread), with the names and facts the
// API reports (/v1/models, /props).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/grammar_sampler.h"
#include "engine/scheduler.h"
#include "server/completion_controls.h"
#include "server/prompt_formatter.h"
#include "server/server_options.h"
#include "server/stream_sessions.h"
#include "text/tokenizer.h"

namespace moeserve {

class ServedModel {
  public:
    // Loads the model and starts the scheduler. Throws with a message naming
    // the file or the setting for anything that prevents serving.
    explicit ServedModel(const ServerOptions& options);
    ~ServedModel();

    const ServerOptions& options() const { return options_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const PromptFormatter& formatter() const { return *formatter_; }
    Scheduler& scheduler() { return *scheduler_; }
    const Scheduler& scheduler() const { return *scheduler_; }
    Engine& engine() { return *engine_; }
    // Resumable streams (X-Conversation-Id) and the chat completions that
    // /v1/chat/completions/control can reach.
    StreamSessions& stream_sessions() { return stream_sessions_; }
    CompletionControls& completion_controls() { return completion_controls_; }
    const SlotLayout& layout() const { return layout_; }

    const std::string& name() const { return name_; }  // reported as "model"
    const std::vector<std::string>& aliases() const { return aliases_; }
    const std::string& chat_template() const { return chat_template_; }  // the source, for /props
    const std::string& ftype() const { return ftype_; }
    int64_t n_ctx_train() const { return n_ctx_train_; }
    int64_t n_params() const { return n_params_; }
    int64_t n_embd() const { return n_embd_; }
    // How embeddings pool (--pooling, else the GGUF's pooling_type, else none).
    Pooling pooling() const { return pooling_; }
    uint64_t size_bytes() const { return size_bytes_; }

    // Chat messages -> prompt text (BOS text removed when the tokenizer adds
    // BOS itself) and the syntax of the answer; and text -> prompt tokens.
    FormattedChat render_chat(const json& messages, const json& tools, bool add_generation_prompt, const json& kwargs,
                              const ChatOutputOptions& output) const;
    std::vector<int32_t> tokenize_prompt(const std::string& text) const;
    // The model has recurrent layers (a hybrid such as Nemotron): its state
    // rewinds only to snapshots, which chat requests place at turn boundaries
    // and message starts.
    bool recurrent() const { return engine_->cache().has_recurrent(); }
    // Every token's output text, for grammar-constrained sampling (built on
    // first use: a pass over the vocabulary).
    std::shared_ptr<const TokenPieces> token_pieces() const;

    void stop() { scheduler_->stop(); }

  private:
    ServerOptions options_;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<PromptFormatter> formatter_;
    std::unique_ptr<Scheduler> scheduler_;
    SlotLayout layout_;
    StreamSessions stream_sessions_;
    CompletionControls completion_controls_;
    std::string name_;
    std::vector<std::string> aliases_;
    std::string chat_template_;
    std::string ftype_;
    mutable std::once_flag pieces_once_;
    mutable std::shared_ptr<const TokenPieces> pieces_;
    int64_t n_ctx_train_ = 0;
    int64_t n_params_ = 0;
    int64_t n_embd_ = 0;
    Pooling pooling_ = Pooling::none;
    uint64_t size_bytes_ = 0;
};

}  // namespace moeserve
