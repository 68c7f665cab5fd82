// Dispatch: the one ISA decision per process, table lookup, argument checks for matmul; the packed
// weight layouts.
#include "tensor/kernels/kernels.h"

#include <cstdlib>
#include <cstring>
#include <type_traits>

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

// ---- packed layouts ----------------------------------------------------------------------------
//
// Q4_K, per group of 16 rows and super-block (16 x 144 bytes):
//   d[16], dmin[16] (fp16), then the 12 packed scale bytes of row r as three little-endian words:
//   w0[16], w1[16], w2[16], then 32 steps of 64 bytes: step s, row r, byte c (4 bytes per row) =
//   q[8s + c] | q[8s + 4 + c] << 4, q = the row's 4-bit quants in element order.

// Q2_K, per group of 16 rows and super-block (16 x 84 bytes): d[16], dmin[16] (fp16); the
//   scale/min bytes as sc[j][r] (sub-block j of 16, row r: 256 bytes); then per 4 steps J two
//   64-byte words: row r, byte c holds in bits 2i, 2i + 1 q[32J + 8i + c] (A) / q[32J + 8i + 4 + c]
//   (B).
// Q3_K, per group of 16 rows and super-block (16 x 110 bytes), with u = q + 4 (0..7):
//   d[16] (fp16); the 12 packed scale bytes of row r as three words w0[16], w1[16], w2[16]; then
//   per 4 steps J (32 elements) three 64-byte words: row r, byte c holds in bits 2i, 2i + 1 the
//   low 2 bits of u[32J + 8i + c] (A) / u[32J + 8i + 4 + c] (B), and in bit i / 4 + i their
//   high bits (H).
// Q5_K: the Q4_K layout (16 x 176 bytes per group and super-block), then 8 words of 64 bytes with
//   the high bits: sub-block j, row r, byte c, bit i = hi(q[8(4j + i) + c]), bit 4 + i =
//   hi(q[8(4j + i) + 4 + c]).
// Q6_K, per group of 16 rows and super-block (16 x 210 bytes), with u = q + 32 (0..63):
//   d[16] (fp16); the scales as sc[j][r] (int8, sub-block j of 16, row r: 256 bytes); 32 steps of
//   64 bytes with the low 4 bits of u: step s, row r, byte c = lo(u[8s + c]) | lo(u[8s + 4 + c]) <<
//   4; then per 4 steps J (32 elements) two 64-byte words of the high 2 bits: row r, byte c (A) or
//   4 + c (B) holds hi(u[32J + 8i + c]) (A) / hi(u[32J + 8i + 4 + c]) (B) in bits 2i, 2i + 1.

// Q8_0, per group of 16 rows and block (16 x 34 bytes): d[16] (fp16), then 8 steps of 64 bytes:
//   step s, row r, byte c = q[4s + c] + 128 (as unsigned).
// Q4_0, per group of 16 rows and block (16 x 18 bytes): d[16], then 4 steps of 64 bytes:
//   step s, row r, byte c = q[8s + c] | q[8s + 4 + c] << 4 (q = the stored 4-bit values).
// The kernels remove the bias (128, 8) exactly through the activation block sums.

namespace {

// Elements 8s .. 8s + 7 of a K super-block lie in one 32-element run of one byte array: eight
// consecutive bytes, as one little-endian word.
inline uint64_t load8(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
// Eight 4-bit values (one per byte of v) -> 4 bytes, value c | value (c + 4) << 4.
inline uint32_t pair_nibbles(uint64_t v) {
  return static_cast<uint32_t>(v) | (static_cast<uint32_t>(v >> 32) << 4);
}
constexpr uint64_t kLowNibbles = 0x0f0f0f0f0f0f0f0full;

template <bool kFive>
void pack_q45_k(const void* src, int64_t n_rows, int64_t nb, uint8_t* out) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const auto* in = static_cast<const Block*>(src);
  for (int64_t g = 0; g < n_rows / kPackRows; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + (g * nb + b) * kPackRows * sizeof(Block);
      for (int r = 0; r < kPackRows; ++r) {
        const Block& x = in[(g * kPackRows + r) * nb + b];
        std::memcpy(o + 2 * r, &x.d, 2);
        std::memcpy(o + 32 + 2 * r, &x.dmin, 2);
        for (int wd = 0; wd < 3; ++wd) std::memcpy(o + 64 + 64 * wd + 4 * r, x.scales + 4 * wd, 4);
        for (int step = 0; step < 32; ++step) {
          // Element e = 8 * step + c: byte 32 * (e / 64) + e % 32, nibble (e % 64) / 32.
          const int e = 8 * step;
          const uint64_t v =
              (load8(x.qs + 32 * (e / 64) + e % 32) >> (4 * ((e % 64) / 32))) & kLowNibbles;
          const uint32_t packed = pair_nibbles(v);
          std::memcpy(o + 256 + 64 * step + 4 * r, &packed, 4);
        }
        if constexpr (kFive) {
          // High bit of element e: bit e / 32 of qh[e % 32]. Sub-block j (steps 4j + i), row r,
          // byte c: bit i = element 8(4j + i) + c, bit 4 + i = element 8(4j + i) + 4 + c.
          for (int j = 0; j < 8; ++j) {
            uint32_t word = 0;
            for (int i = 0; i < 4; ++i) {
              const uint64_t bits = (load8(x.qh + 8 * i) >> j) & 0x0101010101010101ull;
              word |= static_cast<uint32_t>(bits) << i;
              word |= static_cast<uint32_t>(bits >> 32) << (4 + i);
            }
            std::memcpy(o + 2304 + 64 * j + 4 * r, &word, 4);
          }
        }
      }
    }
  }
}

void pack_q2_k(const BlockQ2_K* in, int64_t n_rows, int64_t nb, uint8_t* out) {
  for (int64_t g = 0; g < n_rows / kPackRows; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + (g * nb + b) * kPackRows * sizeof(BlockQ2_K);
      for (int r = 0; r < kPackRows; ++r) {
        const BlockQ2_K& x = in[(g * kPackRows + r) * nb + b];
        std::memcpy(o + 2 * r, &x.d, 2);
        std::memcpy(o + 32 + 2 * r, &x.dmin, 2);
        for (int j = 0; j < 16; ++j) o[64 + 16 * j + r] = x.scales[j];
        for (int big = 0; big < 8; ++big) {
          uint32_t wa = 0, wb = 0;
          for (int i = 0; i < 4; ++i) {
            // Element e: qs[32 (e / 128) + e % 32] >> 2 ((e % 128) / 32).
            const int e = 8 * (4 * big + i);
            const uint64_t q2 = (load8(x.qs + 32 * (e / 128) + e % 32) >> (2 * ((e % 128) / 32))) &
                                0x0303030303030303ull;
            wa |= static_cast<uint32_t>(q2) << (2 * i);
            wb |= static_cast<uint32_t>(q2 >> 32) << (2 * i);
          }
          uint8_t* q = o + 320 + 128 * big + 4 * r;
          std::memcpy(q, &wa, 4);
          std::memcpy(q + 64, &wb, 4);
        }
      }
    }
  }
}

void pack_q3_k(const BlockQ3_K* in, int64_t n_rows, int64_t nb, uint8_t* out) {
  for (int64_t g = 0; g < n_rows / kPackRows; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + (g * nb + b) * kPackRows * sizeof(BlockQ3_K);
      for (int r = 0; r < kPackRows; ++r) {
        const BlockQ3_K& x = in[(g * kPackRows + r) * nb + b];
        std::memcpy(o + 2 * r, &x.d, 2);
        for (int wd = 0; wd < 3; ++wd) std::memcpy(o + 32 + 64 * wd + 4 * r, x.scales + 4 * wd, 4);
        for (int big = 0; big < 8; ++big) {
          uint32_t wa = 0, wb = 0, wh = 0;
          for (int i = 0; i < 4; ++i) {
            // Elements e = 8(4 big + i) + c: low 2 bits at qs[32 (e / 128) + e % 32] >> 2 ((e %
            // 128) / 32), high bit at hmask[e % 32] >> (e / 32).
            const int e = 8 * (4 * big + i);
            const uint64_t lo2 = (load8(x.qs + 32 * (e / 128) + e % 32) >> (2 * ((e % 128) / 32))) &
                                 0x0303030303030303ull;
            const uint64_t hb = (load8(x.hmask + e % 32) >> (e / 32)) & 0x0101010101010101ull;
            wa |= static_cast<uint32_t>(lo2) << (2 * i);
            wb |= static_cast<uint32_t>(lo2 >> 32) << (2 * i);
            wh |= static_cast<uint32_t>(hb) << i;
            wh |= static_cast<uint32_t>(hb >> 32) << (4 + i);
          }
          uint8_t* q = o + 224 + 192 * big + 4 * r;
          std::memcpy(q, &wa, 4);
          std::memcpy(q + 64, &wb, 4);
          std::memcpy(q + 128, &wh, 4);
        }
      }
    }
  }
}

void pack_q6_k(const BlockQ6_K* in, int64_t n_rows, int64_t nb, uint8_t* out) {
  for (int64_t g = 0; g < n_rows / kPackRows; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + (g * nb + b) * kPackRows * sizeof(BlockQ6_K);
      uint8_t* hi_bits = o + 32 + 256 + 2048;
      std::memset(hi_bits, 0, 1024);
      for (int r = 0; r < kPackRows; ++r) {
        const BlockQ6_K& x = in[(g * kPackRows + r) * nb + b];
        std::memcpy(o + 2 * r, &x.d, 2);
        for (int j = 0; j < 16; ++j) o[32 + 16 * j + r] = static_cast<uint8_t>(x.scales[j]);
        for (int step = 0; step < 32; ++step) {
          // Element e: low 4 bits from ql[64 * half + l + 32 * (quarter & 1)] (nibble quarter /
          // 2), high 2 bits from qh[32 * half + l] bits 2 * quarter; half = e / 128, quarter =
          // (e % 128) / 32, l = e % 32.
          const int e = 8 * step, half = e / 128, quarter = (e % 128) / 32, l = e % 32;
          const uint64_t lo =
              (load8(x.ql + 64 * half + l + 32 * (quarter & 1)) >> (4 * (quarter / 2))) &
              kLowNibbles;
          const uint64_t hi =
              (load8(x.qh + 32 * half + l) >> (2 * quarter)) & 0x0303030303030303ull;
          const uint32_t packed = pair_nibbles(lo);
          std::memcpy(o + 288 + 64 * step + 4 * r, &packed, 4);
          const int big = step / 4, i = step % 4;
          uint32_t wa, wb;
          std::memcpy(&wa, hi_bits + 128 * big + 4 * r, 4);
          std::memcpy(&wb, hi_bits + 128 * big + 64 + 4 * r, 4);
          wa |= static_cast<uint32_t>(hi) << (2 * i);
          wb |= static_cast<uint32_t>(hi >> 32) << (2 * i);
          std::memcpy(hi_bits + 128 * big + 4 * r, &wa, 4);
          std::memcpy(hi_bits + 128 * big + 64 + 4 * r, &wb, 4);
        }
      }
    }
  }
}

void pack_q8_0(const BlockQ8_0* in, int64_t n_rows, int64_t nb, uint8_t* out) {
  for (int64_t g = 0; g < n_rows / kPackRows; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + (g * nb + b) * kPackRows * sizeof(BlockQ8_0);
      for (int r = 0; r < kPackRows; ++r) {
        const BlockQ8_0& x = in[(g * kPackRows + r) * nb + b];
        std::memcpy(o + 2 * r, &x.d, 2);
        for (int step = 0; step < 8; ++step) {
          for (int c = 0; c < 4; ++c) {
            o[32 + 64 * step + 4 * r + c] = static_cast<uint8_t>(x.qs[4 * step + c]) ^ 0x80u;
          }
        }
      }
    }
  }
}

void pack_q4_0(const BlockQ4_0* in, int64_t n_rows, int64_t nb, uint8_t* out) {
  for (int64_t g = 0; g < n_rows / kPackRows; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out + (g * nb + b) * kPackRows * sizeof(BlockQ4_0);
      for (int r = 0; r < kPackRows; ++r) {
        const BlockQ4_0& x = in[(g * kPackRows + r) * nb + b];
        std::memcpy(o + 2 * r, &x.d, 2);
        for (int step = 0; step < 4; ++step) {
          // Elements 8s .. 8s + 7: low nibbles of qs[8s ..] for s < 2, else high nibbles of
          // qs[8s - 16 ..].
          const int e = 8 * step;
          const uint64_t v = (load8(x.qs + e % 16) >> (4 * (e / 16))) & kLowNibbles;
          const uint32_t packed = pair_nibbles(v);
          std::memcpy(o + 32 + 64 * step + 4 * r, &packed, 4);
        }
      }
    }
  }
}

}  // namespace

bool packable(GgmlType t) {
  return t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K ||
         t == GgmlType::Q6_K || t == GgmlType::Q8_0 || t == GgmlType::Q4_0;
}

Status pack_rows(GgmlType t, const void* src, int64_t n_rows, int64_t n_cols, void* dst) {
  if (!packable(t)) return make_error("pack_rows: ", gguf::type_name(t), " has no packed layout");
  const auto row_bytes = gguf::row_bytes(t, static_cast<uint64_t>(n_cols));
  if (n_cols <= 0 || !row_bytes || n_rows < 0 || n_rows % kPackRows != 0) {
    return make_error("pack_rows: ", n_rows, " x ", n_cols, " is not whole ", gguf::type_name(t),
                      " super-blocks in groups of ", kPackRows, " rows");
  }
  auto* out = static_cast<uint8_t*>(dst);
  switch (t) {
    case GgmlType::Q4_K:
      pack_q45_k<false>(src, n_rows, n_cols / kQKK, out);
      break;
    case GgmlType::Q5_K:
      pack_q45_k<true>(src, n_rows, n_cols / kQKK, out);
      break;
    case GgmlType::Q2_K:
      pack_q2_k(static_cast<const BlockQ2_K*>(src), n_rows, n_cols / kQKK, out);
      break;
    case GgmlType::Q3_K:
      pack_q3_k(static_cast<const BlockQ3_K*>(src), n_rows, n_cols / kQKK, out);
      break;
    case GgmlType::Q6_K:
      pack_q6_k(static_cast<const BlockQ6_K*>(src), n_rows, n_cols / kQKK, out);
      break;
    case GgmlType::Q8_0:
      pack_q8_0(static_cast<const BlockQ8_0*>(src), n_rows, n_cols / kQK, out);
      break;
    default:
      pack_q4_0(static_cast<const BlockQ4_0*>(src), n_rows, n_cols / kQK, out);
      break;
  }
  return {};
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
  if (m.packed) {
    if (k.matmul_packed[t] == nullptr) {
      return make_error("matmul: no packed ", isa_name(k.isa), " kernel for weight type ",
                        gguf::type_name(m.w_type));
    }
    if (m.r0 % kPackRows != 0 || m.r1 % kPackRows != 0 || m.w_stride != *w_bytes) {
      return make_error("matmul: packed rows [", m.r0, ", ", m.r1, ") not in groups of ", kPackRows,
                        " or stride ", m.w_stride, " != ", *w_bytes);
    }
  }
  if (m.r1 == m.r0 || m.n_tok == 0) return {};
  const MatmulFn fn = m.packed ? k.matmul_packed[t] : k.matmul[t];
  fn(m.n_cols, static_cast<const uint8_t*>(m.w) + m.r0 * m.w_stride, m.w_stride, m.r1 - m.r0, m.a,
     m.a_stride, m.n_tok, m.out + m.r0, m.out_stride);
  return {};
}

}  // namespace realm::tensor
