#include "server/completion_controls.h"

namespace moeserve {

CompletionControls::Registration::~Registration() {
    std::lock_guard<std::mutex> lock(table_->mu);
    table_->entries.erase(id_);
}

std::shared_ptr<CompletionControls::Registration> CompletionControls::add(const std::string& id,
                                                                          std::shared_ptr<GenerationStream> stream,
                                                                          bool reasoning_control) {
    {
        std::lock_guard<std::mutex> lock(table_->mu);
        table_->entries[id] = Entry{stream, reasoning_control};
    }
    return std::make_shared<Registration>(table_, id);
}

CompletionControls::Outcome CompletionControls::reasoning_end(const std::string& id) {
    std::lock_guard<std::mutex> lock(table_->mu);
    auto it = table_->entries.find(id);
    auto stream = it == table_->entries.end() ? nullptr : it->second.stream.lock();
    if (!stream) return {false, "no active completion for this id"};
    if (!it->second.reasoning_control) return {false, "reasoning control not enabled for this completion"};
    // Taken at the slot's next sampled token; a completion no longer thinking ignores it.
    stream->request_reasoning_end();
    return {true, ""};
}

}  // namespace moeserve
