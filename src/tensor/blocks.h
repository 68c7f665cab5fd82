// Block structs of the quantized ggml types, packed exactly as stored in GGUF, and scalar
// fp16/bf16 <-> f32 conversions bit-exact with ggml (round to nearest even). Plain C++, no
// intrinsics: both the type table and the per-ISA kernels include this header.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "gguf/types.h"

namespace realm::tensor {

// Elements per block of the legacy types (Q4_0 ... Q8_1) and of the K types.
inline constexpr int kQK = 32;
inline constexpr int kQKK = 256;
// Bytes of the packed 6-bit scales/mins of Q3_K, Q4_K and Q5_K.
inline constexpr int kKScaleSize = 12;

// IEEE half and bfloat16 as raw bits (the GGUF storage format).
using Fp16 = uint16_t;
using Bf16 = uint16_t;

// ---- fp16 / bf16 conversions ----------------------------------------------------------------

// fp16 -> f32, exact for every input (subnormals, infinities; NaNs keep their payload).
inline float fp16_to_f32(Fp16 h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: value = mant * 2^-24; normalize into an f32.
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400u) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// f32 -> fp16 with round-to-nearest-even, overflow to infinity, gradual underflow; NaN becomes
// the quiet NaN 0x7e00 with the input's sign (ggml's scalar conversion does the same).
inline Fp16 f32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<Fp16>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<Fp16>(sign | 0x7c00u);  // rounds to >= 65536: inf
  if (abs >= 0x38800000u) {
    // Normal half range: rebias the exponent and round the 13 dropped mantissa bits.
    const uint32_t v = abs - 0x38000000u;  // exponent bias 127 -> 15
    const uint32_t round = 0xfffu + ((v >> 13) & 1u);
    return static_cast<Fp16>(sign | ((v + round) >> 13));
  }
  if (abs < 0x33000000u) return static_cast<Fp16>(sign);  // below half the smallest subnormal
  // Subnormal half: mantissa (with its implicit 1) shifted right by 14 + (113 - exp) bits.
  const uint32_t exp = abs >> 23;
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // 14..24
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<Fp16>(sign | q);
}

inline float bf16_to_f32(Bf16 h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

// f32 -> bf16 with round-to-nearest-even; NaN stays NaN (quiet bit forced), as ggml does.
inline Bf16 f32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<Bf16>((x >> 16) | 64u);
  return static_cast<Bf16>((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

// ---- legacy blocks (32 elements) ----------------------------------------------------------

// x = d * (q - 8), q in [0, 15]; qs[j] holds element j (low nibble) and j + 16 (high nibble).
struct BlockQ4_0 {
  Fp16 d;
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in [0, 15]; nibbles as Q4_0.
struct BlockQ4_1 {
  Fp16 d;
  Fp16 m;
  uint8_t qs[kQK / 2];
};
// x = d * (q - 16), q in [0, 31]; low 4 bits as Q4_0, bit 4 of element j is bit j of qh (LE).
struct BlockQ5_0 {
  Fp16 d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in [0, 31]; bits as Q5_0.
struct BlockQ5_1 {
  Fp16 d;
  Fp16 m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q.
struct BlockQ8_0 {
  Fp16 d;
  int8_t qs[kQK];
};
// Activation type paired with Q4_1/Q5_1: x = d * q; s = d * sum(q) (stored as fp16).
struct BlockQ8_1 {
  Fp16 d;
  Fp16 s;
  int8_t qs[kQK];
};

// ---- K blocks (256 elements, 16 or 8 sub-blocks) -------------------------------------------

// 16 sub-blocks of 16: x = d * sc * q - dmin * m, sc/m 4-bit (scales[i] = sc | m << 4), q 2-bit.
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  Fp16 d;
  Fp16 dmin;
};
// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4 * !hbit), sc 6-bit packed in 12 bytes,
// q 2 low bits in qs plus a high bit in hmask.
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[kKScaleSize];
  Fp16 d;
};
// 8 sub-blocks of 32: x = d * sc * q - dmin * m, sc/m 6-bit packed in 12 bytes, q 4-bit.
struct BlockQ4_K {
  Fp16 d;
  Fp16 dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQKK / 2];
};
// As Q4_K with a fifth bit per element in qh.
struct BlockQ5_K {
  Fp16 d;
  Fp16 dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
// 16 sub-blocks of 16: x = d * sc * (q - 32), sc int8, q 6-bit (4 low bits in ql, 2 in qh).
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  Fp16 d;
};
// Activation type paired with the K types: x = d * q; bsums[i] = sum of qs[16 i .. 16 i + 15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};

namespace detail {
constexpr bool layout_matches(gguf::GgmlType t, uint32_t block, uint32_t bytes) {
  // Mirrors gguf::type_layout (kept constexpr here so a mismatch is a compile error).
  switch (t) {
    case gguf::GgmlType::Q4_0:
      return block == 32 && bytes == 18;
    case gguf::GgmlType::Q4_1:
      return block == 32 && bytes == 20;
    case gguf::GgmlType::Q5_0:
      return block == 32 && bytes == 22;
    case gguf::GgmlType::Q5_1:
      return block == 32 && bytes == 24;
    case gguf::GgmlType::Q8_0:
      return block == 32 && bytes == 34;
    case gguf::GgmlType::Q8_1:
      return block == 32 && bytes == 36;
    case gguf::GgmlType::Q2_K:
      return block == 256 && bytes == 84;
    case gguf::GgmlType::Q3_K:
      return block == 256 && bytes == 110;
    case gguf::GgmlType::Q4_K:
      return block == 256 && bytes == 144;
    case gguf::GgmlType::Q5_K:
      return block == 256 && bytes == 176;
    case gguf::GgmlType::Q6_K:
      return block == 256 && bytes == 210;
    case gguf::GgmlType::Q8_K:
      return block == 256 && bytes == 292;
    default:
      return false;
  }
}
}  // namespace detail

static_assert(detail::layout_matches(gguf::GgmlType::Q4_0, kQK, sizeof(BlockQ4_0)));
static_assert(detail::layout_matches(gguf::GgmlType::Q4_1, kQK, sizeof(BlockQ4_1)));
static_assert(detail::layout_matches(gguf::GgmlType::Q5_0, kQK, sizeof(BlockQ5_0)));
static_assert(detail::layout_matches(gguf::GgmlType::Q5_1, kQK, sizeof(BlockQ5_1)));
static_assert(detail::layout_matches(gguf::GgmlType::Q8_0, kQK, sizeof(BlockQ8_0)));
static_assert(detail::layout_matches(gguf::GgmlType::Q8_1, kQK, sizeof(BlockQ8_1)));
static_assert(detail::layout_matches(gguf::GgmlType::Q2_K, kQKK, sizeof(BlockQ2_K)));
static_assert(detail::layout_matches(gguf::GgmlType::Q3_K, kQKK, sizeof(BlockQ3_K)));
static_assert(detail::layout_matches(gguf::GgmlType::Q4_K, kQKK, sizeof(BlockQ4_K)));
static_assert(detail::layout_matches(gguf::GgmlType::Q5_K, kQKK, sizeof(BlockQ5_K)));
static_assert(detail::layout_matches(gguf::GgmlType::Q6_K, kQKK, sizeof(BlockQ6_K)));
static_assert(detail::layout_matches(gguf::GgmlType::Q8_K, kQKK, sizeof(BlockQ8_K)));
static_assert(alignof(BlockQ8_K) == 4 && alignof(BlockQ4_0) == 2);

}  // namespace realm::tensor
