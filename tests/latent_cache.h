// The one-layer cache the MLA kernel tests attend over: latent rows only (K
// of `width` values per token, no V), never Hadamard-rotated, as a deepseek2
// model's cache is.
#pragma once

#include "memory/kv_cache.h"

namespace moeserve::test {

inline KvCacheConfig latent_cache_config(GgmlType type, int width, int64_t n_cells, int n_seq) {
    KvCacheConfig cfg;
    cfg.n_cells = n_cells;
    cfg.n_seq_max = n_seq;
    cfg.type_k = cfg.type_v = type;
    cfg.n_embd_k = {width};
    cfg.n_embd_v = {0};
    cfg.head_dim_k = width;
    cfg.allow_rotation = false;
    return cfg;
}

}  // namespace moeserve::test
