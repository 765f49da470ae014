// One model ready to run: the mapped file, a backend, the model and its KV
// cache, built from the options every command shares (-m, -t, -c, -np,
// -ctk, -ctv).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "memory/kv_cache.h"
#include "model/model.h"

namespace moeserve {

struct EngineOptions {
    std::string model_path;
    int n_threads = 0;        // 0: all cores
    int64_t n_ctx = 0;        // 0: the model's training context
    int n_seq = 1;            // parallel sequences (slots)
    GgmlType type_k = GgmlType::F16;
    GgmlType type_v = GgmlType::F16;
    int64_t n_ubatch = 512;   // tokens per forward call when evaluating a prompt
};

class Engine {
public:
    explicit Engine(const EngineOptions& options);

    Model& model() { return *model_; }
    KvCache& cache() { return *cache_; }
    const EngineOptions& options() const { return options_; }
    int64_t n_vocab() const { return model_->params().n_vocab; }

    // Appends tokens to a sequence in ubatch-sized chunks. Returns the
    // logits of every token when all_logits, else only of the last one.
    std::vector<float> eval(int seq, std::span<const int32_t> tokens, bool all_logits);

private:
    EngineOptions options_;
    std::shared_ptr<const GgufFile> file_;
    std::shared_ptr<Backend> backend_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<KvCache> cache_;
};

// Parses a cache type name for -ctk/-ctv; throws with the allowed list.
GgmlType parse_cache_type(const std::string& name);

}  // namespace moeserve
