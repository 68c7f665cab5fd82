// Dispatch: the one ISA decision per process, table lookup, argument checks for matmul.
#include <cstdlib>

#include "tensor/kernels/kernels.h"
#include "tensor/kernels/kernels_internal.h"

namespace realm::tensor {

using kernels_internal::id;

namespace {

bool isa_compiled(Isa isa) {
#ifdef REALM_KERNELS_X86
  return true;
#else
  return isa == Isa::SCALAR;
#endif
}

// Only called once the CPU is known to support `isa`: building a table runs that ISA's code.
const KernelTable* compiled_table(Isa isa) {
  switch (isa) {
    case Isa::SCALAR:
      return kernels_internal::scalar_table();
    case Isa::AVX2:
      return kernels_internal::avx2_table();
    case Isa::AVX512:
      return kernels_internal::avx512_table();
  }
  return nullptr;
}

}  // namespace

Expected<Isa> select_isa(const CpuFeatures& features, const char* forced) {
  if (forced != nullptr && *forced != '\0') {
    const auto isa = isa_from_name(forced);
    if (!isa) return make_error("REALM_ISA=", forced, ": unknown ISA (use scalar, avx2 or avx512)");
    if (!isa_compiled(*isa)) {
      return make_error("REALM_ISA=", forced, ": this build has no ", isa_name(*isa), " kernels");
    }
    if (!isa_supported(*isa, features)) {
      return make_error("REALM_ISA=", forced, ": this CPU (or OS) lacks ", isa_name(*isa),
                        " (needs AVX2+FMA+F16C",
                        *isa == Isa::AVX512 ? ", AVX-512 F/BW/VL/DQ/VNNI" : "", ")");
    }
    return *isa;
  }
  for (Isa isa : {Isa::AVX512, Isa::AVX2}) {
    if (isa_compiled(isa) && isa_supported(isa, features)) return isa;
  }
  return Isa::SCALAR;
}

const KernelTable* kernels_for(Isa isa) {
  static const CpuFeatures features = detect_cpu_features();
  if (!isa_compiled(isa) || !isa_supported(isa, features)) return nullptr;
  return compiled_table(isa);
}

Expected<const KernelTable*> active_kernels() {
  // Decided once, on first use; immutable afterwards.
  static const Expected<const KernelTable*> chosen = []() -> Expected<const KernelTable*> {
    auto isa = select_isa(detect_cpu_features(), std::getenv("REALM_ISA"));
    if (!isa) return isa.take_error();
    return compiled_table(*isa);
  }();
  return chosen;
}

std::optional<GgmlType> activation_type(GgmlType weight) {
  switch (weight) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
      return weight;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
      return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
      return GgmlType::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return GgmlType::Q8_K;
    default:
      return std::nullopt;
  }
}

Status quantize_rows(const KernelTable& k, GgmlType act, const float* x, size_t x_stride,
                     int64_t n_rows, int64_t n_cols, void* y, size_t y_stride) {
  const int t = id(act);
  if (t >= kMaxTypeId || k.quantize[t] == nullptr) {
    return make_error("quantize_rows: ", gguf::type_name(act), " is not an activation type");
  }
  if (n_cols < 0 || n_rows < 0 || !gguf::row_bytes(act, static_cast<uint64_t>(n_cols))) {
    return make_error("quantize_rows: ", n_cols, " columns are not a whole number of ",
                      gguf::type_name(act), " blocks");
  }
  auto* yb = static_cast<uint8_t*>(y);
  for (int64_t r = 0; r < n_rows; ++r) k.quantize[t](x + r * x_stride, yb + r * y_stride, n_cols);
  return {};
}

Status matmul(const KernelTable& k, const MatmulArgs& m) {
  const int t = id(m.w_type);
  if (t >= kMaxTypeId || k.matmul[t] == nullptr) {
    return make_error("matmul: no ", isa_name(k.isa), " kernel for weight type ",
                      gguf::type_name(m.w_type));
  }
  const GgmlType act = *activation_type(m.w_type);
  const auto w_bytes = gguf::row_bytes(m.w_type, static_cast<uint64_t>(m.n_cols));
  const auto a_bytes = gguf::row_bytes(act, static_cast<uint64_t>(m.n_cols));
  if (m.n_cols <= 0 || !w_bytes || !a_bytes) {
    return make_error("matmul: ", m.n_cols, " columns are not a whole number of ",
                      gguf::type_name(m.w_type), " blocks");
  }
  if (m.w_stride < *w_bytes || m.a_stride < *a_bytes || m.out_stride < static_cast<size_t>(m.r1)) {
    return make_error("matmul: strides too small (w ", m.w_stride, " < ", *w_bytes, ", a ",
                      m.a_stride, " < ", *a_bytes, " or out ", m.out_stride, " < ", m.r1, ")");
  }
  if (m.r0 < 0 || m.r1 < m.r0 || m.n_tok < 0) {
    return make_error("matmul: bad row range [", m.r0, ", ", m.r1, ") or n_tok ", m.n_tok);
  }
  if (m.r1 == m.r0 || m.n_tok == 0) return {};
  k.matmul[t](m.n_cols, static_cast<const uint8_t*>(m.w) + m.r0 * m.w_stride, m.w_stride,
              m.r1 - m.r0, m.a, m.a_stride, m.n_tok, m.out + m.r0, m.out_stride);
  return {};
}

}  // namespace realm::tensor
