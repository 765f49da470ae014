// Asynchronous global -> shared copies (cp.async, sm_80 and later) for the
// attention forms that stage K and V rows in shared memory
// (cuda_attention_tile.cu, cuda_attention_fa2.cu): a thread issues copies,
// commits them as a group, and waits by groups, so the next tile's copies
// can fly while the current tile is worked on. Internal to src/backend/cuda.
#pragma once

#include <cuda_runtime.h>

namespace moeserve::cuda {

// One copy of 16, 8 or 4 bytes (dst and src aligned to it).
__device__ __forceinline__ void cp_async(void* dst, const void* src, int bytes) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    if (bytes == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src) : "memory");
    else if (bytes == 8)
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(src) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(src) : "memory");
}

// The copies issued since the last commit become one group.
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are in flight
// (a block barrier then makes every thread's landed copies visible).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace moeserve::cuda
