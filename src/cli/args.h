// A small argument reader shared by the subcommands: flags with values,
// switches and positionals, with errors that name the flag.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace moeserve::cli {

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Args {
  public:
    explicit Args(const std::vector<std::string>& args) : args_(args) {}

    bool done() const { return i_ >= args_.size(); }
    const std::string& peek() const { return args_[i_]; }
    // True (and consumed) when the next argument is one of the names.
    bool flag(std::initializer_list<const char*> names);
    // The value after the flag just matched by flag(); throws when missing.
    std::string value();
    int64_t int_value();
    // An integer in [min, max]; the error names the flag and the range.
    int64_t int_value(int64_t min, int64_t max);
    // A comma-separated list of at least one item.
    std::vector<std::string> list_value();
    double float_value();
    std::string next() { return args_[i_++]; }
    // The flag flag() matched last (for messages about its value).
    const std::string& last_flag() const { return last_flag_; }

  private:
    const std::vector<std::string>& args_;
    size_t i_ = 0;
    std::string last_flag_;
};

}  // namespace moeserve::cli
