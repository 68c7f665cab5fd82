// The type table (CONVENTIONS.md §4): one row per supported ggml type with its block layout,
// dequantizer, reference quantizer and the activation type its dot product pairs with.
// The dot kernels live in src/tensor/kernels/ and are keyed by the same types.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "gguf/types.h"
#include "util/expected.h"

namespace realm::tensor {

using gguf::GgmlType;

// `n` elements (a multiple of block_size) from packed blocks to f32, and back.
using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);

struct TypeTraits {
  GgmlType type;
  std::string_view name;  // "Q4_K", as llama.cpp prints it
  uint32_t block_size;    // elements per block (1 for F32/F16/BF16)
  uint32_t type_size;     // bytes per block
  bool is_quantized;      // block-quantized (not F32/F16/BF16)
  ToFloatFn to_float;
  FromFloatFn from_float_ref;  // the exact scalar reference quantizer
  // Type activations are converted to before a dot product with a row of this type
  // (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K types, F16/BF16/F32 for those).
  GgmlType vec_dot_type;
};

// Every supported row, in ggml id order.
std::span<const TypeTraits> supported_types();

// The row of `type`, or an error naming the type when it has no implementation here (IQ*, TQ*,
// MXFP4, integer types ...).
Expected<const TypeTraits*> type_traits(GgmlType type);
// As above for a raw id from a file; unknown ids are an error naming the id.
Expected<const TypeTraits*> type_traits_of_id(uint32_t id);

// Checked conversions of `n` elements: n must be a multiple of the block size and the spans large
// enough, else an error naming the type and sizes.
Status dequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> dst);
Status quantize(GgmlType type, std::span<const float> src, std::span<uint8_t> dst);

}  // namespace realm::tensor
