// The threads that serve HTTP connections (cpp-httplib runs one connection
// per task queue job, from its request line to the end of the keep-alive).
//
// cpp-httplib's own ThreadPool starts a fixed number of threads and queues
// every further connection behind them, so a few dozen clients that hold
// connections open (slowloris, slow uploads, long streams) make every other
// client wait. HttpWorkers instead starts a thread for a connection that finds
// no idle worker, up to max_workers; beyond that connections wait in a queue.
// Workers above keep_workers end after idle_exit without work, so a burst of
// connections does not leave its threads behind.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

namespace moeserve {

class HttpWorkers : public httplib::TaskQueue {
  public:
    HttpWorkers(size_t max_workers, size_t keep_workers, std::chrono::milliseconds idle_exit);
    ~HttpWorkers() override;

    void enqueue(std::function<void()> fn) override;
    // Runs every queued job, then waits for all workers to end.
    void shutdown() override;

    size_t workers() const;  // threads alive now

  private:
    void work();

    const size_t max_workers_;
    const size_t keep_workers_;
    const std::chrono::milliseconds idle_exit_;

    mutable std::mutex mu_;
    std::condition_variable work_cv_;  // a job arrived, or shutdown
    std::condition_variable exit_cv_;  // a worker ended
    std::deque<std::function<void()>> jobs_;
    size_t n_workers_ = 0;
    size_t n_idle_ = 0;
    bool shutdown_ = false;
};

}  // namespace moeserve
