// HttpWorkers, the HTTP server's thread pool: a thread per job up to the cap,
// queued jobs beyond it, idle threads above the kept number ending, and a
// shutdown that runs every queued job.
#include "server/http_workers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace moeserve {
namespace {

using namespace std::chrono_literals;

// Jobs that block until released.
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    std::atomic<int> running{0}, done{0};
    std::function<void()> job() {
        return [this] {
            ++running;
            std::unique_lock<std::mutex> lock(mu);
            cv.wait(lock, [&] { return open; });
            ++done;
        };
    }
    void release() {
        {
            std::lock_guard<std::mutex> lock(mu);
            open = true;
        }
        cv.notify_all();
    }
};

template <typename F>
bool eventually(F f, std::chrono::milliseconds timeout = 5s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!f()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

TEST(HttpWorkers, starts_a_thread_per_blocked_job_up_to_the_cap_then_queues) {
    HttpWorkers pool(6, 2, 10s);
    Gate gate;
    for (int i = 0; i < 10; ++i) pool.enqueue(gate.job());
    EXPECT_TRUE(eventually([&] { return gate.running == 6; }));
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(gate.running, 6);  // the other 4 wait for a worker
    EXPECT_EQ(pool.workers(), 6u);
    gate.release();
    EXPECT_TRUE(eventually([&] { return gate.done == 10; }));
    pool.shutdown();
    EXPECT_EQ(pool.workers(), 0u);
}

TEST(HttpWorkers, idle_workers_above_the_kept_number_end) {
    HttpWorkers pool(8, 2, 50ms);
    Gate gate;
    for (int i = 0; i < 8; ++i) pool.enqueue(gate.job());
    EXPECT_TRUE(eventually([&] { return gate.running == 8; }));
    gate.release();
    EXPECT_TRUE(eventually([&] { return pool.workers() == 2; }));
    std::this_thread::sleep_for(150ms);
    EXPECT_EQ(pool.workers(), 2u);  // the kept ones stay
    std::atomic<int> ran{0};
    pool.enqueue([&] { ++ran; });  // and still take work
    EXPECT_TRUE(eventually([&] { return ran == 1; }));
}

TEST(HttpWorkers, idle_workers_take_new_jobs_without_new_threads) {
    HttpWorkers pool(32, 32, 10s);
    std::atomic<int> ran{0};
    for (int i = 0; i < 20; ++i) {
        pool.enqueue([&] { ++ran; });
        EXPECT_TRUE(eventually([&] { return ran == i + 1; }));
        std::this_thread::sleep_for(2ms);  // the worker goes back to waiting
    }
    // One job at a time: a worker is nearly always idle when the next comes
    // (a job can land in the moment between its end and the worker's wait).
    EXPECT_LE(pool.workers(), 3u);
}

TEST(HttpWorkers, shutdown_runs_every_queued_job_first) {
    std::atomic<int> ran{0};
    {
        HttpWorkers pool(1, 1, 10s);
        Gate gate;
        pool.enqueue(gate.job());
        EXPECT_TRUE(eventually([&] { return gate.running == 1; }));
        for (int i = 0; i < 5; ++i) pool.enqueue([&] { ++ran; });
        std::thread releaser([&] {
            std::this_thread::sleep_for(20ms);
            gate.release();
        });
        pool.shutdown();
        releaser.join();
        EXPECT_EQ(gate.done, 1);
    }
    EXPECT_EQ(ran, 5);
}

}  // namespace
}  // namespace moeserve
