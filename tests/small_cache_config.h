// A small KV cache configuration for tests without a model: 64 cells, layer 0
// without K/V (recurrent, when asked), layer 1 with 128-wide K and V rows.
#pragma once

#include "memory/kv_cache.h"

namespace moeserve::test {

inline KvCacheConfig small_cache_config(int n_seq, bool recurrent, int n_snapshots = KvCacheConfig{}.n_rs_snapshots) {
    KvCacheConfig c;
    c.n_cells = 64;
    c.n_seq_max = n_seq;
    c.n_embd_k = {0, 128};
    c.n_embd_v = {0, 128};
    c.head_dim_k = c.head_dim_v = 64;
    if (recurrent) {
        c.n_embd_r = {3 * 10, 0};
        c.n_embd_s = {4 * 8, 0};
    }
    c.n_rs_snapshots = n_snapshots;
    return c;
}

}  // namespace moeserve::test
