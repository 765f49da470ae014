// The packed 6-bit sub-block scales and mins of Q4_K/Q5_K super-blocks.
#pragma once

#include <cstdint>
#include <cstring>

namespace moeserve::detail {

// The 12 scale bytes as bytes: sc[0..7] then m[0..7] (spec §2.10).
inline void unpack_k4_scales(const uint8_t* s, uint8_t out[16]) {
    uint32_t u[3];
    std::memcpy(u, s, 12);
    const uint32_t sc03 = u[0] & 0x3f3f3f3f;
    const uint32_t m03 = u[1] & 0x3f3f3f3f;
    const uint32_t sc47 = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
    const uint32_t m47 = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
    const uint32_t packed[4] = {sc03, sc47, m03, m47};
    std::memcpy(out, packed, 16);
}

}  // namespace moeserve::detail
