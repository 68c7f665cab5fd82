// ggml tensor types as stored in GGUF files: ids, names and block layouts (format facts only).
// The tensor layer adds kernels per type on top of this table.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace realm::gguf {

// GGUF tensor type ids (ggml_type). Gaps are ids retired by ggml; they are rejected on load.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

// Storage layout of one type: `block_size` elements take `type_size` bytes.
struct TypeLayout {
  GgmlType type;
  std::string_view name;  // upper-case, as llama.cpp's tools print it: "Q4_K", "BF16"
  uint32_t block_size;
  uint32_t type_size;
};

// The layout of a known type id, or nullopt for ids this format version does not define.
std::optional<TypeLayout> type_layout(uint32_t id);
const TypeLayout& type_layout(GgmlType type);
inline std::string_view type_name(GgmlType type) {
  return type_layout(type).name;
}
// Case-insensitive lookup by name ("q4_k" or "Q4_K").
std::optional<GgmlType> type_from_name(std::string_view name);

// Bytes of `n_elements` elements of `type`, or nullopt when n is not a multiple of the block size
// or the size overflows.
std::optional<uint64_t> row_bytes(GgmlType type, uint64_t n_elements);

}  // namespace realm::gguf
