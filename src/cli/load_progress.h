// The progress bar `moeserve load` draws on stderr while a round runs,
// redrawn ten times a second; nothing at all when stderr is not a terminal
// (a pipe, a file, a test), so captured output stays clean.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace moeserve::cli {

class LoadProgress {
  public:
    LoadProgress(std::string label, int total_requests);
    ~LoadProgress();  // stops drawing and clears the line
    LoadProgress(const LoadProgress&) = delete;
    LoadProgress& operator=(const LoadProgress&) = delete;

    // Both may be called from any client thread. Each content chunk counts as
    // a token: servers stream one per chunk, except when they hold back the
    // start of a multi-byte character, hence the "~" on the display.
    void content_received() { chunks_.fetch_add(1, std::memory_order_relaxed); }
    void request_done(bool ok) {
        done_.fetch_add(1, std::memory_order_relaxed);
        if (!ok) failed_.fetch_add(1, std::memory_order_relaxed);
    }

  private:
    void draw() const;

    std::string label_;
    int total_;
    std::chrono::steady_clock::time_point start_;
    std::atomic<int64_t> chunks_{0};
    std::atomic<int> done_{0}, failed_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    std::thread drawer_;  // not started when stderr is not a terminal
};

}  // namespace moeserve::cli
