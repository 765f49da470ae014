// `POST /v1/chat/completions/control` (spec server-behaviour §5.1):
// `{"id": "chatcmpl-…", "action": "reasoning_end"}` asks a running chat
// completion to stop thinking now. The slot then writes what a spent
// thinking budget writes (reasoning_budget_message and the closing marker)
// and answers on. Only requests that set `reasoning_control: true` accept
// it. This registry maps the completion ids of the requests in flight to
// their streams, which carry the request to the inference thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/generation.h"

namespace moeserve {

class CompletionControls {
    struct Entry {
        std::weak_ptr<GenerationStream> stream;
        bool reasoning_control = false;
    };
    // Shared with the registrations, which may outlive the registry at shutdown.
    struct Table {
        std::mutex mu;
        std::unordered_map<std::string, Entry> entries;
    };

  public:
    struct Outcome {
        bool success = false;
        std::string message;  // why not, when it failed
    };

    // Removes its entry when it goes out of scope (the request ended).
    class Registration {
      public:
        Registration(std::shared_ptr<Table> table, std::string id) : table_(std::move(table)), id_(std::move(id)) {}
        ~Registration();
        Registration(const Registration&) = delete;
        Registration& operator=(const Registration&) = delete;

      private:
        std::shared_ptr<Table> table_;
        std::string id_;
    };

    // A completion in flight; `reasoning_control`: whether it accepts control.
    std::shared_ptr<Registration> add(const std::string& id, std::shared_ptr<GenerationStream> stream,
                                      bool reasoning_control);
    Outcome reasoning_end(const std::string& id);

  private:
    std::shared_ptr<Table> table_ = std::make_shared<Table>();
};

}  // namespace moeserve
