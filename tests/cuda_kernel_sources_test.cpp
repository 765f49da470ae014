// The CUDA backend's kernels and launches follow the rule of
// src/backend/cuda/cuda_launch.cuh, checked in the sources (so on every
// machine, GPU or not): every launch goes through launch_kernel (which adds
// the programmatic-dependent-launch attribute with MOESERVE_CUDA_PDL=1), and
// every __global__ function begins with kernel_prologue(), without which a
// kernel launched early would read its inputs while the previous kernel is
// still writing them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace moeserve {
namespace {

namespace fs = std::filesystem;

// The file's text with comments blanked out and the contents of string and
// character literals blanked (kept as "" and ''), so that neither a "//" or
// "/*" in a literal nor a "<<<" or "__global__" in one counts. Newlines stay
// where they were (line_of). Raw string literals are not handled: the
// backend has none.
std::string code_of(const fs::path& file) {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (s.compare(i, 2, "//") == 0) {
            while (i < s.size() && s[i] != '\n') ++i;
            out += '\n';
        } else if (s.compare(i, 2, "/*") == 0) {
            const size_t end = s.find("*/", i + 2);
            const size_t stop = end == std::string::npos ? s.size() : end + 2;
            out += ' ';
            out.append(static_cast<size_t>(std::count(s.begin() + static_cast<std::ptrdiff_t>(i),
                                                      s.begin() + static_cast<std::ptrdiff_t>(stop), '\n')),
                       '\n');
            i = stop - 1;
        } else if (c == '"' || (c == '\'' && (i == 0 || !std::isalnum(static_cast<unsigned char>(s[i - 1]))))) {
            // A literal (a ' after a letter or digit is a digit separator).
            out += c;
            size_t k = i + 1;
            for (; k < s.size() && s[k] != c && s[k] != '\n'; ++k)
                if (s[k] == '\\') ++k;
            if (k < s.size() && s[k] == c) out += c;
            i = k < s.size() && s[k] == c ? k : k - 1;
        } else {
            out += c;
        }
    }
    return out;
}

std::vector<fs::path> cuda_sources() {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(fs::path(MOESERVE_SOURCE_DIR) / "src" / "backend" / "cuda")) {
        const std::string ext = e.path().extension().string();
        if (ext == ".cu" || ext == ".cuh" || ext == ".h") files.push_back(e.path());
    }
    return files;
}

// Line number of offset i in s.
int line_of(const std::string& s, size_t i) {
    return 1 + static_cast<int>(std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(i), '\n'));
}

TEST(CudaKernelSources, every_kernel_starts_with_the_prologue_and_launches_through_launch_kernel) {
    const auto files = cuda_sources();
    ASSERT_GT(files.size(), 10u) << "the CUDA sources were not found under " << MOESERVE_SOURCE_DIR;
    int kernels = 0;
    for (const fs::path& f : files) {
        const std::string code = code_of(f);
        for (size_t i = code.find("<<<"); i != std::string::npos; i = code.find("<<<", i + 3))
            ADD_FAILURE() << f.filename() << ":" << line_of(code, i) << ": a launch with <<<...>>>; use launch_kernel";
        for (size_t i = code.find("__global__"); i != std::string::npos; i = code.find("__global__", i + 10)) {
            // The body's opening brace: the first '{' outside parentheses (past
            // __launch_bounds__ and the parameters); a ';' first is a declaration.
            int depth = 0;
            size_t k = i;
            for (; k < code.size(); ++k) {
                const char c = code[k];
                if (c == '(') ++depth;
                if (c == ')') --depth;
                if (depth == 0 && (c == '{' || c == ';')) break;
            }
            if (k >= code.size() || code[k] == ';') continue;
            const size_t first = code.find_first_not_of(" \t\r\n", k + 1);
            ++kernels;
            EXPECT_TRUE(first != std::string::npos && code.compare(first, 18, "kernel_prologue();") == 0)
                << f.filename() << ":" << line_of(code, i)
                << ": a kernel whose first statement is not kernel_prologue()";
        }
    }
    EXPECT_GT(kernels, 30) << "fewer kernels than the backend has: the scan is broken";
}

}  // namespace
}  // namespace moeserve
