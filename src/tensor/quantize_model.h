// Model quantization as llama-quantize does it: llama.cpp's file types (ftypes), its per-tensor
// type rules (per-layer mixes of Q3_K_M, Q4_K_M ..., output/token_embd rules, 1-D tensors and
// norms kept, fallback types when a row is not a multiple of the block size) and its output
// layout (tensors ordered by layer then name, general.file_type and
// general.quantization_version appended), so that the same input gives the same file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/reader.h"
#include "gguf/types.h"
#include "util/expected.h"

namespace realm::tensor {

// llama.cpp's llama_ftype values (the ones realm can produce).
enum class FileType : uint32_t {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q4_0 = 2,
  MOSTLY_Q4_1 = 3,
  MOSTLY_Q8_0 = 7,
  MOSTLY_Q5_0 = 8,
  MOSTLY_Q5_1 = 9,
  MOSTLY_Q2_K = 10,
  MOSTLY_Q3_K_S = 11,
  MOSTLY_Q3_K_M = 12,
  MOSTLY_Q3_K_L = 13,
  MOSTLY_Q4_K_S = 14,
  MOSTLY_Q4_K_M = 15,
  MOSTLY_Q5_K_S = 16,
  MOSTLY_Q5_K_M = 17,
  MOSTLY_Q6_K = 18,
  MOSTLY_BF16 = 32,
};

// "Q4_K_M" (case-insensitive; llama-quantize's aliases Q3_K, Q4_K, Q5_K mean the _M mixes).
Expected<FileType> file_type_from_name(std::string_view name);
// "Q4_K_M", "F16" ...
std::string_view file_type_name(FileType ftype);
// The type most tensors get (Q4_K for Q4_K_M ...).
gguf::GgmlType file_type_default_type(FileType ftype);

// What happens to one tensor, in output order.
struct TensorPlan {
  std::string name;
  gguf::GgmlType from;
  gguf::GgmlType to;
  std::vector<uint64_t> dims;
  bool fallback = false;  // `to` is a fallback because the row length did not fit the wanted type
  gguf::GgmlType wanted = gguf::GgmlType::F32;  // the rule's choice before the fallback
};

// llama.cpp's type choice for every tensor of `in` (a llama-family model) for `ftype`, in
// llama.cpp's output order (non-block tensors first, then by layer, each group by name).
Expected<std::vector<TensorPlan>> plan_quantization(const gguf::GgufFile& in, FileType ftype);

// The same for a model described without tensor data (the synthetic model generator uses it).
struct TensorShape {
  std::string name;
  gguf::GgmlType type;
  std::vector<uint64_t> dims;
};
struct ModelShape {
  std::string arch = "llama";
  uint32_t n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t n_expert = 0;
};
std::vector<TensorPlan> plan_quantization(const ModelShape& model,
                                          const std::vector<TensorShape>& tensors, FileType ftype);

struct QuantizeOptions {
  FileType ftype = FileType::MOSTLY_Q8_0;
  int n_threads = 1;
  // Quantized input tensors that must change type are refused unless this is set.
  bool allow_requantize = false;
};

// Quantizes `in` into a new GGUF file at `out_path`. Returns the plan that was applied.
Expected<std::vector<TensorPlan>> quantize_model(const gguf::GgufFile& in,
                                                 const std::string& out_path,
                                                 const QuantizeOptions& options);

}  // namespace realm::tensor
