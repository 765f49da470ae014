#include "cli/load_progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace moeserve::cli {

LoadProgress::LoadProgress(std::string label, int total_requests)
    : label_(std::move(label)), total_(total_requests), start_(std::chrono::steady_clock::now()) {
    if (!isatty(STDERR_FILENO)) return;
    drawer_ = std::thread([this] {
        std::unique_lock lock(mutex_);
        while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) draw();
    });
}

LoadProgress::~LoadProgress() {
    if (!drawer_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    drawer_.join();
    std::fputs("\r\033[K", stderr);  // erase the bar: the report follows
    std::fflush(stderr);
}

void LoadProgress::draw() const {
    constexpr int kWidth = 30;
    const int done = done_.load(std::memory_order_relaxed);
    const int filled = total_ > 0 ? done * kWidth / total_ : kWidth;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int failed = failed_.load(std::memory_order_relaxed);
    std::string line =
        fmt::format("\r{} [{}{}] {}/{} requests, ~{} tokens, {:.1f} s", label_, std::string(filled, '#'),
                    std::string(kWidth - filled, '.'), done, total_, chunks_.load(std::memory_order_relaxed), elapsed);
    if (failed) line += fmt::format(", {} failed", failed);
    line += "\033[K";
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
}

}  // namespace moeserve::cli
