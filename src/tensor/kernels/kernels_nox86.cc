// Non-x86 builds: only the scalar kernels exist.
#include "tensor/kernels/kernels_internal.h"

namespace realm::tensor::kernels_internal {

const KernelTable* avx2_table() {
  return nullptr;
}
const KernelTable* avx512_table() {
  return nullptr;
}

}  // namespace realm::tensor::kernels_internal
