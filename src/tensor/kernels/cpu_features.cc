// CPU feature detection (cpuid + xgetbv) and the ISA decision.
#include <cctype>
#include <string>

#include "tensor/kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define REALM_X86 1
#endif

namespace realm::tensor {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::SCALAR:
      return "scalar";
    case Isa::AVX2:
      return "avx2";
    case Isa::AVX512:
      return "avx512";
  }
  return "unknown";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (Isa isa : {Isa::SCALAR, Isa::AVX2, Isa::AVX512}) {
    if (lower == isa_name(isa)) return isa;
  }
  return std::nullopt;
}

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#ifdef REALM_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool cpu_avx = (c >> 28) & 1;
  const bool cpu_fma = (c >> 12) & 1;
  const bool cpu_f16c = (c >> 29) & 1;
  if (!osxsave || !cpu_avx) return f;
  // XCR0: which register states the OS saves on context switch.
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_ymm = (xcr0_lo & 0x6u) == 0x6u;    // SSE + AVX state
  const bool os_zmm = (xcr0_lo & 0xe6u) == 0xe6u;  // + opmask, ZMM0-15 high, ZMM16-31
  if (!os_ymm) return f;
  f.avx = true;
  f.fma = cpu_fma;
  f.f16c = cpu_f16c;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = (b >> 5) & 1;
  if (os_zmm) {
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
    const unsigned max_sub = a;
    if (max_sub >= 1) {
      unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
      __cpuid_count(7, 1, a1, b1, c1, d1);
      f.avx512bf16 = (a1 >> 5) & 1;
    }
  }
#endif
  return f;
}

bool isa_supported(Isa isa, const CpuFeatures& f) {
  const bool avx2 = f.avx && f.avx2 && f.fma && f.f16c;
  switch (isa) {
    case Isa::SCALAR:
      return true;
    case Isa::AVX2:
      return avx2;
    case Isa::AVX512:
      return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
  }
  return false;
}

}  // namespace realm::tensor
