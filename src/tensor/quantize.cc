// Reference quantizers and dequantizers. Exactness with llama.cpp depends on evaluating every float
// expression as written (no FMA contraction: this file is compiled with -ffp-contract=off, and
// ggml's reference code is compiled for baseline x86-64 where there is no FMA either).
#include "tensor/quantize.h"

#include "util/check.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace realm::tensor {
namespace {

// Below this absolute maximum a group counts as all zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 puts the integer part in the
// low mantissa bits (the same trick, and so the same result, as ggml's nearest_int).
inline int round_nearest(float v) {
  const float shifted = v + 12582912.f;
  const int32_t bits = std::bit_cast<int32_t>(shifted);
  return (bits & 0x007fffff) - 0x00400000;
}

inline float to_f32(Fp16 h) {
  return fp16_to_f32(h);
}
inline Fp16 to_f16(float f) {
  return f32_to_fp16(f);
}

// The element of largest magnitude (the first one on ties) and its magnitude.
inline void signed_abs_max(const float* x, int n, float& max, float& amax) {
  max = 0.f;
  amax = 0.f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
}

// Symmetric quantization of n values to [-nmax, nmax - 1] (stored + nmax in L) with a weighted
// least-squares scale search over 19 candidate scales. Weights are x^2 when qw is null
// (llama.cpp's make_qx_quants with rmse_type 1, the only mode the K quantizers use without an
// imatrix). Returns the scale.
float quantize_symmetric_search(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max, amax;
  signed_abs_max(x, n, max, amax);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.f;
  }
  auto weight = [&](int i) { return qw ? qw[i] : x[i] * x[i]; };
  auto clamp_q = [&](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
  float iscale = -nmax / max;
  float sumlx = 0.f;
  float suml2 = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_q(round_nearest(iscale * x[i]));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = weight(i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(nmax + 0.1f * step) / max;
    sumlx = 0.f;
    suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_q(round_nearest(iscale * x[i]));
      const float w = weight(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<int8_t>(nmax + clamp_q(round_nearest(iscale * x[i])));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric 3-bit quantization (Q3_K sub-blocks): start from the max-based scale, then move single
// values to the level that improves the x^2-weighted fit, up to 5 passes. L holds q + nmax.
float quantize_q3_group(int n, int nmax, const float* x, int8_t* L) {
  float max, amax;
  signed_abs_max(x, n, max, amax);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.f;
  }
  auto clamp_q = [&](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
  const float iscale = -nmax / max;
  float sumlx = 0.f;
  float suml2 = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_q(round_nearest(iscale * x[i]));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        const int new_l = clamp_q(round_nearest(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric quantization x ~ scale * q - min, q in [0, nmax], minimizing the weighted error
// (absolute when use_mad, else squared) over nstep + 1 candidate scales (llama.cpp's
// make_qkx2_quants). Returns the scale; *neg_min receives the (non-negative) min.
float quantize_affine_search(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                             float* neg_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                             bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t{0});
    *neg_min = -min;
    return 0.f;
  }
  auto error_of = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = round_nearest(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * error_of(diff);
  }
  if (nstep < 1) {
    *neg_min = -min;
    return scale;
  }
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = round_nearest(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * error_of(diff);
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

// Packs 4 planes of 2-bit values: byte l of each 32-byte group holds L[l], L[l+32], L[l+64],
// L[l+96] of its 128-value chunk.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQKK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
    }
  }
}

// Q4_K/Q5_K: 8 scales and 8 mins, 6 bits each, into 12 bytes.
void pack_scales_mins_k4(const float* scales, const float* mins, float max_scale, float max_min,
                         uint8_t* out) {
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQKK / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(round_nearest(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(round_nearest(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      out[j] = ls;
      out[j + 4] = lm;
    } else {
      out[j + 4] = static_cast<uint8_t>((ls & 0xf) | ((lm & 0xf) << 4));
      out[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      out[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
}

// Shared first half of Q4_K/Q5_K: per-32 affine fits, packed scales, then the final levels
// recomputed against the rounded scales. Returns the levels in L.
template <typename Block>
void quantize_k4_scales(const float* x, Block& y, uint8_t* L, int nmax, float rmin, int nstep) {
  float mins[kQKK / 32];
  float scales[kQKK / 32];
  float weights[32];
  uint8_t Laux[32];
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < kQKK / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = quantize_affine_search(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                       rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  pack_scales_mins_k4(scales, mins, max_scale, max_min, y.scales);
  y.d = to_f16(max_scale / 63.f);
  y.dmin = to_f16(max_min / 63.f);
  for (int j = 0; j < kQKK / 32; ++j) {
    uint8_t sc, m;
    unpack_scale_min_k4(j, y.scales, sc, m);
    const float d = to_f32(y.d) * sc;
    if (!d) continue;
    const float dm = to_f32(y.dmin) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = round_nearest((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

// ---- legacy types ----------------------------------------------------------------------------

void quantize_row_f16_ref(const float* x, Fp16* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void quantize_row_bf16_ref(const float* x, Bf16* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float max, amax;
    signed_abs_max(x, kQK, max, amax);
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK / 2 + j] * id;
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    y[b].m = to_f16(min);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK / 2 + j] - min) * id;
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float max, amax;
    signed_abs_max(x, kQK, max, amax);
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK / 2 + j] * id;
      const uint32_t q0 = std::min(31, static_cast<int>(static_cast<int8_t>(x0 + 16.5f)));
      const uint32_t q1 = std::min(31, static_cast<int>(static_cast<int8_t>(x1 + 16.5f)));
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0xf) | ((q1 & 0xf) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
    }
    std::memcpy(y[b].qh, &qh, sizeof qh);
  }
}

void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    y[b].m = to_f16(min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK / 2 + j] - min) * id;
      const uint32_t q0 = static_cast<uint8_t>(x0 + 0.5f);
      const uint32_t q1 = static_cast<uint8_t>(x1 + 0.5f);
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0xf) | ((q1 & 0xf) << 4));
      qh |= ((q0 & 0x10u) >> 4) << j;
      qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
    }
    std::memcpy(y[b].qh, &qh, sizeof qh);
  }
}

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    for (int j = 0; j < kQK; ++j) y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = to_f16(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += y[b].qs[j];
    }
    y[b].s = to_f16(sum * d);
  }
}

// x86 CPU backend activation quantization: amax, d = amax / 127, id = 127 / amax, q = rint(x * id)
// (half to even, the default rounding mode), s = fp16(d * sum q).
template <typename Block>
float quantize_block_q8_ggml_cpu(const float* x, Block& y) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  y.d = to_f16(d);
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < kQK; ++j) {
    y.qs[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
    sum += y.qs[j];
  }
  return sum * d;
}

void quantize_row_q8_0_ggml_cpu(const float* x, BlockQ8_0* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) quantize_block_q8_ggml_cpu(x, y[b]);
}

void quantize_row_q8_1_ggml_cpu(const float* x, BlockQ8_1* y, int64_t n) {
  REALM_CHECK(n % kQK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    y[b].s = to_f16(quantize_block_q8_ggml_cpu(x, y[b]));
  }
}

// ---- K types ---------------------------------------------------------------------------------

void quantize_row_q2_k_ref(const float* x, BlockQ2_K* y, int64_t n) {
  REALM_CHECK(n % kQKK == 0, "row length not a multiple of the block size");
  constexpr float kQ4Scale = 15.f;
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    uint8_t L[kQKK];
    uint8_t Laux[16];
    float weights[16];
    float mins[kQKK / 16];
    float scales[kQKK / 16];
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQKK / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = quantize_affine_search(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    BlockQ2_K& out = y[b];
    if (max_scale > 0) {
      const float iscale = kQ4Scale / max_scale;
      for (int j = 0; j < kQKK / 16; ++j) {
        out.scales[j] = static_cast<uint8_t>(round_nearest(iscale * scales[j]));
      }
      out.d = to_f16(max_scale / kQ4Scale);
    } else {
      std::memset(out.scales, 0, sizeof out.scales);
      out.d = to_f16(0.f);
    }
    if (max_min > 0) {
      const float iscale = kQ4Scale / max_min;
      for (int j = 0; j < kQKK / 16; ++j) {
        out.scales[j] |= static_cast<uint8_t>(round_nearest(iscale * mins[j]) << 4);
      }
      out.dmin = to_f16(max_min / kQ4Scale);
    } else {
      out.dmin = to_f16(0.f);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = to_f32(out.d) * (out.scales[j] & 0xf);
      if (!d) continue;
      const float dm = to_f32(out.dmin) * (out.scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = round_nearest((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, out.qs);
  }
}

void quantize_row_q3_k_ref(const float* x, BlockQ3_K* y, int64_t n) {
  REALM_CHECK(n % kQKK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    int8_t L[kQKK];
    float scales[kQKK / 16];
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < kQKK / 16; ++j) {
      scales[j] = quantize_q3_group(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    BlockQ3_K& out = y[b];
    std::memset(out.scales, 0, sizeof out.scales);
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQKK / 16; ++j) {
        int8_t l = static_cast<int8_t>(round_nearest(iscale * scales[j]));
        l = static_cast<int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
        if (j < 8) {
          out.scales[j] = l & 0xf;
        } else {
          out.scales[j - 8] |= static_cast<uint8_t>((l & 0xf) << 4);
        }
        l = static_cast<int8_t>(l >> 4);
        out.scales[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
      }
      out.d = to_f16(1 / iscale);
    } else {
      out.d = to_f16(0.f);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = to_f32(out.d) * unpack_scale_q3_k(j, out.scales);
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = round_nearest(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    // High bit of value j goes to bit j / 32 of hmask[j % 32].
    std::memset(out.hmask, 0, sizeof out.hmask);
    uint8_t Lu[kQKK];
    for (int j = 0; j < kQKK; ++j) {
      int l = L[j];
      if (l > 3) {
        out.hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
        l -= 4;
      }
      Lu[j] = static_cast<uint8_t>(l);
    }
    pack_2bit(Lu, out.qs);
  }
}

void quantize_row_q4_k_ref(const float* x, BlockQ4_K* y, int64_t n) {
  REALM_CHECK(n % kQKK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    uint8_t L[kQKK];
    quantize_k4_scales(x, y[b], L, 15, -1.f, 20);
    uint8_t* q = y[b].qs;
    for (int j = 0; j < kQKK; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void quantize_row_q5_k_ref(const float* x, BlockQ5_K* y, int64_t n) {
  REALM_CHECK(n % kQKK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    uint8_t L[kQKK];
    quantize_k4_scales(x, y[b], L, 31, -0.5f, 15);
    uint8_t* qh = y[b].qh;
    uint8_t* ql = y[b].qs;
    std::memset(qh, 0, kQKK / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int j0 = 0; j0 < kQKK; j0 += 64, ql += 32) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[j0 + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[j0 + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
    }
  }
}

void quantize_row_q6_k_ref(const float* x, BlockQ6_K* y, int64_t n) {
  REALM_CHECK(n % kQKK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    int8_t L[kQKK];
    float scales[kQKK / 16];
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      const float scale = quantize_symmetric_search(16, 32, x + 16 * ib, L + 16 * ib, nullptr);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    BlockQ6_K& out = y[b];
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    const float iscale = -128.f / max_scale;
    out.d = to_f16(1 / iscale);
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      out.scales[ib] = static_cast<int8_t>(std::min(127, round_nearest(iscale * scales[ib])));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = to_f32(out.d) * out.scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = round_nearest(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = out.ql;
    uint8_t* qh = out.qh;
    for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0xf;
        const uint8_t q2 = L[j + l + 32] & 0xf;
        const uint8_t q3 = L[j + l + 64] & 0xf;
        const uint8_t q4 = L[j + l + 96] & 0xf;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

void quantize_row_q8_k_ref(const float* x, BlockQ8_K* y, int64_t n) {
  REALM_CHECK(n % kQKK == 0, "row length not a multiple of the block size");
  for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
    float max, amax;
    signed_abs_max(x, kQKK, max, amax);
    BlockQ8_K& out = y[b];
    if (!amax) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQKK; ++j) {
      out.qs[j] = static_cast<int8_t>(std::min(127, round_nearest(iscale * x[j])));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += out.qs[j * 16 + ii];
      out.bsums[j] = static_cast<int16_t>(sum);
    }
    out.d = 1 / iscale;
  }
}

// ---- dequantization --------------------------------------------------------------------------

void dequantize_row_f16(const Fp16* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

void dequantize_row_bf16(const Bf16* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = to_f32(x[b].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = ((x[b].qs[j] & 0xf) - 8) * d;
      y[j + kQK / 2] = ((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = to_f32(x[b].d);
    const float m = to_f32(x[b].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = (x[b].qs[j] & 0xf) * d + m;
      y[j + kQK / 2] = (x[b].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = to_f32(x[b].d);
    uint32_t qh;
    std::memcpy(&qh, x[b].qh, sizeof qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = ((qh >> j) & 1) << 4;
      const int h1 = ((qh >> (j + kQK / 2)) & 1) << 4;
      y[j] = (((x[b].qs[j] & 0xf) | h0) - 16) * d;
      y[j + kQK / 2] = (((x[b].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = to_f32(x[b].d);
    const float m = to_f32(x[b].m);
    uint32_t qh;
    std::memcpy(&qh, x[b].qh, sizeof qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = ((qh >> j) & 1) << 4;
      const int h1 = ((qh >> (j + kQK / 2)) & 1) << 4;
      y[j] = ((x[b].qs[j] & 0xf) | h0) * d + m;
      y[j + kQK / 2] = ((x[b].qs[j] >> 4) | h1) * d + m;
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = to_f32(x[b].d);
    for (int j = 0; j < kQK; ++j) y[j] = x[b].qs[j] * d;
  }
}

void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = to_f32(x[b].d);
    for (int j = 0; j < kQK; ++j) y[j] = x[b].qs[j] * d;
  }
}

void dequantize_row_q2_k(const BlockQ2_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float d = to_f32(x[b].d);
    const float min = to_f32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    int is = 0;
    for (int c = 0; c < kQKK; c += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = x[b].scales[is++];
          const float dl = d * (sc & 0xf);
          const float ml = min * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void dequantize_row_q3_k(const BlockQ3_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float d_all = to_f32(x[b].d);
    const uint8_t* q = x[b].qs;
    const uint8_t* hm = x[b].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int c = 0; c < kQKK; c += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * unpack_scale_q3_k(is++, x[b].scales);
          for (int l = 0; l < 16; ++l) {
            const int i = l + 16 * half;
            *y++ = dl * (((q[i] >> shift) & 3) - ((hm[i] & m) ? 0 : 4));
          }
        }
      }
    }
  }
}

void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const uint8_t* q = x[b].qs;
    const float d = to_f32(x[b].d);
    const float min = to_f32(x[b].dmin);
    for (int j = 0, is = 0; j < kQKK; j += 64, q += 32, is += 2) {
      uint8_t sc, m;
      unpack_scale_min_k4(is, x[b].scales, sc, m);
      const float d1 = d * sc;
      const float m1 = min * m;
      unpack_scale_min_k4(is + 1, x[b].scales, sc, m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_k(const BlockQ5_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const uint8_t* ql = x[b].qs;
    const uint8_t* qh = x[b].qh;
    const float d = to_f32(x[b].d);
    const float min = to_f32(x[b].dmin);
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < kQKK; j += 64, ql += 32, is += 2) {
      uint8_t sc, m;
      unpack_scale_min_k4(is, x[b].scales, sc, m);
      const float d1 = d * sc;
      const float m1 = min * m;
      unpack_scale_min_k4(is + 1, x[b].scales, sc, m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const float d = to_f32(x[b].d);
    const uint8_t* ql = x[b].ql;
    const uint8_t* qh = x[b].qh;
    const int8_t* sc = x[b].scales;
    for (int c = 0; c < kQKK; c += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

void dequantize_row_q8_k(const BlockQ8_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKK; ++b) {
    for (int j = 0; j < kQKK; ++j) *y++ = x[b].d * x[b].qs[j];
  }
}

}  // namespace realm::tensor
