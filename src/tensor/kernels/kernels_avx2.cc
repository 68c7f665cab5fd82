// AVX2 + FMA + F16C kernels (this file alone is compiled with those -m flags).
#include "tensor/kernels/kernels_x86.inc"

namespace realm::tensor::kernels_internal {

const KernelTable* avx2_table() {
  static const KernelTable table = make_table();
  return &table;
}

}  // namespace realm::tensor::kernels_internal
