// moeserve serve: llama-server's command line and HTTP API over the engine.
// The listener comes up first (every route answers 503 "Loading model"),
// then the model loads; SIGINT/SIGTERM stop it cleanly: waiting requests get
// a 503, the scheduler's thread ends, the listener closes.
#include <fmt/format.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "cli/args.h"
#include "cli/command.h"
#include "server/http_server.h"
#include "server/served_model.h"
#include "server/server_options.h"

namespace moeserve::cli {
namespace {

int run_serve(const std::vector<std::string>& argv) {
    ServerOptions opt;
    try {
        opt = parse_server_args(argv, [](const char* name) { return std::getenv(name); });
    } catch (const ServerFlagError& e) {
        throw UsageError(e.what());
    }
    if (opt.help) {
        std::fputs(server_help().c_str(), stdout);
        return 0;
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
    std::thread listener([&] { http.run(); });
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
    if (sig == SIGUSR1 && model) {
        http.set_model(model);
        std::fprintf(stderr, "main: model loaded\nmain: listening on http://%s:%d\n", opt.host.c_str(), port);
        sigdelset(&signals, SIGUSR1);
        sigwait(&signals, &sig);
    }
    const bool failed = !model;
    std::fprintf(stderr, "main: %s, shutting down\n",
                 failed ? "no model" : (sig == SIGINT ? "interrupted" : "terminated"));
    if (model) model->stop();  // answers every waiting request, so the HTTP workers can finish
    http.stop();
    listener.join();
    model.reset();
    return failed ? 1 : 0;
}

}  // namespace

MOESERVE_COMMAND("serve", "OpenAI-compatible HTTP server (llama-server's flags and API)", run_serve);

}  // namespace moeserve::cli
