// Subcommands of the moeserve executable. Each lives in its own file in
// src/cli/ and registers itself with MOESERVE_COMMAND; main() dispatches.
#pragma once

#include <string>
#include <vector>

namespace moeserve::cli {

// args excludes the program and subcommand names. Returns the exit status.
using CommandFn = int (*)(const std::vector<std::string>& args);

struct Command {
    const char* name;
    const char* summary;  // one line for `moeserve --help`
    CommandFn run;
};

// Registration happens during static initialisation.
bool register_command(const Command& command);
const std::vector<Command>& commands();

}  // namespace moeserve::cli

#define MOESERVE_CONCAT_INNER(a, b) a##b
#define MOESERVE_CONCAT(a, b) MOESERVE_CONCAT_INNER(a, b)
#define MOESERVE_COMMAND(name, summary, fn)                                                           \
    static const bool MOESERVE_CONCAT(moeserve_command_registered_, __LINE__) [[maybe_unused]] = \
        ::moeserve::cli::register_command({name, summary, fn})
