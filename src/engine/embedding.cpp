#include "engine/embedding.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace moeserve {

HiddenStateSource model_hidden_states(Model& model) {
    return
        [&model](const Batch& batch, KvCache& cache) { return model.forward(batch, cache, ForwardOutput::embeddings); };
}

const char* pooling_name(Pooling p) {
    switch (p) {
        case Pooling::mean:
            return "mean";
        case Pooling::cls:
            return "cls";
        case Pooling::last:
            return "last";
        case Pooling::none:
            break;
    }
    return "none";
}

std::optional<Pooling> parse_pooling(const std::string& name) {
    for (Pooling p : {Pooling::none, Pooling::mean, Pooling::cls, Pooling::last})
        if (name == pooling_name(p)) return p;
    return std::nullopt;
}

std::optional<Pooling> pooling_from_gguf(uint32_t value) {
    switch (value) {
        case 0:
            return Pooling::none;
        case 1:
            return Pooling::mean;
        case 2:
            return Pooling::cls;
        case 3:
            return Pooling::last;
        default:
            return std::nullopt;  // 4 = rank (reranking models)
    }
}

void normalize_embedding(std::span<float> v, int embd_normalize) {
    double sum = 0.0;
    if (embd_normalize == -1) {
        return;
    } else if (embd_normalize == 0) {
        for (float x : v) sum = std::max(sum, static_cast<double>(std::fabs(x)));
        sum /= 32760.0;
    } else if (embd_normalize == 2) {
        for (float x : v) sum += static_cast<double>(x) * x;
        sum = std::sqrt(sum);
    } else {
        for (float x : v) sum += std::pow(std::fabs(static_cast<double>(x)), embd_normalize);
        sum = std::pow(sum, 1.0 / embd_normalize);
    }
    const double scale = sum > 0.0 ? 1.0 / sum : 0.0;
    for (float& x : v) x = static_cast<float>(x * scale);
}

EmbeddingPooler::EmbeddingPooler(Pooling pooling, int64_t n_prompt, int64_t n_embd)
    : pooling_(pooling), n_prompt_(n_prompt), n_embd_(n_embd) {
    if (pooling_ != Pooling::none) sum_.assign(static_cast<size_t>(n_embd), 0.0);
}

bool EmbeddingPooler::wants(int64_t i) const {
    switch (pooling_) {
        case Pooling::cls:
            return i == 0;
        case Pooling::last:
            return i == n_prompt_ - 1;
        case Pooling::none:
        case Pooling::mean:
            break;
    }
    return true;
}

void EmbeddingPooler::add(std::span<const float> row) {
    if (static_cast<int64_t>(row.size()) != n_embd_)
        throw std::logic_error("EmbeddingPooler: a hidden state of the wrong width");
    ++n_added_;
    if (pooling_ == Pooling::none) {
        rows_.emplace_back(row.begin(), row.end());
        return;
    }
    if (pooling_ == Pooling::mean) {
        for (size_t j = 0; j < row.size(); ++j) sum_[j] += row[j];
    } else {
        std::copy(row.begin(), row.end(), sum_.begin());
    }
}

std::vector<std::vector<float>> EmbeddingPooler::result(int embd_normalize) const {
    if (pooling_ == Pooling::none) return rows_;
    const double div = pooling_ == Pooling::mean ? static_cast<double>(std::max<int64_t>(1, n_added_)) : 1.0;
    std::vector<float> v(sum_.size());
    for (size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>(sum_[j] / div);
    normalize_embedding(v, embd_normalize);
    return {std::move(v)};
}

}  // namespace moeserve
