// The real `moeserve serve` as a child process for end-to-end tests, and the
// clients that drive it: curl, the Node OpenAI SDK scripts in tests/e2e/server,
// and an SSE splitter. A Server is killed when it goes out of scope.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fixtures.h"
#include "run_command.h"

namespace moeserve::test {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

struct HttpResult {
    int status = 0;
    std::string body;
    std::string headers;
    json json_body() const { return json::parse(body, nullptr, false); }
};

// One request with curl; the body goes through a file, so no shell quoting.
inline HttpResult curl(const std::string& url, const std::string& method = "GET", const std::string& body = "",
                       const std::vector<std::string>& headers = {}) {
    static std::atomic<int> counter = 0;  // tests call curl from several threads at once
    const fs::path dir = fs::temp_directory_path() / "moeserve-tests" / "curl";
    fs::create_directories(dir);
    const std::string stem = (dir / (std::to_string(getpid()) + "-" + std::to_string(counter++))).string();
    std::string cmd = "curl -sS -N --max-time 120 -X " + method + " -D " + shell_quote(stem + ".h") + " -o " +
                      shell_quote(stem + ".b") + " -w '%{http_code}'";
    if (!body.empty()) {
        std::ofstream(stem + ".in", std::ios::binary) << body;
        cmd += " -H 'Content-Type: application/json' --data-binary @" + shell_quote(stem + ".in");
    }
    for (const auto& h : headers) cmd += " -H " + shell_quote(h);
    cmd += " " + shell_quote(url);
    HttpResult r;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[64] = {};
    if (p && fgets(buf, sizeof(buf), p)) r.status = std::atoi(buf);
    if (p) pclose(p);
    r.body = slurp(stem + ".b");
    r.headers = slurp(stem + ".h");
    for (const char* ext : {".b", ".h", ".in"}) fs::remove(stem + ext);
    return r;
}

class Server {
  public:
    explicit Server(std::vector<std::string> args) {
        log_ = (fs::temp_directory_path() / "moeserve-tests" /
                ("server-" + std::to_string(getpid()) + "-" + std::to_string(next_id_++) + ".log"))
                   .string();
        fs::create_directories(fs::path(log_).parent_path());
        // Empty it before the child starts: a log left by an earlier test
        // process with the same pid would otherwise show its old port.
        std::ofstream(log_, std::ios::trunc).close();
        std::vector<std::string> argv = {moeserve_binary(), "serve", "--port", "0"};
        argv.insert(argv.end(), args.begin(), args.end());
        // $MOESERVE_TEST_SERVER_ARGS (e.g. "-ngl 99" on the GPU machine) go to every server.
        if (const char* extra = std::getenv("MOESERVE_TEST_SERVER_ARGS"); extra && *extra) {
            std::istringstream words(extra);
            for (std::string w; words >> w;) argv.push_back(w);
        }
        pid_ = fork();
        if (pid_ == 0) {
            setpgid(0, 0);
            FILE* f = std::fopen(log_.c_str(), "w");
            dup2(fileno(f), 1);
            dup2(fileno(f), 2);
            std::vector<char*> cargv;
            for (auto& a : argv) cargv.push_back(a.data());
            cargv.push_back(nullptr);
            execv(cargv[0], cargv.data());
            _exit(127);
        }
        const std::regex listening("listening on http://([0-9.]+):([0-9]+)");
        for (int i = 0; i < 300 && port_ == 0; ++i) {
            std::smatch m;
            const std::string log = slurp(log_);
            if (std::regex_search(log, m, listening)) port_ = std::stoi(m[2]);
            if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        for (int i = 0; i < 300 && port_ != 0; ++i) {
            if (curl(url("/health")).status == 200) {
                ready_ = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    ~Server() { stop(SIGKILL); }

    // Sends `sig` and returns the exit status (-1 when killed by a signal,
    // or still running after `timeout` and then killed).
    int stop(int sig = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        if (pid_ <= 0) return status_;
        kill(-pid_, sig);
        int raw = 0;
        for (int64_t i = 0; i < timeout.count() / 50; ++i) {
            if (waitpid(pid_, &raw, WNOHANG) == pid_) {
                pid_ = 0;
                status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
                return status_;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        kill(-pid_, SIGKILL);
        waitpid(pid_, &raw, 0);
        pid_ = 0;
        return status_ = -1;
    }

    // Sends `sig` without waiting (see stop()).
    void signal(int sig) const {
        if (pid_ > 0) kill(pid_, sig);
    }
    pid_t pid() const { return pid_; }
    bool ready() const { return ready_; }
    std::string url(const std::string& path = "") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    std::string log() const { return slurp(log_); }
    // The log once it holds `text`, or after `timeout`: the server writes a
    // request's timing lines after it has sent the answer.
    std::string log_with(const std::string& text,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const {
        const auto end = std::chrono::steady_clock::now() + timeout;
        std::string s = log();
        while (s.find(text) == std::string::npos && std::chrono::steady_clock::now() < end) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            s = log();
        }
        return s;
    }

  private:
    static inline int next_id_ = 0;
    pid_t pid_ = -1;
    int port_ = 0;
    bool ready_ = false;
    int status_ = -1;
    std::string log_;
};

// SSE events of a stream body, in order ("[DONE]" included as a string).
inline std::vector<std::string> sse_payloads(const std::string& body) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t end = body.find("\n\n", pos);
        if (end == std::string::npos) end = body.size();
        std::string ev = body.substr(pos, end - pos);
        if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
        pos = end + 2;
    }
    return out;
}

// Whether `npm ci` installed the end-to-end clients (the package named).
// The named events of a stream body ("event: NAME" + "data: JSON", as the
// Anthropic and Responses APIs send them): (name, data) in order.
inline std::vector<std::pair<std::string, json>> sse_events(const std::string& body) {
    std::vector<std::pair<std::string, json>> out;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t end = body.find("\n\n", pos);
        if (end == std::string::npos) end = body.size();
        const std::string ev = body.substr(pos, end - pos);
        pos = end + 2;
        if (ev.rfind("event: ", 0) != 0) continue;
        const size_t nl = ev.find('\n');
        const std::string data = nl == std::string::npos ? "" : ev.substr(nl + 1);
        out.emplace_back(ev.substr(7, nl - 7),
                         data.rfind("data: ", 0) == 0 ? json::parse(data.substr(6), nullptr, false) : json());
    }
    return out;
}

inline bool have_node_modules(const std::string& package = "openai") {
    return fs::exists(fs::path(MOESERVE_SOURCE_DIR) / "tests/e2e/server/node_modules" / package);
}

inline int run_node(const std::string& script, const std::vector<std::string>& args, std::string& output) {
    std::string cmd =
        "cd " + shell_quote(std::string(MOESERVE_SOURCE_DIR) + "/tests/e2e/server") + " && timeout 600 node " + script;
    for (const auto& a : args) cmd += " " + shell_quote(a);
    cmd += " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    while (p && fgets(buf, sizeof(buf), p)) output += buf;
    const int raw = p ? pclose(p) : -1;
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

// A test suite that shares one server, started before its first test and
// killed after its last:
//   class MySuite : public test::SharedServerTest<MySuite> {
//     public:
//       static std::vector<std::string> server_args() { return {"-m", ...}; }
//   };
// Each test skips without the fixtures and fails if the server did not start.
template <class Suite>
class SharedServerTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (have_fixtures()) server_ = new Server(Suite::server_args());
    }
    static void TearDownTestSuite() {
        delete server_;
        server_ = nullptr;
    }
    void SetUp() override {
        MOESERVE_REQUIRE_FIXTURES();
        ASSERT_TRUE(server_ && server_->ready()) << (server_ ? server_->log() : "");
    }
    static inline Server* server_ = nullptr;
};

}  // namespace moeserve::test
