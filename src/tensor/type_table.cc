#include "tensor/type_table.h"

#include <array>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/quantize.h"

namespace realm::tensor {
namespace {

void f32_to_float(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void f32_from_float(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

// Adapters from the typed row functions to the table's void* signatures.
template <typename Block, void (*Fn)(const Block*, float*, int64_t)>
void to_float_of(const void* src, float* dst, int64_t n) {
  Fn(static_cast<const Block*>(src), dst, n);
}
template <typename Block, void (*Fn)(const float*, Block*, int64_t)>
void from_float_of(const float* src, void* dst, int64_t n) {
  Fn(src, static_cast<Block*>(dst), n);
}

#define REALM_QUANT_ROW(TYPE, BLOCK, SUFFIX, DOT)                          \
  TypeTraits {                                                             \
    GgmlType::TYPE, #TYPE, gguf::type_layout(GgmlType::TYPE).block_size,   \
        gguf::type_layout(GgmlType::TYPE).type_size, true,                 \
        &to_float_of<BLOCK, &dequantize_row_##SUFFIX>,                     \
        &from_float_of<BLOCK, &quantize_row_##SUFFIX##_ref>, GgmlType::DOT \
  }

const std::array<TypeTraits, 15>& table() {
  static const std::array<TypeTraits, 15> rows = {
      TypeTraits{GgmlType::F32, "F32", 1, 4, false, &f32_to_float, &f32_from_float, GgmlType::F32},
      TypeTraits{GgmlType::F16, "F16", 1, 2, false, &to_float_of<Fp16, &dequantize_row_f16>,
                 &from_float_of<Fp16, &quantize_row_f16_ref>, GgmlType::F16},
      REALM_QUANT_ROW(Q4_0, BlockQ4_0, q4_0, Q8_0),
      REALM_QUANT_ROW(Q4_1, BlockQ4_1, q4_1, Q8_1),
      REALM_QUANT_ROW(Q5_0, BlockQ5_0, q5_0, Q8_0),
      REALM_QUANT_ROW(Q5_1, BlockQ5_1, q5_1, Q8_1),
      REALM_QUANT_ROW(Q8_0, BlockQ8_0, q8_0, Q8_0),
      REALM_QUANT_ROW(Q8_1, BlockQ8_1, q8_1, Q8_1),
      REALM_QUANT_ROW(Q2_K, BlockQ2_K, q2_k, Q8_K),
      REALM_QUANT_ROW(Q3_K, BlockQ3_K, q3_k, Q8_K),
      REALM_QUANT_ROW(Q4_K, BlockQ4_K, q4_k, Q8_K),
      REALM_QUANT_ROW(Q5_K, BlockQ5_K, q5_k, Q8_K),
      REALM_QUANT_ROW(Q6_K, BlockQ6_K, q6_k, Q8_K),
      REALM_QUANT_ROW(Q8_K, BlockQ8_K, q8_k, Q8_K),
      TypeTraits{GgmlType::BF16, "BF16", 1, 2, false, &to_float_of<Bf16, &dequantize_row_bf16>,
                 &from_float_of<Bf16, &quantize_row_bf16_ref>, GgmlType::BF16},
  };
  return rows;
}

#undef REALM_QUANT_ROW

Status check_sizes(const TypeTraits& t, uint64_t n, uint64_t n_bytes, uint64_t n_floats) {
  if (n % t.block_size != 0) {
    return make_error("type ", t.name, ": ", n, " elements is not a multiple of the block size ",
                      t.block_size);
  }
  const uint64_t need = n / t.block_size * t.type_size;
  if (n_bytes < need) {
    return make_error("type ", t.name, ": ", n, " elements need ", need, " bytes, got ", n_bytes);
  }
  if (n_floats < n) {
    return make_error("type ", t.name, ": ", n, " elements need ", n, " floats, got ", n_floats);
  }
  return {};
}

}  // namespace

std::span<const TypeTraits> supported_types() {
  return table();
}

Expected<const TypeTraits*> type_traits(GgmlType type) {
  for (const TypeTraits& t : table()) {
    if (t.type == type) return &t;
  }
  return make_error("tensor type ", gguf::type_name(type), " (id ", static_cast<uint32_t>(type),
                    ") is not supported");
}

Expected<const TypeTraits*> type_traits_of_id(uint32_t id) {
  if (!gguf::type_layout(id)) return make_error("unknown tensor type id ", id);
  return type_traits(static_cast<GgmlType>(id));
}

Status dequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> dst) {
  auto t = type_traits(type);
  if (!t) return t.take_error();
  const TypeTraits& tt = **t;
  // The element count is implied by the destination.
  const uint64_t n = dst.size();
  REALM_TRY(check_sizes(tt, n, src.size(), dst.size()));
  tt.to_float(src.data(), dst.data(), static_cast<int64_t>(n));
  return {};
}

Status quantize(GgmlType type, std::span<const float> src, std::span<uint8_t> dst) {
  auto t = type_traits(type);
  if (!t) return t.take_error();
  const TypeTraits& tt = **t;
  const uint64_t n = src.size();
  REALM_TRY(check_sizes(tt, n, dst.size(), src.size()));
  tt.from_float_ref(src.data(), dst.data(), static_cast<int64_t>(n));
  return {};
}

}  // namespace realm::tensor
