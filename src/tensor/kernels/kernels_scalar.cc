// The scalar kernels: the path that always builds, and the definition of the reduction order every
// SIMD path reproduces bit for bit (spelled out lane by lane below). Integer dot products inside a
// block are exact; floats enter once per block.
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

// ---- the canonical reduction order --------------------------------------------------------------
//
// Every path computes exactly these float operations (kernels.h: results are bit-identical on
// every ISA). The order is the one 512-bit registers give naturally; the AVX2 path emulates it with
// pairs of 256-bit registers, and this file spells it out lane by lane.

// Sum of 8 lanes as a 256-bit horizontal add does it: halves, then pairs, then the last two.
inline float hsum8(const float v[8]) {
  float s4[4];
  for (int i = 0; i < 4; ++i) s4[i] = v[i] + v[i + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}
// 16 lanes: the two halves added lane-wise, then hsum8.
inline float hsum16(const float v[16]) {
  float h[8];
  for (int i = 0; i < 8; ++i) h[i] = v[i] + v[i + 8];
  return hsum8(h);
}

// F32/F16/BF16: 16-lane accumulators, four of them over 64-element chunks, then 16-element chunks
// into the first; the four summed as (0 + 1) + (2 + 3), reduced with hsum16; then the remaining
// elements added one by one (multiply, then add).
template <typename E, float (*kLoad)(E)>
float dot_float(int64_t n, const void* vw, const void* va) {
  const E* w = static_cast<const E*>(vw);
  const E* a = static_cast<const E*>(va);
  float acc[4][16] = {};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int u = 0; u < 4; ++u) {
      for (int l = 0; l < 16; ++l) {
        const int64_t k = i + 16 * u + l;
        acc[u][l] = std::fma(kLoad(w[k]), kLoad(a[k]), acc[u][l]);
      }
    }
  }
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) acc[0][l] = std::fma(kLoad(w[i + l]), kLoad(a[i + l]), acc[0][l]);
  }
  float v[16];
  for (int l = 0; l < 16; ++l) v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
  float s = hsum16(v);
  for (; i < n; ++i) s += kLoad(w[i]) * kLoad(a[i]);
  return s;
}
inline float load_f32(float v) {
  return v;
}
inline float load_f16(Fp16 v) {
  return fp16_to_f32(v);
}
inline float load_bf16(Bf16 v) {
  return bf16_to_f32(v);
}

// Legacy types (blocks of 32): per block the exact integer sum isum = sum(q_w * q_a), then in
// block order acc = fma(isum, d_w * d_a, acc); Q4_1/Q5_1 also accm = fma(m_w, s_a, accm) and the
// row value is acc + accm. (llama.cpp's repacked Q4_0 kernels accumulate the same way.)
struct Q4_0S {
  using W = BlockQ4_0;
  using A = BlockQ8_0;
  static constexpr bool kMin = false;
  static int quant(const W& b, int i) { return q4_nibble(b.qs, i) - 8; }
};
struct Q4_1S {
  using W = BlockQ4_1;
  using A = BlockQ8_1;
  static constexpr bool kMin = true;
  static int quant(const W& b, int i) { return q4_nibble(b.qs, i); }
};
struct Q5_0S {
  using W = BlockQ5_0;
  using A = BlockQ8_0;
  static constexpr bool kMin = false;
  static int quant(const W& b, int i) { return (q4_nibble(b.qs, i) | q5_high(b.qh, i)) - 16; }
};
struct Q5_1S {
  using W = BlockQ5_1;
  using A = BlockQ8_1;
  static constexpr bool kMin = true;
  static int quant(const W& b, int i) { return q4_nibble(b.qs, i) | q5_high(b.qh, i); }
};
struct Q8_0S {
  using W = BlockQ8_0;
  using A = BlockQ8_0;
  static constexpr bool kMin = false;
  static int quant(const W& b, int i) { return b.qs[i]; }
};

template <class T>
float dot_legacy(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const typename T::W*>(vw);
  const auto* a = static_cast<const typename T::A*>(va);
  float acc = 0.0f, accm = 0.0f;
  for (int64_t b = 0; b < n / kQK; ++b) {
    int32_t isum = 0;
    for (int i = 0; i < kQK; ++i) isum += T::quant(w[b], i) * a[b].qs[i];
    acc = std::fma(static_cast<float>(isum), fp16_to_f32(w[b].d) * fp16_to_f32(a[b].d), acc);
    if constexpr (T::kMin) accm = std::fma(fp16_to_f32(w[b].m), fp16_to_f32(a[b].s), accm);
  }
  return T::kMin ? acc + accm : acc;
}

// K types (super-blocks of 256): per super-block the exact integer sums isum = sum(scale * q * y)
// (biases of stored quants removed exactly) and, for types with mins, msum = sum(min * bsum) over
// the sub-blocks; then, in super-block order, acc = fma(isum, d_w * d_a, acc) and accm =
// fma(msum, dmin_w * d_a, accm); row value acc - accm. (llama.cpp's repacked Q4_K kernels do the
// same.)
struct KAccum {
  float acc = 0.0f, accm = 0.0f;
  void add(int32_t isum, float scale) { acc = std::fma(static_cast<float>(isum), scale, acc); }
  void add_mins(int32_t msum, float scale_min) {
    accm = std::fma(static_cast<float>(msum), scale_min, accm);
  }
};

float dot_q2_k(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ2_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  KAccum acc;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int32_t isum = 0, msum = 0;
    for (int e = 0; e < kQKK; ++e) {
      isum += (w[b].scales[e / 16] & 0xf) * k2_low(w[b].qs, e) * a[b].qs[e];
    }
    for (int j = 0; j < 16; ++j) msum += a[b].bsums[j] * (w[b].scales[j] >> 4);
    acc.add(isum, fp16_to_f32(w[b].d) * a[b].d);
    acc.add_mins(msum, fp16_to_f32(w[b].dmin) * a[b].d);
  }
  return acc.acc - acc.accm;
}
float dot_q3_k(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ3_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  KAccum acc;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int8_t sc[16];
    unpack_q3k_scales(w[b].scales, sc);
    int32_t isum = 0;
    for (int e = 0; e < kQKK; ++e) {
      const int q = k2_low(w[b].qs, e) - (k_high_bit(w[b].hmask, e) ? 0 : 4);
      isum += sc[e / 16] * q * a[b].qs[e];
    }
    acc.add(isum, fp16_to_f32(w[b].d) * a[b].d);
  }
  return acc.acc;
}
template <bool kFive>
float dot_q45_k(int64_t n, const void* vw, const void* va) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const auto* w = static_cast<const Block*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  KAccum acc;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    uint8_t sm[16];
    unpack_k4_scales(w[b].scales, sm);
    int32_t isum = 0, msum = 0;
    for (int e = 0; e < kQKK; ++e) {
      int q = k4_low(w[b].qs, e);
      if constexpr (kFive) q |= k_high_bit(w[b].qh, e) << 4;
      isum += sm[e / 32] * q * a[b].qs[e];
    }
    for (int j = 0; j < 8; ++j) msum += sm[8 + j] * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    acc.add(isum, fp16_to_f32(w[b].d) * a[b].d);
    acc.add_mins(msum, fp16_to_f32(w[b].dmin) * a[b].d);
  }
  return acc.acc - acc.accm;
}
float dot_q6_k(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const BlockQ6_K*>(vw);
  const auto* a = static_cast<const BlockQ8_K*>(va);
  KAccum acc;
  for (int64_t b = 0; b < n / kQKK; ++b) {
    int32_t isum = 0;
    for (int e = 0; e < kQKK; ++e) isum += w[b].scales[e / 16] * q6k_quant(w[b], e) * a[b].qs[e];
    acc.add(isum, fp16_to_f32(w[b].d) * a[b].d);
  }
  return acc.acc;
}

// ---- activation quantizers -------------------------------------------------------------------
// Q8_0/Q8_1 as llama.cpp's x86 CPU backend quantizes activations (id = 127 / amax, round half to
// even); Q8_K, F16 and BF16 are the reference quantizers (llama.cpp uses those for activations
// too).

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
  quantize_row_q8_0_ggml_cpu(x, static_cast<BlockQ8_0*>(y), n);
}
void quantize_q8_1(const float* x, void* y, int64_t n) {
  quantize_row_q8_1_ggml_cpu(x, static_cast<BlockQ8_1*>(y), n);
}
void quantize_q8_k(const float* x, void* y, int64_t n) {
  quantize_row_q8_k_ref(x, static_cast<BlockQ8_K*>(y), n);
}

void mul_add_rows(int64_t n_k, int64_t n, const float* a, const float* x, size_t ldx, float* y) {
  for (int64_t k = 0; k < n_k; ++k) {
    const float* xr = x + k * static_cast<int64_t>(ldx);
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] + a[k] * xr[i];  // -ffp-contract=off: unfused
  }
}

void dot_rows(const float* q, const float* k, size_t k_stride, int64_t n_rows, int64_t n,
              float* out) {
  for (int64_t j = 0; j < n_rows; ++j) {
    const float* kr = k + j * static_cast<int64_t>(k_stride);
    float s = 0.0f;
    for (int64_t d = 0; d < n; ++d) s = s + q[d] * kr[d];
    out[j] = s;
  }
}

// One lane of ggml_v_expf (AVX-512), step by step; std::fma is the hardware instruction's exact
// rounding.
float exp_ggml_one(float x) {
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;  // round-half-even(x * log2 e)
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  if (!(std::fabs(n) <= 192.0f)) {
    if (std::isnan(n)) return n;
    return n <= 0.0f ? 0.0f : INFINITY;
  }
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  // vscalefps: j * 2^n rounded once (also into the subnormals); exact in double, then one rounding.
  return static_cast<float>(static_cast<double>(j) * std::ldexp(1.0, static_cast<int>(n)));
}

void swiglu(float* g, const float* up, int64_t n) {
  const int64_t nv = n & ~int64_t{15};
  for (int64_t i = 0; i < nv; ++i) g[i] = g[i] / (1.0f + exp_ggml_one(0.0f - g[i])) * up[i];
  for (int64_t i = nv; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * up[i];
}

void fa_scores(const float* q, const uint16_t* k, size_t k_stride, int64_t n_rows, int64_t n,
               float* out) {
  const int64_t np = n & ~int64_t{63};
  for (int64_t j = 0; j < n_rows; ++j) {
    const uint16_t* kr = k + j * static_cast<int64_t>(k_stride);
    float lanes[4][16] = {};
    for (int64_t i = 0; i < np; i += 64) {
      for (int u = 0; u < 4; ++u) {
        for (int l = 0; l < 16; ++l) {
          const int64_t e = i + 16 * u + l;
          lanes[u][l] += q[e] * fp16_to_f32(kr[e]);  // products of F16 values are exact in float
        }
      }
    }
    double sum = 0.0;
    if (np > 0) {
      float v[16];
      for (int l = 0; l < 16; ++l) v[l] = (lanes[0][l] + lanes[2][l]) + (lanes[1][l] + lanes[3][l]);
      sum = static_cast<double>(hsum16(v));
    }
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(q[i] * fp16_to_f32(kr[i]));
    out[j] = static_cast<float>(sum);
  }
}

void fa_accumulate(const FaRow* rows, int n_rows, int64_t n_cells, size_t v_stride, int64_t hd,
                   bool resume) {
  const auto r16 = [](float x) { return fp16_to_f32(f32_to_fp16(x)); };
  for (int r = 0; r < n_rows; ++r) {
    const FaRow& row = rows[r];
    float* acc = row.out;
    if (!resume) {
      for (int64_t d = 0; d < hd; ++d) acc[d] = 0.0f;
    }
    float sum = resume ? *row.sum : 0.0f;
    for (int64_t j = 0; j < n_cells; ++j) {
      sum = std::fma(sum, row.ms[j], row.vs[j]);
      const uint16_t* v = row.v + j * static_cast<int64_t>(v_stride);
      if (row.ms[j] != 1.0f) {
        for (int64_t d = 0; d < hd; ++d) acc[d] = r16(acc[d] * row.ms[j]);
      }
      for (int64_t d = 0; d < hd; ++d) acc[d] = r16(std::fma(fp16_to_f32(v[d]), row.vs[j], acc[d]));
    }
    *row.sum = sum;
  }
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
  set<dot_float<float, load_f32>>(k, GgmlType::F32);
  set<dot_float<Fp16, load_f16>>(k, GgmlType::F16);
  set<dot_float<Bf16, load_bf16>>(k, GgmlType::BF16);
  set<dot_legacy<Q4_0S>>(k, GgmlType::Q4_0);
  set<dot_legacy<Q4_1S>>(k, GgmlType::Q4_1);
  set<dot_legacy<Q5_0S>>(k, GgmlType::Q5_0);
  set<dot_legacy<Q5_1S>>(k, GgmlType::Q5_1);
  set<dot_legacy<Q8_0S>>(k, GgmlType::Q8_0);
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
  k.mul_add_rows = mul_add_rows;
  k.dot_rows = dot_rows;
  k.swiglu = swiglu;
  k.fa_scores = fa_scores;
  k.fa_accumulate = fa_accumulate;
  return k;
}

}  // namespace

const KernelTable* scalar_table() {
  static const KernelTable table = make_table();
  return &table;
}

}  // namespace realm::tensor::kernels_internal
