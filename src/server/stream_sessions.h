// Resumable streams (spec server-behaviour §6.9, as recent llama-server): a
// streaming request that carries `X-Conversation-Id: <id>` keeps generating
// when its client goes away, and the SSE bytes it produces are kept in a
// StreamSession, so that `GET /v1/stream?conv_id=<id>&from=N` can replay them
// from byte N and follow the rest; `DELETE /v1/stream` cancels it. A session
// keeps its newest 4 MiB (older bytes are dropped from the front; a reader
// that asks for them is told the offset is lost) and is forgotten 5 minutes
// after its request ended.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moeserve {

class StreamSession {
  public:
    using Clock = std::chrono::system_clock;

    StreamSession(std::string conversation_id, size_t max_bytes);

    const std::string& conversation_id() const { return id_; }

    // The producer's side: more SSE text (ignored once finished), then finish().
    void append(std::string_view bytes);
    void finish();
    // Stops the producer (DELETE, or a newer request on the same id), which
    // checks cancelled() between events.
    void cancel() { cancelled_.store(true); }
    bool cancelled() const { return cancelled_.load(); }

    enum class Read { bytes, finished, waiting, lost };
    // A reader's side: appends the bytes from absolute `offset` on to `out`
    // and advances it (bytes); waits up to `wait` when there are none yet
    // (waiting), or says the stream has ended (finished) or that the bytes at
    // `offset` were already dropped (lost).
    Read read(size_t& offset, std::string& out, std::chrono::milliseconds wait) const;

    struct Info {
        std::string conversation_id;
        bool done = false;
        size_t total_bytes = 0;     // every byte appended, dropped ones included
        size_t dropped_bytes = 0;   // the front that is no longer kept
        int64_t started_at = 0;     // unix seconds
        int64_t completed_at = 0;   // unix seconds, 0 while running
        uint64_t finish_order = 0;  // which finished first, within a second too
    };
    Info info() const;

  private:
    const std::string id_;
    const size_t max_bytes_;
    const int64_t started_at_;
    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::string buffer_;  // bytes [dropped_, dropped_ + size)
    size_t dropped_ = 0;
    bool done_ = false;
    int64_t completed_at_ = 0;
    uint64_t finish_order_ = 0;
    std::atomic<bool> cancelled_{false};
};

// The server's sessions by conversation id: at most one per id.
class StreamSessions {
  public:
    struct Limits {
        size_t max_bytes = 4u << 20;          // kept per session
        std::chrono::seconds ttl{300};        // after the request ended
        size_t max_sessions = 1024;           // finished ones beyond it go first
        size_t max_total_bytes = 256u << 20;  // kept by the finished ones together, oldest out first
    };
    StreamSessions() = default;
    explicit StreamSessions(Limits limits) : limits_(limits) {}

    // A new session for `id`; one already there is cancelled and replaced.
    std::shared_ptr<StreamSession> open(const std::string& id);
    // nullptr when there is none (or it expired).
    std::shared_ptr<StreamSession> find(const std::string& id);
    // Drops `session` if it is still the one registered for its id (a request
    // that failed before it streamed anything leaves nothing behind).
    void discard(const std::shared_ptr<StreamSession>& session);
    // Cancels and drops the session of `id`; false when there was none.
    bool cancel(const std::string& id);
    // The sessions of these ids, each matching itself and "<id>::<anything>"
    // (llama-server's per-model variants); nothing for ids not asked about.
    std::vector<StreamSession::Info> lookup(const std::vector<std::string>& ids);

  private:
    void expire_locked();  // drops finished sessions past their time (and beyond the caps)

    Limits limits_;
    std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<StreamSession>> sessions_;
};

}  // namespace moeserve
