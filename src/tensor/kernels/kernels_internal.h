// Private to src/tensor/kernels: the per-ISA table getters and small scalar helpers shared by the
// scalar and SIMD implementations (plain C++, no intrinsics). The helpers are `static inline`
// on purpose: each translation unit, compiled with its own -m flags, keeps its own copy, so the
// linker can never pick an AVX-512 copy of a helper for the scalar path.
#pragma once

#include <cstdint>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/kernels/kernels.h"

namespace realm::tensor::kernels_internal {

// Each returns its ISA's table, or nullptr when that ISA is not compiled into this build.
const KernelTable* scalar_table();
const KernelTable* avx2_table();
const KernelTable* avx512_table();

static inline constexpr int id(GgmlType t) {
  return static_cast<int>(t);
}

// The 8 scales and 8 mins (6 bits each) of a Q4_K/Q5_K block, unpacked into bytes:
// out[0..7] = scales, out[8..15] = mins.
// As four little-endian words (scales 0..3, 4..7, mins 0..3, 4..7).
static inline void unpack_k4_scale_words(const uint8_t* packed, uint32_t s[4]) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
  s[0] = w[0] & lo6;
  s[1] = (w[2] & lo4) | (((w[0] >> 6) & lo2) << 4);
  s[2] = w[1] & lo6;
  s[3] = ((w[2] >> 4) & lo4) | (((w[1] >> 6) & lo2) << 4);
}
static inline void unpack_k4_scales(const uint8_t* packed, uint8_t out[16]) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
  const uint32_t s[4] = {
      w[0] & lo6,                                        // scales 0..3
      (w[2] & lo4) | (((w[0] >> 6) & lo2) << 4),         // scales 4..7
      w[1] & lo6,                                        // mins 0..3
      ((w[2] >> 4) & lo4) | (((w[1] >> 6) & lo2) << 4),  // mins 4..7
  };
  std::memcpy(out, s, 16);
}

// The 16 scales of a Q3_K block, unpacked into bytes as 6-bit values (the scale is the value
// minus 32). Low 4 bits: scales 0..7 in the low nibbles of bytes 0..7, scales 8..15 in their high
// nibbles; high 2 bits: scale j in bits 2 * (j / 4) of byte 8 + j % 4.
// As four little-endian words (SIMD code builds a register from them without a memory round trip).
static inline void unpack_q3k_scale_words(const uint8_t* packed, uint32_t s[4]) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
  s[0] = (w[0] & lo4) | ((w[2] & lo2) << 4);                // scales 0..3
  s[1] = (w[1] & lo4) | (((w[2] >> 2) & lo2) << 4);         // scales 4..7
  s[2] = ((w[0] >> 4) & lo4) | (((w[2] >> 4) & lo2) << 4);  // scales 8..11
  s[3] = ((w[1] >> 4) & lo4) | (((w[2] >> 6) & lo2) << 4);  // scales 12..15
}
static inline void unpack_q3k_scales_biased(const uint8_t* packed, uint8_t out[16]) {
  uint32_t s[4];
  unpack_q3k_scale_words(packed, s);
  std::memcpy(out, s, 16);
}

// The 16 signed scales (-32..31) of a Q3_K block.
static inline void unpack_q3k_scales(const uint8_t* packed, int8_t out[16]) {
  uint8_t biased[16];
  unpack_q3k_scales_biased(packed, biased);
  for (int j = 0; j < 16; ++j) out[j] = static_cast<int8_t>(biased[j] - 32);
}

}  // namespace realm::tensor::kernels_internal
