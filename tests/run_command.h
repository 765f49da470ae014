// Runs the built moeserve executable (or any command) for CLI tests and
// captures its exit status, stdout and stderr.
#pragma once

#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fixtures.h"

namespace moeserve::test {

struct CommandResult {
    int status = -1;  // exit status, or -1 when killed by a signal
    std::string out;
    std::string err;
};

inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') q.append("'\\''");
        else q.push_back(c);
    }
    q.push_back('\'');
    return q;
}

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The moeserve binary under test: $MOESERVE_BIN (a bundle run on another
// machine, scripts/gpu-check.sh), else the one this build made.
inline std::string moeserve_binary() {
    if (const char* env = std::getenv("MOESERVE_BIN"); env && *env) return env;
    return MOESERVE_BINARY;
}

// Runs `moeserve args...` with stdin from /dev/null (or from stdin_file).
inline CommandResult run_moeserve(const std::vector<std::string>& args, const std::string& stdin_file = "/dev/null") {
    // Output goes to a fresh temporary directory (not scratch_dir(), which the
    // test may be using for its own files).
    std::string tmpl = (std::filesystem::temp_directory_path() / "moeserve-cmd-XXXXXX").string();
    std::filesystem::path dir = ::mkdtemp(tmpl.data());
    std::ostringstream cmd;
    cmd << shell_quote(moeserve_binary());
    for (const auto& a : args) cmd << ' ' << shell_quote(a);
    cmd << " <" << shell_quote(stdin_file) << " >" << shell_quote((dir / "out").string()) << " 2>"
        << shell_quote((dir / "err").string());
    int raw = std::system(cmd.str().c_str());
    CommandResult r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(dir / "out");
    r.err = slurp(dir / "err");
    std::filesystem::remove_all(dir);
    return r;
}

}  // namespace moeserve::test
