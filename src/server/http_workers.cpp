#include "server/http_workers.h"

#include <algorithm>
#include <cstdio>
#include <system_error>
#include <thread>

namespace moeserve {

HttpWorkers::HttpWorkers(size_t max_workers, size_t keep_workers, std::chrono::milliseconds idle_exit)
    : max_workers_(max_workers > 0 ? max_workers : 1),
      keep_workers_(std::min(keep_workers, max_workers_)),
      idle_exit_(idle_exit) {}

HttpWorkers::~HttpWorkers() {
    shutdown();
}

void HttpWorkers::enqueue(std::function<void()> fn) {
    std::unique_lock<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (n_idle_ >= jobs_.size() || n_workers_ >= max_workers_) {
        lock.unlock();
        work_cv_.notify_one();
        return;
    }
    ++n_workers_;
    lock.unlock();
    try {
        // Detached: a worker that ends on its own cannot join itself; shutdown()
        // waits for the count of live workers instead.
        std::thread([this] { work(); }).detach();
    } catch (const std::system_error& e) {
        // Out of threads: the job waits for a worker that exists.
        std::fprintf(stderr, "srv  cannot start an HTTP worker thread (%s); the connection waits\n", e.what());
        lock.lock();
        --n_workers_;
        exit_cv_.notify_all();
        lock.unlock();
        work_cv_.notify_one();
    }
}

void HttpWorkers::work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        ++n_idle_;
        const bool got = work_cv_.wait_for(lock, idle_exit_, [&] { return !jobs_.empty() || shutdown_; });
        --n_idle_;
        if (jobs_.empty()) {
            if (shutdown_ || (!got && n_workers_ > keep_workers_)) break;
            continue;
        }
        std::function<void()> job = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        job();
        job = nullptr;  // the connection's resources go before the worker waits again
        lock.lock();
    }
    --n_workers_;
    exit_cv_.notify_all();
}

void HttpWorkers::shutdown() {
    std::unique_lock<std::mutex> lock(mu_);
    shutdown_ = true;
    work_cv_.notify_all();
    // Queued jobs still need a worker; with none left, run them here.
    while (n_workers_ == 0 && !jobs_.empty()) {
        std::function<void()> job = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        job();
        lock.lock();
    }
    exit_cv_.wait(lock, [&] { return n_workers_ == 0; });
}

size_t HttpWorkers::workers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return n_workers_;
}

}  // namespace moeserve
