// moeserve serve: llama-server's command line and HTTP API over the engine.
// The listener comes up first (every route answers 503 "Loading model"),
// then the model loads. SIGINT/SIGTERM shut it down cleanly and exit 0: the
// listener stops accepting connections and closes idle ones, requests in
// flight get --shutdown-timeout to finish, then (or at a second signal) the rest
// are cancelled: waiting requests get a 503, streams an error event, and
// every connection is closed.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <thread>

#include "cli/args.h"
#include "cli/command.h"
#include "server/http_server.h"
#include "server/served_model.h"
#include "server/server_options.h"

namespace moeserve::cli {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kCancelTimeout = std::chrono::seconds(2);  // for cancelled streams to send their error event

// Waits until `done`, `deadline` or one of `signals`; true when `done`.
bool wait_until(const std::atomic<bool>& done, Clock::time_point deadline, const sigset_t& signals) {
    while (!done.load()) {
        const auto left = deadline - Clock::now();
        if (left <= Clock::duration::zero()) return false;
        const auto slice = std::min<Clock::duration>(left, std::chrono::milliseconds(50));
        const timespec ts{0, static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(slice).count())};
        if (sigtimedwait(&signals, nullptr, &ts) > 0) return done.load();
    }
    return true;
}

int run_serve(const std::vector<std::string>& argv) {
    ServerOptions opt;
    try {
        opt = parse_server_args(argv, [](const char* name) { return std::getenv(name); });
    } catch (const ServerFlagError& e) {
        // Status 1, as llama-server exits on an unknown flag or a bad value
        // (the other commands use 2 for usage errors).
        std::fprintf(stderr, "moeserve serve: %s\n", e.what());
        return 1;
    }
    if (opt.help) {
        std::fputs(server_help().c_str(), stdout);
        return 0;
    }
    if (!opt.log_file.empty()) {  // checked first: a failed freopen would leave no stderr for the error
        FILE* probe = std::fopen(opt.log_file.c_str(), "a");
        if (!probe) throw UsageError("--log-file " + opt.log_file + ": cannot open the file for writing");
        std::fclose(probe);
        if (std::freopen(opt.log_file.c_str(), "a", stderr)) std::setvbuf(stderr, nullptr, _IONBF, 0);
    }

    // Signals are taken by one thread with sigwait; every other thread blocks them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);  // the loader's "done"
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    HttpServer http(opt);
    const int port = http.bind();
    std::atomic<bool> http_done{false};
    std::thread listener([&] {
        http.run();
        http_done.store(true);
    });
    std::fprintf(stderr, "main: server is listening on http://%s:%d - starting the model\n", opt.host.c_str(), port);

    std::shared_ptr<ServedModel> model;
    std::thread loader([&] {
        try {
            model = std::make_shared<ServedModel>(opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "main: error: failed to load the model: %s\n", e.what());
        }
        // Wake the signal wait below either way.
        kill(getpid(), SIGUSR1);
    });
    int sig = 0;
    sigwait(&signals, &sig);
    loader.join();
    sigdelset(&signals, SIGUSR1);
    if (sig == SIGUSR1 && model) {
        http.set_model(model);
        std::fprintf(stderr, "main: model loaded\nmain: listening on http://%s:%d\n", opt.host.c_str(), port);
        if (opt.webui)
            std::fprintf(stderr, "main: chat in a browser at http://%s:%d%s/\n", opt.host.c_str(), port,
                         opt.api_prefix.c_str());
        sigwait(&signals, &sig);
    }
    const bool failed = !model;
    std::fprintf(stderr,
                 "main: %s, shutting down: no new connections; requests in flight get %lld s to finish (a second "
                 "signal cancels them)\n",
                 failed ? "no model" : (sig == SIGINT ? "interrupted" : "terminated"),
                 static_cast<long long>(opt.shutdown_timeout_s));
    http.stop();
    if (!wait_until(http_done, Clock::now() + std::chrono::seconds(opt.shutdown_timeout_s), signals)) {
        std::fprintf(stderr, "main: cancelling the requests still in flight\n");
        if (model) model->stop();  // answers every waiting and running request with a 503
        if (!wait_until(http_done, Clock::now() + kCancelTimeout, signals)) http.abort();
    }
    listener.join();
    if (model) {
        model->stop();
        // How the passes ran (a GPU backend: CUDA graphs replayed, captured, op by op).
        if (const std::string s = model->engine().backend().pass_summary(); !s.empty())
            std::fprintf(stderr, "main: %s\n", s.c_str());
    }
    model.reset();
    return failed ? 1 : 0;
}

}  // namespace

MOESERVE_COMMAND("serve", "OpenAI-compatible HTTP server (llama-server's flags and API)", run_serve);

}  // namespace moeserve::cli
