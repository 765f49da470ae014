// Internal: the per-level kernel tables behind vec_dot.h.
#pragma once

#include "quant/ggml_type.h"
#include "quant/vec_dot.h"

namespace moeserve::detail {

// nullptr where a level has no kernel for the type.
VecDotFn vec_dot_scalar_kernel(GgmlType weight_type);
VecDotFn vec_dot_avx2_kernel(GgmlType weight_type);           // defined only when __AVX2__
VecDotFn vec_dot_avx512_kernel(GgmlType weight_type);         // defined only with AVX-512 F/BW/VL
VecDot4Fn vec_dot4_avx2_kernel(GgmlType weight_type);         // defined only when __AVX2__
VecDotRowsFn vec_dot_rows_avx2_kernel(GgmlType weight_type);  // defined only when __AVX2__
VecDot4Fn vec_dot4_avx512_kernel(GgmlType weight_type);       // defined only with AVX-512 F/BW/VL
// Two- and three-row forms of the AVX-512 K-quant and IQ4_XS kernels; nullptr
// for other types or counts. Defined only with AVX-512 F/BW/VL.
VecDotFewFn vec_dot_few_avx512_kernel(GgmlType weight_type, int count);
// The 16-token tile form of the Q8_0 partners' AVX2 kernels (vec_dot_avx512_q8_0.cpp);
// nullptr without VNNI or for other types. Defined only with AVX-512 F/BW/VL.
const VecDotTile* vec_dot_tile_avx512_kernel(GgmlType weight_type, int64_t n);
// The 16-token tile forms of the Q4_K, Q5_K, Q6_K and IQ4_XS kernels (vec_dot_avx512_q8_k_tiles.cpp);
// nullptr for other types. Defined only with AVX-512 F/BW/VL and VNNI.
const VecDotTile* vec_dot_tile_q8_k_avx512_kernel(GgmlType weight_type);
// The weight-rows form of the same AVX2 kernels at 512 bits (two blocks per
// register); nullptr without VNNI or for other types.
VecDotRowsFn vec_dot_rows_avx512_kernel(GgmlType weight_type);
// Its form for 2-3 activation rows at once; nullptr where there is none.
VecDotRowsFewFn vec_dot_rows_few_avx512_kernel(GgmlType weight_type);

}  // namespace moeserve::detail
