// The scalar kernels: the reference every SIMD path is tested against, and the path that always
// builds. Integer dot products inside a block, float accumulation across blocks (F32/F16/BF16 in
// double), as in ggml's generic code.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "tensor/kernels/kernels_internal.h"
#include "tensor/quantize.h"

namespace realm::tensor::kernels_internal {
namespace {

// ---- element accessors: the integer quant of element i of a block ---------------------------

inline int q4_nibble(const uint8_t* qs, int i) {
  return i < 16 ? (qs[i] & 0xf) : (qs[i - 16] >> 4);
}
inline int q5_high(const uint8_t* qh, int i) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return static_cast<int>((h >> i) & 1u) << 4;
}
// 2-bit quant of element i of a Q2_K/Q3_K super-block.
inline int k2_low(const uint8_t* qs, int i) {
  return (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
}
// 4-bit quant of element i of a Q4_K/Q5_K super-block.
inline int k4_low(const uint8_t* qs, int i) {
  return (qs[32 * (i / 64) + i % 32] >> (4 * ((i % 64) / 32))) & 0xf;
}
// High bit of element i of Q3_K (hmask) / Q5_K (qh): byte i % 32, bit i / 32.
inline int k_high_bit(const uint8_t* bits, int i) {
  return (bits[i % 32] >> (i / 32)) & 1;
}
inline int q6k_quant(const BlockQ6_K& b, int i) {
  const int half = i / 128, r = i % 128, l = r % 32, quarter = r / 32;
  const uint8_t* ql = b.ql + 64 * half;
  const uint8_t* qh = b.qh + 32 * half;
  const int low = ql[l + 32 * (quarter & 1)];  // quarters 0, 2: bytes 0..31; 1, 3: 32..63
  const int nib = quarter < 2 ? (low & 0xf) : (low >> 4);
  const int high = (qh[l] >> (2 * quarter)) & 3;
  return (nib | (high << 4)) - 32;
}

// One K super-block's contribution from its exact integer sums.
inline float k_block_sum(float dy, float d, float dmin, int32_t isum, int32_t msum) {
  return (dy * d) * static_cast<float>(isum) - (dy * dmin) * static_cast<float>(msum);
}

// ---- dots ---------------------------------------------------------------------------------------

float dot_f32(int64_t n, const void* vw, const void* va) {
  const float* w = static_cast<const float*>(vw);
  const float* a = static_cast<const float*>(va);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[i]) * a[i];
  return static_cast<float>(s);
}
float dot_f16(int64_t n, const void* vw, const void* va) {
  const Fp16* w = static_cast<const Fp16*>(vw);
  const Fp16* a = static_cast<const Fp16*>(va);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_f32(w[i])) * fp16_to_f32(a[i]);
  return static_cast<float>(s);
}
float dot_bf16(int64_t n, const void* vw, const void* va) {
  const Bf16* w = static_cast<const Bf16*>(vw);
  const Bf16* a = static_cast<const Bf16*>(va);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_f32(w[i])) * bf16_to_f32(a[i]);
  return static_cast<float>(s);
}

float dot_q4_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ4_0*>(vw);
  const auto* a = static_cast<const BlockQ8_0*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int i = 0; i < kQK; ++i) sumi += (q4_nibble(w[b].qs, i) - 8) * a[b].qs[i];
    s += static_cast<float>(sumi) * (fp16_to_f32(w[b].d) * fp16_to_f32(a[b].d));
  }
  return s;
}
float dot_q5_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ5_0*>(vw);
  const auto* a = static_cast<const BlockQ8_0*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int i = 0; i < kQK; ++i) {
      sumi += ((q4_nibble(w[b].qs, i) | q5_high(w[b].qh, i)) - 16) * a[b].qs[i];
    }
    s += static_cast<float>(sumi) * (fp16_to_f32(w[b].d) * fp16_to_f32(a[b].d));
  }
  return s;
}
float dot_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ8_0*>(vw);
  const auto* a = static_cast<const BlockQ8_0*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int i = 0; i < kQK; ++i) sumi += w[b].qs[i] * a[b].qs[i];
    s += static_cast<float>(sumi) * (fp16_to_f32(w[b].d) * fp16_to_f32(a[b].d));
  }
  return s;
}
// Q4_1/Q5_1: the min term uses the activation's stored s = d * sum(q).
float dot_q4_1(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ4_1*>(vw);
  const auto* a = static_cast<const BlockQ8_1*>(va);
  float s = 0, sm = 0;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int i = 0; i < kQK; ++i) sumi += q4_nibble(w[b].qs, i) * a[b].qs[i];
    s += static_cast<float>(sumi) * (fp16_to_f32(w[b].d) * fp16_to_f32(a[b].d));
    sm += fp16_to_f32(w[b].m) * fp16_to_f32(a[b].s);
  }
  return s + sm;
}
float dot_q5_1(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ5_1*>(vw);
  const auto* a = static_cast<const BlockQ8_1*>(va);
  float s = 0, sm = 0;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int sumi = 0;
    for (int i = 0; i < kQK; ++i) {
      sumi += (q4_nibble(w[b].qs, i) | q5_high(w[b].qh, i)) * a[b].qs[i];
    }
    s += static_cast<float>(sumi) * (fp16_to_f32(w[b].d) * fp16_to_f32(a[b].d));
    sm += fp16_to_f32(w[b].m) * fp16_to_f32(a[b].s);
  }
  return s + sm;
}

float dot_q2_k(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ2_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 16; ++j) {
      int sub = 0;
      for (int l = 0; l < 16; ++l) sub += k2_low(w[b].qs, 16 * j + l) * a[b].qs[16 * j + l];
      isum += (w[b].scales[j] & 0xf) * sub;
      msum += (w[b].scales[j] >> 4) * a[b].bsums[j];
    }
    s += k_block_sum(a[b].d, fp16_to_f32(w[b].d), fp16_to_f32(w[b].dmin), isum, msum);
  }
  return s;
}
float dot_q3_k(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ3_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int8_t sc[16];
    unpack_q3k_scales(w[b].scales, sc);
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      int sub = 0;
      for (int l = 0; l < 16; ++l) {
        const int i = 16 * j + l;
        sub += (k2_low(w[b].qs, i) - (k_high_bit(w[b].hmask, i) ? 0 : 4)) * a[b].qs[i];
      }
      isum += sc[j] * sub;
    }
    s += k_block_sum(a[b].d, fp16_to_f32(w[b].d), 0.0f, isum, 0);
  }
  return s;
}
template <bool kFive>
float dot_q45_k(int64_t n, const void* vw, const void* va) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const auto* w = static_cast<const Block*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    uint8_t sm[16];
    unpack_k4_scales(w[b].scales, sm);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sub = 0;
      for (int l = 0; l < 32; ++l) {
        const int i = 32 * j + l;
        int q = k4_low(w[b].qs, i);
        if constexpr (kFive) q |= k_high_bit(w[b].qh, i) << 4;
        sub += q * a[b].qs[i];
      }
      isum += sm[j] * sub;
      msum += sm[8 + j] * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    s += k_block_sum(a[b].d, fp16_to_f32(w[b].d), fp16_to_f32(w[b].dmin), isum, msum);
  }
  return s;
}
float dot_q6_k(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ6_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  float s = 0;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      int sub = 0;
      for (int l = 0; l < 16; ++l) sub += q6k_quant(w[b], 16 * j + l) * a[b].qs[16 * j + l];
      isum += w[b].scales[j] * sub;
    }
    s += k_block_sum(a[b].d, fp16_to_f32(w[b].d), 0.0f, isum, 0);
  }
  return s;
}

// ---- activation quantizers: part 1's reference quantizers (the definition of correct) -------

void quantize_f32(const float* x, void* y, int64_t n) {
  std::memcpy(y, x, n * sizeof(float));
}
void quantize_f16(const float* x, void* y, int64_t n) {
  quantize_row_f16_ref(x, static_cast<Fp16*>(y), n);
}
void quantize_bf16(const float* x, void* y, int64_t n) {
  quantize_row_bf16_ref(x, static_cast<Bf16*>(y), n);
}
void quantize_q8_0(const float* x, void* y, int64_t n) {
  quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), n);
}
void quantize_q8_1(const float* x, void* y, int64_t n) {
  quantize_row_q8_1_ref(x, static_cast<BlockQ8_1*>(y), n);
}
void quantize_q8_k(const float* x, void* y, int64_t n) {
  quantize_row_q8_k_ref(x, static_cast<BlockQ8_K*>(y), n);
}

// The scalar matmul is one dot per pair: trivially batch-independent.
template <DotFn kDot>
void matmul_by_dot(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* a,
                   size_t a_stride, int64_t n_tok, float* out, size_t out_stride) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(a);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t t = 0; t < n_tok; ++t) {
      out[t * out_stride + r] = kDot(n, wb + r * w_stride, ab + t * a_stride);
    }
  }
}

template <DotFn kDot>
void set(KernelTable& k, GgmlType t) {
  k.dot[id(t)] = kDot;
  k.matmul[id(t)] = matmul_by_dot<kDot>;
}

KernelTable make_table() {
  KernelTable k;
  k.isa = Isa::SCALAR;
  set<dot_f32>(k, GgmlType::F32);
  set<dot_f16>(k, GgmlType::F16);
  set<dot_bf16>(k, GgmlType::BF16);
  set<dot_q4_0>(k, GgmlType::Q4_0);
  set<dot_q4_1>(k, GgmlType::Q4_1);
  set<dot_q5_0>(k, GgmlType::Q5_0);
  set<dot_q5_1>(k, GgmlType::Q5_1);
  set<dot_q8_0>(k, GgmlType::Q8_0);
  set<dot_q2_k>(k, GgmlType::Q2_K);
  set<dot_q3_k>(k, GgmlType::Q3_K);
  set<dot_q45_k<false>>(k, GgmlType::Q4_K);
  set<dot_q45_k<true>>(k, GgmlType::Q5_K);
  set<dot_q6_k>(k, GgmlType::Q6_K);
  k.quantize[id(GgmlType::F32)] = quantize_f32;
  k.quantize[id(GgmlType::F16)] = quantize_f16;
  k.quantize[id(GgmlType::BF16)] = quantize_bf16;
  k.quantize[id(GgmlType::Q8_0)] = quantize_q8_0;
  k.quantize[id(GgmlType::Q8_1)] = quantize_q8_1;
  k.quantize[id(GgmlType::Q8_K)] = quantize_q8_k;
  return k;
}

}  // namespace

const KernelTable* scalar_table() {
  static const KernelTable table = make_table();
  return &table;
}

}  // namespace realm::tensor::kernels_internal
