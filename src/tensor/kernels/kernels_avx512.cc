// AVX-512 (F/BW/VL/DQ/VNNI) kernels (this file alone is compiled with those -m flags): 512-bit
// float dots, VNNI int8 dots for the legacy types.
#define REALM_KERNELS_AVX512 1
#include "tensor/kernels/kernels_x86.inc"

namespace realm::tensor::kernels_internal {

const KernelTable* avx512_table() {
  static const KernelTable table = make_table();
  return &table;
}

}  // namespace realm::tensor::kernels_internal
