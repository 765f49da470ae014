// std::vector whose data starts on a 64-byte cache line. The CPU kernels load
// whole 64-byte vectors from their scratch buffers (packed queries, f32 rows,
// score rows); from malloc's 16-byte alignment every such load straddles two
// lines, which cost the f16 attention scores a third more time per cell, and
// which run of a process got which alignment was luck.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace moeserve {

template <typename T>
struct CacheLineAllocator {
    using value_type = T;
    static constexpr std::align_val_t kAlign{64};

    CacheLineAllocator() = default;
    template <typename U>
    CacheLineAllocator(const CacheLineAllocator<U>&) {}

    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
    void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }

    template <typename U>
    bool operator==(const CacheLineAllocator<U>&) const {
        return true;
    }
};

template <typename T>
using CacheLineVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace moeserve
