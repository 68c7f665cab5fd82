// Scalar reference quantization and dequantization of every supported ggml type.
// The quantizers follow llama.cpp's reference algorithms step for step (same float operations in
// the same order, no imatrix), so that their output is byte-identical to llama-quantize's; the
// dequantizers are bit-identical to ggml's to_float. `n` is the number of elements and must be a
// multiple of the type's block size (callers check; see type_table.h for checked entry points).
#pragma once

#include <cstdint>

#include "tensor/blocks.h"

namespace realm::tensor {

// ---- f32 -> type -------------------------------------------------------------------------
void quantize_row_f16_ref(const float* x, Fp16* y, int64_t n);
void quantize_row_bf16_ref(const float* x, Bf16* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
// Q8_1: s = fp16(d * sum(qs)) with d the unrounded f32 scale, as ggml's reference computes it.
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n);
void quantize_row_q2_k_ref(const float* x, BlockQ2_K* y, int64_t n);
void quantize_row_q3_k_ref(const float* x, BlockQ3_K* y, int64_t n);
void quantize_row_q4_k_ref(const float* x, BlockQ4_K* y, int64_t n);
void quantize_row_q5_k_ref(const float* x, BlockQ5_K* y, int64_t n);
void quantize_row_q6_k_ref(const float* x, BlockQ6_K* y, int64_t n);
// The activation quantizers llama.cpp's x86 CPU backend really runs before a Q4_0/Q5_0/Q8_0 or
// Q4_1/Q5_1 matmul (its AVX2 quantize_row_q8_0/q8_1, also used on AVX-512 machines): they differ
// from the file-format references above in using id = 127 / amax (not 1 / d) and rounding half
// to even. Emulating llama.cpp's logits closely needs these; Q8_K on the CPU is the reference.
void quantize_row_q8_0_ggml_cpu(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1_ggml_cpu(const float* x, BlockQ8_1* y, int64_t n);
// Q8_K: d = max / -127 of the signed absolute maximum, bsums = sums of 16 quants (an all-zero
// block gets d = 0 and zero quants and sums).
void quantize_row_q8_k_ref(const float* x, BlockQ8_K* y, int64_t n);

// ---- type -> f32 -------------------------------------------------------------------------
void dequantize_row_f16(const Fp16* x, float* y, int64_t n);
void dequantize_row_bf16(const Bf16* x, float* y, int64_t n);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n);
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n);
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n);
void dequantize_row_q2_k(const BlockQ2_K* x, float* y, int64_t n);
void dequantize_row_q3_k(const BlockQ3_K* x, float* y, int64_t n);
void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q5_k(const BlockQ5_K* x, float* y, int64_t n);
void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_q8_k(const BlockQ8_K* x, float* y, int64_t n);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block's packed `scales`.
inline void unpack_scale_min_k4(int j, const uint8_t* scales, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = scales[j] & 63;
    m = scales[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// The signed 6-bit scale (-32..31) of sub-block j (0..15) of a Q3_K block's packed `scales`.
inline int unpack_scale_q3_k(int j, const uint8_t* scales) {
  const int low = j < 8 ? (scales[j] & 0xf) : (scales[j - 8] >> 4);
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace realm::tensor
