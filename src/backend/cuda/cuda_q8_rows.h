// Activations in int8 form (Q8Rows), and the int8 forms a norm makes of the
// rows it writes (NormRows). Plain C++, so .cpp files may include it.
#pragma once

#include <cstdint>

#include "quant/ggml_type.h"

namespace moeserve::cuda {

// Activations rounded to q8_K or q8_0 in integer form: the CPU's block_q8_K
// / block_q8_0 numbers in three dense arrays; row r of width n: codes
// q[r*n ..], scales d[r*n/B ..] (B: the act type's block, 256 or 32), sums
// of each 16 codes bsum[r*n/16 ..] (q8_K only). The int8 kernels
// (cuda_matvec_int8.cu, cuda_mmq.cu) read them.
struct Q8Rows {
    int8_t* q = nullptr;
    float* d = nullptr;
    int32_t* bsum = nullptr;
};

// The values per scale of an int8 activation type (Q8_K: 256, Q8_0: 32).
inline int64_t q8_block(GgmlType act) {
    return act == GgmlType::Q8_K ? 256 : 32;
}

// Whether activations of type act, rows of width values, have an int8 form.
inline bool has_int8_form(GgmlType act, int64_t width) {
    return (act == GgmlType::Q8_K || act == GgmlType::Q8_0) && width % 256 == 0;
}

// The rows an RMSNorm wrote together with their int8 forms, both q8_K and
// q8_0, made in the norm's own launch (rms_norm_rounded): the products that
// read those rows next take them instead of launching a rounding of their
// own (a decode step saves a launch per norm). The bytes are the rounding
// kernel's. Valid only until something rewrites the rows: whoever orders
// the ops (cuda_backend.cpp) hands them on to the ops that only read them.
struct NormRows {
    const float* rows = nullptr;  // the norm's output [n_rows, width]; null: none
    int64_t n_rows = 0, width = 0;
    Q8Rows q8k, q80;

    // The int8 form of x ([n, w]) rounded for act, when these are x's rows.
    const Q8Rows* find(const float* x, int64_t n, int64_t w, GgmlType act) const {
        if (!rows || x != rows || n != n_rows || w != width) return nullptr;
        if (act == GgmlType::Q8_K && q8k.q) return &q8k;
        if (act == GgmlType::Q8_0 && q80.q) return &q80;
        return nullptr;
    }
};

}  // namespace moeserve::cuda
