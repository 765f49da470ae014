#include "model/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace moeserve {
namespace {

std::map<std::string, ModelLoader>& registry() {
    static std::map<std::string, ModelLoader> r;
    return r;
}

}  // namespace

bool register_architecture(const std::string& arch, ModelLoader loader) {
    registry()[arch] = std::move(loader);
    return true;
}

std::vector<std::string> supported_architectures() {
    std::vector<std::string> out;
    for (const auto& [name, _] : registry()) out.push_back(name);
    return out;
}

std::unique_ptr<Model> load_model(std::shared_ptr<const GgufFile> file, std::shared_ptr<Backend> backend,
                                  const RopeOverrides& rope) {
    const std::string arch = file->architecture();
    auto it = registry().find(arch);
    if (it == registry().end()) {
        std::string list;
        for (const auto& a : supported_architectures()) list += (list.empty() ? "" : ", ") + a;
        throw GgufError(
            fmt::format("{}: architecture '{}' is not supported (supported: {})", file->path(), arch, list));
    }
    if (file->header_only())
        throw GgufError(
            fmt::format("{}: is a header-only file (written by synth --header-only): it has no weights to "
                        "run; use it with inspect or plan",
                        file->path()));
    Backend& be = *backend;
    const GgufFile& f = *file;
    std::unique_ptr<Model> model = it->second(std::move(file), std::move(backend), rope);
    be.load_weights(f, {});  // after binding: every tensor was checked by name and shape
    return model;
}

KvCacheConfig Model::kv_cache_config(int64_t n_cells, int n_seq, GgmlType type_k, GgmlType type_v) const {
    KvCacheConfig c;
    c.n_cells = n_cells;
    c.n_seq_max = n_seq;
    c.type_k = type_k;
    c.type_v = type_v;
    c.head_dim_k = params_.head_dim_k;
    c.head_dim_v = params_.head_dim_v;
    for (int l = 0; l < params_.n_layer; ++l) {
        c.n_embd_k.push_back(static_cast<int64_t>(params_.n_head_kv[l]) * params_.head_dim_k);
        c.n_embd_v.push_back(static_cast<int64_t>(params_.n_head_kv[l]) * params_.head_dim_v);
    }
    return c;
}

std::string Model::context_shift_refusal() const {
    return fmt::format("the {} architecture's cache cannot drop tokens from the middle of a sequence",
                       file_->architecture());
}

std::string Model::rope_keys_shift_refusal() const {
    if (params_.rope.ext_factor != 0.0f || params_.rope.attn_factor != 1.0f)
        return "this model uses YaRN RoPE scaling, whose cached keys moeserve does not re-rotate";
    return "";
}

void Model::shift_context(KvCache& cache, int seq, int64_t first, int64_t n) {
    if (const std::string why = context_shift_refusal(); !why.empty()) throw std::runtime_error(why);
    if (n <= 0) return;
    const std::span<const int32_t> cells = cache.seq_cells(seq);
    if (first < 0 || first + n > static_cast<int64_t>(cells.size()))
        throw std::out_of_range("shift_context: tokens past the end of the sequence");
    if (cache.shares_from(seq, first))
        throw std::runtime_error("shift_context: the tokens are shared with another sequence");
    const std::vector<int32_t> moved(cells.begin() + first + n, cells.end());
    for (int l = 0; l < params_.n_layer; ++l)
        if (params_.n_head_kv[l] > 0 && !moved.empty())
            backend_->shift_keys(cache, l, moved, static_cast<int>(params_.n_head_kv[l]), params_.head_dim_k,
                                 static_cast<int32_t>(-n), params_.rope);
    cache.discard(seq, first, n);
}

std::vector<float> Model::forward(const Batch& batch, KvCache& cache, ForwardOutput output) {
    const size_t n = batch.size();
    if (n == 0) return {};
    if (batch.positions.size() != n || batch.seq_ids.size() != n || batch.want_logits.size() != n)
        throw std::invalid_argument("batch arrays differ in length");

    // Validate everything before touching the cache.
    std::map<int32_t, int64_t> next_pos;  // per sequence in this batch
    for (size_t i = 0; i < n; ++i) {
        const int32_t tok = batch.tokens[i], seq = batch.seq_ids[i];
        if (tok < 0 || tok >= params_.n_vocab)
            throw std::invalid_argument(
                fmt::format("token id {} is out of range (vocabulary of {})", tok, params_.n_vocab));
        if (seq < 0 || seq >= cache.config().n_seq_max)
            throw std::invalid_argument(
                fmt::format("sequence id {} is out of range (0..{})", seq, cache.config().n_seq_max - 1));
        auto [it, fresh] = next_pos.emplace(seq, cache.seq_length(seq));
        if (batch.positions[i] != it->second)
            throw std::invalid_argument(
                fmt::format("token {} of the batch has position {}, but sequence {} continues at {}", i,
                            batch.positions[i], seq, it->second));
        ++it->second;
    }
    int64_t needed = static_cast<int64_t>(n);
    if (needed > cache.n_free())
        throw std::runtime_error(fmt::format("KV cache is full: the batch needs {} cells, {} of {} are free", needed,
                                             cache.n_free(), cache.n_cells()));

    std::vector<int32_t> cells(n);
    for (size_t i = 0; i < n; ++i) cells[i] = cache.append(batch.seq_ids[i], 1)[0];
    // Take pointers only after every append: appends may move a sequence's cell list.
    std::vector<const int32_t*> row_ptrs(n);
    std::vector<int32_t> row_counts(n);
    for (size_t i = 0; i < n; ++i) {
        row_ptrs[i] = cache.seq_cells(batch.seq_ids[i]).data();
        row_counts[i] = batch.positions[i] + 1;  // causal: positions 0..p of its own sequence
    }
    BatchView view;
    view.tokens = batch.tokens;
    view.positions = batch.positions;
    view.seq_ids = batch.seq_ids;
    view.cells = cells;
    view.rows.cells = row_ptrs;
    view.rows.n_cells = row_counts;
    for (size_t i = 0; i < n; ++i)
        if (batch.want_logits[i]) view.out_rows.push_back(static_cast<int64_t>(i));

    view.output = output;
    const int64_t row = output == ForwardOutput::embeddings ? params_.n_embd : params_.n_vocab;
    std::vector<float> logits(view.out_rows.size() * row);
    try {
        backend_->run_pass({view.tokens, view.positions, view.seq_ids, view.cells, view.rows},
                           [&] { forward_batch(view, cache, logits.data()); });
    } catch (...) {
        // Leave the cache as it was before the batch. A recurrent state the
        // pass may have advanced cannot be rewound: such sequences restart
        // empty unless a snapshot marks where the batch began.
        std::map<int32_t, int32_t> first_pos;  // per sequence: where the batch began
        for (size_t i = 0; i < n; ++i) first_pos.emplace(batch.seq_ids[i], batch.positions[i]);
        for (const auto& [seq, pos] : first_pos) cache.truncate(seq, cache.can_truncate(seq, pos) ? pos : 0);
        throw;
    }
    return logits;
}

}  // namespace moeserve
