// moeserve: dispatches to the subcommand named by the first argument.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"

namespace moeserve::cli {

std::vector<Command>& command_table() {
    static std::vector<Command> table;
    return table;
}

bool register_command(const Command& command) {
    command_table().push_back(command);
    return true;
}

const std::vector<Command>& commands() {
    return command_table();
}

}  // namespace moeserve::cli

namespace {

void print_usage(FILE* out) {
    std::fprintf(out, "usage: moeserve <command> [options]\n\ncommands:\n");
    auto table = moeserve::cli::commands();
    std::sort(table.begin(), table.end(), [](const auto& a, const auto& b) { return std::strcmp(a.name, b.name) < 0; });
    for (const auto& c : table) std::fprintf(out, "  %-16s %s\n", c.name, c.summary);
    std::fprintf(out, "\nrun 'moeserve <command> --help' for the options of a command\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    std::string name = argv[1];
    if (name == "-h" || name == "--help" || name == "help") {
        print_usage(stdout);
        return 0;
    }
    for (const auto& c : moeserve::cli::commands()) {
        if (name != c.name) continue;
        std::vector<std::string> args(argv + 2, argv + argc);
        try {
            return c.run(args);
        } catch (const moeserve::cli::UsageError& e) {
            std::fprintf(stderr, "moeserve %s: %s\n", c.name, e.what());
            return 2;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "moeserve %s: error: %s\n", c.name, e.what());
            return 1;
        }
    }
    std::fprintf(stderr, "moeserve: unknown command '%s'\n\n", name.c_str());
    print_usage(stderr);
    return 2;
}
