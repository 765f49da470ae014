// The x86 intrinsics the CPU kernels use, and the one warning they bring:
// GCC 12's AVX-512 headers build masked intrinsics from _mm512_undefined_*,
// which its flow analysis reports as uninitialized (a false positive). A
// kernel file that includes this header has that warning off.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
