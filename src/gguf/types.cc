#include "gguf/types.h"

#include <array>

#include "util/checked.h"

namespace realm::gguf {
namespace {

constexpr std::array kLayouts = {
    TypeLayout{GgmlType::F32, "F32", 1, 4},
    TypeLayout{GgmlType::F16, "F16", 1, 2},
    TypeLayout{GgmlType::Q4_0, "Q4_0", 32, 18},
    TypeLayout{GgmlType::Q4_1, "Q4_1", 32, 20},
    TypeLayout{GgmlType::Q5_0, "Q5_0", 32, 22},
    TypeLayout{GgmlType::Q5_1, "Q5_1", 32, 24},
    TypeLayout{GgmlType::Q8_0, "Q8_0", 32, 34},
    TypeLayout{GgmlType::Q8_1, "Q8_1", 32, 36},
    TypeLayout{GgmlType::Q2_K, "Q2_K", 256, 84},
    TypeLayout{GgmlType::Q3_K, "Q3_K", 256, 110},
    TypeLayout{GgmlType::Q4_K, "Q4_K", 256, 144},
    TypeLayout{GgmlType::Q5_K, "Q5_K", 256, 176},
    TypeLayout{GgmlType::Q6_K, "Q6_K", 256, 210},
    TypeLayout{GgmlType::Q8_K, "Q8_K", 256, 292},
    TypeLayout{GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66},
    TypeLayout{GgmlType::IQ2_XS, "IQ2_XS", 256, 74},
    TypeLayout{GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98},
    TypeLayout{GgmlType::IQ1_S, "IQ1_S", 256, 50},
    TypeLayout{GgmlType::IQ4_NL, "IQ4_NL", 32, 18},
    TypeLayout{GgmlType::IQ3_S, "IQ3_S", 256, 110},
    TypeLayout{GgmlType::IQ2_S, "IQ2_S", 256, 82},
    TypeLayout{GgmlType::IQ4_XS, "IQ4_XS", 256, 136},
    TypeLayout{GgmlType::I8, "I8", 1, 1},
    TypeLayout{GgmlType::I16, "I16", 1, 2},
    TypeLayout{GgmlType::I32, "I32", 1, 4},
    TypeLayout{GgmlType::I64, "I64", 1, 8},
    TypeLayout{GgmlType::F64, "F64", 1, 8},
    TypeLayout{GgmlType::IQ1_M, "IQ1_M", 256, 56},
    TypeLayout{GgmlType::BF16, "BF16", 1, 2},
    TypeLayout{GgmlType::TQ1_0, "TQ1_0", 256, 54},
    TypeLayout{GgmlType::TQ2_0, "TQ2_0", 256, 66},
    TypeLayout{GgmlType::MXFP4, "MXFP4", 32, 17},
};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

}  // namespace

std::optional<TypeLayout> type_layout(uint32_t id) {
  for (const auto& l : kLayouts) {
    if (static_cast<uint32_t>(l.type) == id) return l;
  }
  return std::nullopt;
}

const TypeLayout& type_layout(GgmlType type) {
  for (const auto& l : kLayouts) {
    if (l.type == type) return l;
  }
  return kLayouts[0];  // unreachable for valid enum values
}

std::optional<GgmlType> type_from_name(std::string_view name) {
  for (const auto& l : kLayouts) {
    if (iequal(l.name, name)) return l.type;
  }
  return std::nullopt;
}

std::optional<uint64_t> row_bytes(GgmlType type, uint64_t n_elements) {
  const TypeLayout& l = type_layout(type);
  if (n_elements % l.block_size != 0) return std::nullopt;
  return checked_mul<uint64_t>(n_elements / l.block_size, l.type_size);
}

}  // namespace realm::gguf
