#include "engine/engine.h"

#include <fmt/format.h>

#include <thread>

namespace moeserve {

GgmlType parse_cache_type(const std::string& name) {
    auto t = ggml_type_from_name(name);
    if (!t || !is_kv_cache_type(*t))
        throw std::invalid_argument(fmt::format(
            "unsupported cache type '{}' (allowed: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)", name));
    return *t;
}

Engine::Engine(const EngineOptions& options) : options_(options) {
    file_ = std::make_shared<GgufFile>(GgufFile::open(options.model_path));
    int threads = options.n_threads > 0 ? options.n_threads : static_cast<int>(std::thread::hardware_concurrency());
    backend_ = make_cpu_backend(std::max(1, threads));
    model_ = load_model(file_, backend_);
    int64_t n_ctx = options.n_ctx > 0 ? options.n_ctx : model_->params().n_ctx_train;
    cache_ = std::make_unique<KvCache>(
        model_->kv_cache_config(n_ctx, std::max(1, options.n_seq), options.type_k, options.type_v));
}

std::vector<float> Engine::eval(int seq, std::span<const int32_t> tokens, bool all_logits) {
    std::vector<float> out;
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t chunk = std::max<int64_t>(1, options_.n_ubatch);
    for (int64_t b = 0; b < n; b += chunk) {
        const int64_t e = std::min(n, b + chunk);
        Batch batch;
        const int64_t start = cache_->seq_length(seq);
        for (int64_t i = b; i < e; ++i)
            batch.add(tokens[i], static_cast<int32_t>(start + i - b), seq, all_logits || i == n - 1);
        std::vector<float> logits = model_->forward(batch, *cache_);
        out.insert(out.end(), logits.begin(), logits.end());
    }
    return out;
}

}  // namespace moeserve
