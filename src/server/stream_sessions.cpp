#include "server/stream_sessions.h"

#include <algorithm>
#include <atomic>
#include <utility>

namespace moeserve {
namespace {

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(StreamSession::Clock::now().time_since_epoch()).count();
}

}  // namespace

StreamSession::StreamSession(std::string conversation_id, size_t max_bytes)
    : id_(std::move(conversation_id)), max_bytes_(std::max<size_t>(max_bytes, 1)), started_at_(unix_now()) {}

void StreamSession::append(std::string_view bytes) {
    if (bytes.empty()) return;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (done_) return;
        if (bytes.size() >= max_bytes_) {
            // Larger than the whole window: only its tail is kept.
            dropped_ += buffer_.size() + (bytes.size() - max_bytes_);
            buffer_.assign(bytes.substr(bytes.size() - max_bytes_));
        } else {
            if (buffer_.size() + bytes.size() > max_bytes_) {
                const size_t drop = buffer_.size() + bytes.size() - max_bytes_;
                buffer_.erase(0, drop);
                dropped_ += drop;
            }
            buffer_.append(bytes);
        }
    }
    cv_.notify_all();
}

void StreamSession::finish() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (done_) return;
        done_ = true;
        completed_at_ = unix_now();
        static std::atomic<uint64_t> finishes{0};
        finish_order_ = ++finishes;
    }
    cv_.notify_all();
}

StreamSession::Read StreamSession::read(size_t& offset, std::string& out, std::chrono::milliseconds wait) const {
    std::unique_lock<std::mutex> lock(mu_);
    auto available = [&] { return offset < dropped_ || offset < dropped_ + buffer_.size() || done_; };
    if (!available()) cv_.wait_for(lock, wait, available);
    if (offset < dropped_) return Read::lost;
    const size_t end = dropped_ + buffer_.size();
    if (offset < end) {
        out.append(buffer_, offset - dropped_, end - offset);
        offset = end;
        return Read::bytes;
    }
    return done_ ? Read::finished : Read::waiting;
}

StreamSession::Info StreamSession::info() const {
    std::lock_guard<std::mutex> lock(mu_);
    return Info{id_, done_, dropped_ + buffer_.size(), dropped_, started_at_, completed_at_, finish_order_};
}

std::shared_ptr<StreamSession> StreamSessions::open(const std::string& id) {
    auto fresh = std::make_shared<StreamSession>(id, limits_.max_bytes);
    std::shared_ptr<StreamSession> previous;
    {
        std::lock_guard<std::mutex> lock(mu_);
        expire_locked();
        auto& slot = sessions_[id];
        previous = std::exchange(slot, fresh);
    }
    // One conversation streams one answer: the one it replaces stops.
    if (previous) {
        previous->cancel();
        previous->finish();
    }
    return fresh;
}

std::shared_ptr<StreamSession> StreamSessions::find(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    expire_locked();
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : it->second;
}

void StreamSessions::discard(const std::shared_ptr<StreamSession>& session) {
    if (!session) return;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = sessions_.find(session->conversation_id());
        if (it != sessions_.end() && it->second == session) sessions_.erase(it);
    }
    session->finish();
}

bool StreamSessions::cancel(const std::string& id) {
    std::shared_ptr<StreamSession> s;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = sessions_.find(id);
        if (it == sessions_.end()) return false;
        s = std::move(it->second);
        sessions_.erase(it);
    }
    // Cancel first so the producer stops pulling events, then wake the readers.
    s->cancel();
    s->finish();
    return true;
}

std::vector<StreamSession::Info> StreamSessions::lookup(const std::vector<std::string>& ids) {
    std::vector<StreamSession::Info> out;
    std::lock_guard<std::mutex> lock(mu_);
    expire_locked();
    for (const std::string& id : ids) {
        if (id.empty()) continue;
        const std::string variant = id + "::";
        for (const auto& [key, s] : sessions_)
            if (key == id || key.compare(0, variant.size(), variant) == 0) out.push_back(s->info());
    }
    return out;
}

void StreamSessions::expire_locked() {
    const int64_t cutoff = unix_now() - limits_.ttl.count();
    struct Finished {
        uint64_t order;
        size_t bytes;
        std::string key;
    };
    std::vector<Finished> finished;
    size_t finished_bytes = 0;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
        const StreamSession::Info i = it->second->info();
        if (i.done && i.completed_at <= cutoff) {
            it = sessions_.erase(it);
            continue;
        }
        if (i.done) {
            const size_t kept = i.total_bytes - i.dropped_bytes;
            finished.push_back({i.finish_order, kept, it->first});
            finished_bytes += kept;
        }
        ++it;
    }
    // Too many, or too many bytes: the oldest finished ones go (running ones
    // are never dropped; each holds at most max_bytes).
    if (sessions_.size() > limits_.max_sessions || finished_bytes > limits_.max_total_bytes) {
        std::sort(finished.begin(), finished.end(),
                  [](const Finished& x, const Finished& y) { return x.order < y.order; });
        for (const Finished& f : finished) {
            if (sessions_.size() <= limits_.max_sessions && finished_bytes <= limits_.max_total_bytes) break;
            sessions_.erase(f.key);
            finished_bytes -= f.bytes;
        }
    }
}

}  // namespace moeserve
