// Every ISA path the machine supports against the scalar path (bit-identical), for every weight
// type; the scalar path against a float64 dot of dequantized values; activation quantizers byte for
// byte; the batch-independence contract; ISA selection.
#include "tensor/kernels/kernels.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tensor/blocks.h"
#include "tensor/quantize.h"
#include "tensor/type_table.h"

namespace realm::tensor {
namespace {

constexpr GgmlType kWeightTypes[] = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
    GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
};
constexpr GgmlType kActivationTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16,
                                         GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K};

bool is_k_type(GgmlType t) {
  return t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K ||
         t == GgmlType::Q6_K;
}
bool is_float_type(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

// The SIMD paths this machine can run.
std::vector<const KernelTable*> simd_tables() {
  std::vector<const KernelTable*> out;
  for (Isa isa : {Isa::AVX2, Isa::AVX512}) {
    if (const KernelTable* k = kernels_for(isa)) out.push_back(k);
  }
  return out;
}

const KernelTable& scalar() {
  return *kernels_for(Isa::SCALAR);
}

size_t bytes_of(GgmlType t, int64_t n) {
  return *gguf::row_bytes(t, static_cast<uint64_t>(n));
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  // A few outliers, as real weights and activations have.
  for (size_t i = 0; i < n; i += 97) v[i] *= 6.0f;
  return v;
}

// n_rows rows of n_cols values quantized to `type` with the reference quantizer.
std::vector<uint8_t> quantize_ref(GgmlType type, const std::vector<float>& x, int64_t n_rows,
                                  int64_t n_cols) {
  const size_t rb = bytes_of(type, n_cols);
  std::vector<uint8_t> out(rb * n_rows);
  const TypeTraits* tt = *type_traits(type);
  for (int64_t r = 0; r < n_rows; ++r)
    tt->from_float_ref(x.data() + r * n_cols, &out[r * rb], n_cols);
  return out;
}

std::vector<float> dequantize_row(GgmlType type, const uint8_t* p, int64_t n) {
  std::vector<float> out(n);
  if (type == GgmlType::F32) {
    std::memcpy(out.data(), p, n * sizeof(float));
  } else {
    (*type_traits(type))->to_float(p, out.data(), n);
  }
  return out;
}

// A weight matrix and activation rows, both quantized.
struct Problem {
  GgmlType w_type, a_type;
  int64_t n_rows, n_cols, n_tok;
  size_t w_stride, a_stride;
  std::vector<uint8_t> w, a;
  bool packed = false;  // w holds pack_rows() output
};

Problem make_problem(GgmlType w_type, int64_t n_rows, int64_t n_cols, int64_t n_tok,
                     uint32_t seed) {
  Problem p{w_type, *activation_type(w_type), n_rows, n_cols, n_tok, 0, 0, {}, {}, false};
  p.w_stride = bytes_of(w_type, n_cols);
  p.a_stride = bytes_of(p.a_type, n_cols);
  const auto wf = random_floats(n_rows * n_cols, seed, 0.05f);
  p.w = w_type == GgmlType::F32 ? std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(wf.data()),
                                                       reinterpret_cast<const uint8_t*>(wf.data()) +
                                                           wf.size() * sizeof(float))
                                : quantize_ref(w_type, wf, n_rows, n_cols);
  const auto af = random_floats(n_tok * n_cols, seed + 1000, 1.0f);
  p.a.resize(p.a_stride * n_tok);
  EXPECT_TRUE(
      quantize_rows(scalar(), p.a_type, af.data(), n_cols, n_tok, n_cols, p.a.data(), p.a_stride)
          .ok());
  return p;
}

std::vector<float> run_matmul(const KernelTable& k, const Problem& p, int64_t r0, int64_t r1,
                              int64_t t0, int64_t nt) {
  std::vector<float> out(nt * p.n_rows, NAN);
  MatmulArgs m;
  m.w_type = p.w_type;
  m.packed = p.packed;
  m.w = p.w.data();
  m.w_stride = p.w_stride;
  m.n_cols = p.n_cols;
  m.a = p.a.data() + t0 * p.a_stride;
  m.a_stride = p.a_stride;
  m.n_tok = nt;
  m.out = out.data();
  m.out_stride = p.n_rows;
  m.r0 = r0;
  m.r1 = r1;
  const Status s = matmul(k, m);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return out;
}

// Σ|w_i a_i| in float64 over dequantized values: the scale accumulation errors are relative to.
double abs_dot(const std::vector<float>& w, const std::vector<float>& a) {
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i) s += std::fabs(static_cast<double>(w[i]) * a[i]);
  return s;
}

// The kernels pair each weight type with the activation type part 1's type table names.
TEST(Kernels, ActivationTypesAgreeWithTheTypeTable) {
  for (GgmlType t : kWeightTypes) {
    ASSERT_TRUE(activation_type(t).has_value()) << gguf::type_name(t);
    EXPECT_EQ(*activation_type(t), (*type_traits(t))->vec_dot_type) << gguf::type_name(t);
  }
  EXPECT_FALSE(activation_type(GgmlType::IQ2_XS).has_value());
}

TEST(Kernels, EveryTypeHasKernelsOnEveryPath) {
  std::vector<const KernelTable*> tables = simd_tables();
  tables.push_back(&scalar());
  for (const KernelTable* k : tables) {
    for (GgmlType t : kWeightTypes) {
      const int i = static_cast<int>(t);
      EXPECT_NE(k->dot[i], nullptr) << isa_name(k->isa) << " " << gguf::type_name(t);
      EXPECT_NE(k->matmul[i], nullptr) << isa_name(k->isa) << " " << gguf::type_name(t);
      EXPECT_NE(k->quantize[static_cast<int>(*activation_type(t))], nullptr);
    }
    EXPECT_NE(k->mul_add_rows, nullptr) << isa_name(k->isa);
    EXPECT_NE(k->dot_rows, nullptr) << isa_name(k->isa);
    EXPECT_NE(k->swiglu, nullptr) << isa_name(k->isa);
    EXPECT_NE(k->fa_scores, nullptr) << isa_name(k->isa);
    EXPECT_NE(k->fa_accumulate, nullptr) << isa_name(k->isa);
  }
}

// Arguments of exp: ordinary values, every 2^n scale from overflow down to the subnormals and
// below (|n| > 192 gives 0 or infinity), signed zeros, infinities.
std::vector<float> exp_arguments() {
  std::vector<float> x;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-20.0f, 20.0f);
  for (int i = 0; i < 4000; ++i) x.push_back(u(rng));
  for (float v = -140.0f; v <= 140.0f; v += 0.37f) x.push_back(v);
  for (float v : {-87.3f, -87.4f, -88.0f, -103.2f, -103.3f, -103.9f, -104.0f, -133.0f, -133.2f,
                  88.7f, 88.8f, 89.0f, 0.0f, -0.0f, 1e-30f, -1e-30f, 1e30f, -1e30f})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  return x;
}

// llama.cpp's AVX-512 SwiGLU (its expf inside) gives the same bits on every path, close to the
// libm formula.
TEST(Kernels, SwigluIsBitIdenticalOnEveryPath) {
  const std::vector<float> x = exp_arguments();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> up(x.size());
  for (size_t i = 0; i < up.size(); ++i) up[i] = 0.5f + static_cast<float>(i % 13) * 0.1f;
  for (int64_t len : {n, n - 5, int64_t{15}, int64_t{16}, int64_t{17}}) {
    std::vector<float> gw(x.begin(), x.begin() + len);
    scalar().swiglu(gw.data(), up.data(), len);
    for (int64_t i = 0; i < len; ++i) {
      const double g = x[i], want = g / (1.0 + std::exp(-g)) * up[i];
      if (std::isfinite(want) && std::fabs(want) > 1e-30) {
        EXPECT_NEAR(gw[i], want, 1e-6 * std::fabs(want)) << "silu(" << g << ")";
      }
    }
    for (const KernelTable* k : simd_tables()) {
      std::vector<float> g(x.begin(), x.begin() + len);
      k->swiglu(g.data(), up.data(), len);
      EXPECT_EQ(std::memcmp(g.data(), gw.data(), g.size() * sizeof(float)), 0)
          << isa_name(k->isa) << " swiglu, length " << len;
    }
  }
}

// The F16 flash-attention kernels give the scalar path's bits on every path: scores of F16 values
// (head sizes with and without a tail past 64), and the F16 accumulator over many cells with
// rescales, for 1..5 rows in lockstep (each row's result is its own: rows differ).
TEST(Kernels, FlashAttentionStepsAreBitIdenticalOnEveryPath) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> un(0.0f, 1.0f);
  const auto f16 = [&](float x) { return fp16_to_f32(f32_to_fp16(x)); };
  for (int64_t hd : {16, 64, 80, 128, 200, 7}) {
    const int64_t rows = 37, stride = hd + 5;
    std::vector<float> q(hd);
    std::vector<uint16_t> k(rows * stride);
    for (auto& v : q) v = f16(nd(rng));
    for (auto& v : k) v = f32_to_fp16(nd(rng) * 3.0f);
    std::vector<float> want(rows);
    scalar().fa_scores(q.data(), k.data(), stride, rows, hd, want.data());
    // Accumulator factors: mostly weights below 1, now and then a rescale (a new maximum).
    constexpr int kMaxRows = 5;
    std::vector<float> ms(kMaxRows * rows), vs(kMaxRows * rows);
    for (int64_t i = 0; i < kMaxRows * rows; ++i) {
      const bool grow = i % rows == 0 || rng() % 5 == 0;
      ms[i] = grow ? un(rng) : 1.0f;
      vs[i] = grow ? 1.0f : un(rng);
    }
    // The accumulators, then the sums.
    // In one call, or resumed over pieces of `piece` cells (a paged cache's blocks).
    const auto run = [&](const KernelTable& kt, int n_rows, int64_t piece) {
      std::vector<float> out(static_cast<size_t>(n_rows * (hd + 1)), -1.0f);
      for (int64_t j0 = 0; j0 < rows; j0 += piece) {
        std::vector<FaRow> fr;
        for (int r = 0; r < n_rows; ++r) {
          fr.push_back({ms.data() + r * rows + j0, vs.data() + r * rows + j0,
                        k.data() + (r % 3) + j0 * stride, out.data() + r * hd,
                        out.data() + n_rows * hd + r});
        }
        kt.fa_accumulate(fr.data(), n_rows, std::min(piece, rows - j0), stride, hd, j0 > 0);
      }
      return out;
    };
    const std::vector<float> acc_want = run(scalar(), kMaxRows, rows);
    for (int64_t i = 0; i < kMaxRows * hd; ++i) EXPECT_EQ(acc_want[i], f16(acc_want[i]));
    float sum0 = 0.0f;  // row 0's sum: the fused chain
    for (int64_t j = 0; j < rows; ++j) sum0 = std::fma(sum0, ms[j], vs[j]);
    EXPECT_EQ(acc_want[kMaxRows * hd], sum0);
    for (const KernelTable* kt : simd_tables()) {
      std::vector<float> got(rows);
      kt->fa_scores(q.data(), k.data(), stride, rows, hd, got.data());
      for (int64_t j = 0; j < rows; ++j) {
        EXPECT_EQ(std::bit_cast<uint32_t>(got[j]), std::bit_cast<uint32_t>(want[j]))
            << isa_name(kt->isa) << " hd " << hd << " row " << j;
      }
      for (int n_rows = 1; n_rows <= kMaxRows; ++n_rows) {
        for (int64_t piece : {rows, int64_t{16}, int64_t{5}}) {
          const std::vector<float> acc = run(*kt, n_rows, piece);
          EXPECT_EQ(std::memcmp(acc.data(), acc_want.data(), n_rows * hd * sizeof(float)), 0)
              << isa_name(kt->isa) << " hd " << hd << " rows " << n_rows << " piece " << piece;
          for (int r = 0; r < n_rows; ++r) {
            EXPECT_EQ(acc[n_rows * hd + r], acc_want[kMaxRows * hd + r]) << "sum of row " << r;
          }
        }
      }
      const std::vector<float> resumed = run(scalar(), kMaxRows, 7);
      EXPECT_EQ(std::memcmp(resumed.data(), acc_want.data(), resumed.size() * sizeof(float)), 0)
          << "scalar, resumed in pieces of 7";
    }
  }
}

// dot_rows and mul_add_rows are unfused multiply-then-add chains per element on every path
// (widths around the vector sizes, strided rows, huge and tiny values).
TEST(Kernels, FloatChainsAreExactOnEveryPath) {
  std::vector<const KernelTable*> tables = simd_tables();
  tables.push_back(&scalar());
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 63, 64, 65, 100, 130}) {
    for (int64_t n_k : {1, 5, 64}) {
      const size_t ldx = static_cast<size_t>(n) + 3;
      std::vector<float> a(static_cast<size_t>(n_k)), x(static_cast<size_t>(n_k) * ldx), y0(n);
      for (auto& v : a) v = u(rng);
      for (auto& v : x) v = u(rng) * (rng() % 7 == 0 ? 1e-30f : 1.0f);
      for (auto& v : y0) v = u(rng) * 1e3f;
      for (const KernelTable* k : tables) {
        // dot_rows: the same unfused chain, reading rows (here: the columns of x as rows of its
        // transpose).
        if (n > 0) {
          std::vector<float> xt(static_cast<size_t>(n) * static_cast<size_t>(n_k));
          for (int64_t kk = 0; kk < n_k; ++kk) {
            for (int64_t i = 0; i < n; ++i) xt[i * n_k + kk] = x[kk * ldx + i];
          }
          std::vector<float> dr(n), dr_want(n), via_tiles(n, 0.0f);
          scalar().dot_rows(a.data(), xt.data(), n_k, n, n_k, dr_want.data());
          k->dot_rows(a.data(), xt.data(), n_k, n, n_k, dr.data());
          scalar().mul_add_rows(n_k, n, a.data(), x.data(), ldx, via_tiles.data());
          for (int64_t i = 0; i < n; ++i) {
            EXPECT_EQ(std::bit_cast<uint32_t>(dr[i]), std::bit_cast<uint32_t>(dr_want[i]));
            EXPECT_EQ(std::bit_cast<uint32_t>(dr_want[i]), std::bit_cast<uint32_t>(via_tiles[i]));
          }
        }
        // mul_add_rows: the unfused chain.
        std::vector<float> m = y0, m_want = y0;
        scalar().mul_add_rows(n_k, n, a.data(), x.data(), ldx, m_want.data());
        k->mul_add_rows(n_k, n, a.data(), x.data(), ldx, m.data());
        for (int64_t i = 0; i < n; ++i) {
          volatile float unfused = y0[i];
          for (int64_t kk = 0; kk < n_k; ++kk) {
            const float prod = a[kk] * x[kk * ldx + i];
            unfused = unfused + prod;
          }
          EXPECT_EQ(std::bit_cast<uint32_t>(m[i]), std::bit_cast<uint32_t>(m_want[i]));
          EXPECT_EQ(std::bit_cast<uint32_t>(m_want[i]), std::bit_cast<uint32_t>(float{unfused}));
        }
      }
    }
  }
}

// The scalar path equals a float64 dot of the dequantized weight and activation rows, up to
// float accumulation (and, for Q4_1/Q5_1, the fp16 rounding of the activation's stored s).
TEST(Kernels, ScalarMatchesFloat64DotOfDequantizedValues) {
  for (GgmlType t : kWeightTypes) {
    const int64_t n = is_float_type(t) ? 4096 + 13 : 4096;
    const Problem p = make_problem(t, 3, n, 2, 11);
    for (int64_t r = 0; r < p.n_rows; ++r) {
      for (int64_t j = 0; j < p.n_tok; ++j) {
        const uint8_t* wr = &p.w[r * p.w_stride];
        const uint8_t* ar = &p.a[j * p.a_stride];
        const auto wd = dequantize_row(t, wr, n);
        const auto ad = dequantize_row(p.a_type, ar, n);
        double exact = 0;
        for (int64_t i = 0; i < n; ++i) exact += static_cast<double>(wd[i]) * ad[i];
        double tol = 2e-6 * abs_dot(wd, ad) + 1e-30;
        if (p.a_type == GgmlType::Q8_1) {
          // s = fp16(d * sum(q)) differs from the dequantized sum by up to 2^-11 relative.
          const auto* ab = reinterpret_cast<const BlockQ8_1*>(ar);
          for (int64_t b = 0; b < n / kQK; ++b) {
            const float m =
                fp16_to_f32(t == GgmlType::Q4_1 ? reinterpret_cast<const BlockQ4_1*>(wr)[b].m
                                                : reinterpret_cast<const BlockQ5_1*>(wr)[b].m);
            tol += std::fabs(m * fp16_to_f32(ab[b].s)) * 1e-3;
          }
        }
        const float got = scalar().dot[static_cast<int>(t)](n, wr, ar);
        EXPECT_NEAR(got, exact, tol) << gguf::type_name(t) << " row " << r << " tok " << j;
      }
    }
  }
}

// Every path performs the canonical float operations (kernels_scalar.cc) in the same order, so a
// request gets bit-identical results on every machine. Row lengths exercise every remainder: odd
// legacy block counts, 1 and 3 blocks, float chunks of 64 and 16 and scalar tails.
TEST(Kernels, EverySimdPathIsBitIdenticalToScalar) {
  const auto tables = simd_tables();
  if (tables.empty()) GTEST_SKIP() << "this CPU has no SIMD path";
  for (GgmlType t : kWeightTypes) {
    for (int64_t n : {int64_t{32}, int64_t{96}, int64_t{256}, int64_t{512}, int64_t{32 * 33},
                      int64_t{4096}, int64_t{4096 + 7}, int64_t{4096 + 16 + 3}}) {
      if (!gguf::row_bytes(t, n)) continue;
      const Problem p = make_problem(t, 5, n, 6, 23 + static_cast<uint32_t>(n));
      const auto ref = run_matmul(scalar(), p, 0, p.n_rows, 0, p.n_tok);
      for (const KernelTable* k : tables) {
        const auto got = run_matmul(*k, p, 0, p.n_rows, 0, p.n_tok);
        for (int64_t j = 0; j < p.n_tok; ++j) {
          for (int64_t r = 0; r < p.n_rows; ++r) {
            const float g = got[j * p.n_rows + r], e = ref[j * p.n_rows + r];
            EXPECT_EQ(std::memcmp(&g, &e, sizeof g), 0)
                << isa_name(k->isa) << " " << gguf::type_name(t) << " n " << n << ": " << g
                << " vs scalar " << e;
            // dot() is the same computation as a 1x1 matmul.
            const float d =
                k->dot[static_cast<int>(t)](n, &p.w[r * p.w_stride], &p.a[j * p.a_stride]);
            EXPECT_EQ(std::memcmp(&d, &g, sizeof d), 0)
                << isa_name(k->isa) << " " << gguf::type_name(t);
          }
        }
      }
    }
  }
}

// A request gets bit-identical results alone or batched with others, wherever it sits in the
// batch, and whatever row range a thread computes.
TEST(Kernels, MatmulIsBatchIndependent) {
  std::vector<const KernelTable*> tables = simd_tables();
  tables.push_back(&scalar());
  constexpr int64_t kTok = 11;
  for (GgmlType t : kWeightTypes) {
    // Odd block counts and float tails exercise every remainder path.
    const int64_t n = is_float_type(t) ? 512 + 5 : is_k_type(t) ? 768 : 32 * 17;
    const Problem p = make_problem(t, 7, n, kTok, 5);
    for (const KernelTable* k : tables) {
      const auto full = run_matmul(*k, p, 0, p.n_rows, 0, kTok);
      for (int64_t t0 = 0; t0 < kTok; ++t0) {
        for (int64_t nt : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, kTok - t0}) {
          if (t0 + nt > kTok) continue;
          // Rows split in two ranges, as two threads would.
          auto part = run_matmul(*k, p, 0, 3, t0, nt);
          const auto rest = run_matmul(*k, p, 3, p.n_rows, t0, nt);
          for (int64_t j = 0; j < nt; ++j) {
            for (int64_t r = 3; r < p.n_rows; ++r) part[j * p.n_rows + r] = rest[j * p.n_rows + r];
          }
          EXPECT_EQ(std::memcmp(part.data(), &full[t0 * p.n_rows], part.size() * sizeof(float)), 0)
              << isa_name(k->isa) << " " << gguf::type_name(t) << " tokens " << t0 << "+" << nt;
        }
      }
    }
  }
}

// Packed (row-interleaved) weights give the plain layout's bits, for every token count and
// group-aligned row range.
TEST(Kernels, PackedMatmulIsBitIdenticalToPlain) {
  std::vector<const KernelTable*> tables = simd_tables();
  tables.push_back(&scalar());
  int tested = 0;
  for (GgmlType t : kWeightTypes) {
    if (!packable(t)) continue;
    for (int64_t n : {int64_t{256}, int64_t{768}, int64_t{32 * 35}}) {
      if (!gguf::row_bytes(t, n)) continue;
      const Problem p = make_problem(t, 3 * kPackRows, n, 19, 31 + static_cast<uint32_t>(n));
      std::vector<uint8_t> packed(p.w.size());
      ASSERT_TRUE(pack_rows(t, p.w.data(), p.n_rows, n, packed.data()).ok());
      Problem q = p;
      q.w = packed;
      q.packed = true;
      const auto want = run_matmul(scalar(), p, 0, p.n_rows, 0, p.n_tok);
      for (const KernelTable* k : tables) {
        if (k->matmul_packed[static_cast<int>(t)] == nullptr) continue;
        ++tested;
        for (int64_t t0 = 0; t0 < p.n_tok; t0 += 3) {
          for (int64_t nt : {int64_t{1}, int64_t{2}, int64_t{4}, int64_t{5}, p.n_tok - t0}) {
            if (t0 + nt > p.n_tok) continue;
            // Each group alone, and (from token 0) one call over all three groups.
            std::vector<std::pair<int64_t, int64_t>> ranges = {
                {0, kPackRows}, {kPackRows, 2 * kPackRows}, {2 * kPackRows, 3 * kPackRows}};
            if (t0 == 0) ranges.emplace_back(0, p.n_rows);
            for (const auto& [r0, r1] : ranges) {
              const auto got = run_matmul(*k, q, r0, r1, t0, nt);
              for (int64_t j = 0; j < nt; ++j) {
                for (int64_t r = r0; r < r1; ++r) {
                  const float g = got[j * p.n_rows + r], e = want[(t0 + j) * p.n_rows + r];
                  ASSERT_EQ(std::memcmp(&g, &e, sizeof e), 0)
                      << isa_name(k->isa) << " " << gguf::type_name(t) << " n " << n << " tokens "
                      << t0 << "+" << nt << " row " << r << ": " << g << " vs " << e;
                }
              }
            }
          }
        }
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "no packed kernel on this CPU";
}

TEST(Kernels, PackRejectsBadShapes) {
  std::vector<uint8_t> buf(16 * 144 * 2);
  EXPECT_FALSE(pack_rows(GgmlType::Q4_K, buf.data(), 15, 256, buf.data()).ok());
  EXPECT_FALSE(pack_rows(GgmlType::Q4_K, buf.data(), 16, 100, buf.data()).ok());
  EXPECT_FALSE(pack_rows(GgmlType::Q5_1, buf.data(), 16, 256, buf.data()).ok());
}

// A prefill-sized batch (scratch for the activation scales no longer fits the stack buffer) gives
// each token exactly what it gets alone.
TEST(Kernels, LargeBatchMatchesSingleTokens) {
  std::vector<const KernelTable*> tables = simd_tables();
  tables.push_back(&scalar());
  constexpr int64_t kTok = 21;
  for (GgmlType t : kWeightTypes) {
    const Problem p = make_problem(t, 3, 4096, kTok, 77);
    for (const KernelTable* k : tables) {
      const auto full = run_matmul(*k, p, 0, p.n_rows, 0, kTok);
      for (int64_t j = 0; j < kTok; ++j) {
        const auto one = run_matmul(*k, p, 0, p.n_rows, j, 1);
        EXPECT_EQ(std::memcmp(one.data(), &full[j * p.n_rows], p.n_rows * sizeof(float)), 0)
            << isa_name(k->isa) << " " << gguf::type_name(t) << " token " << j;
      }
    }
  }
}

// Inputs that probe the rounding rules: exact .5 ties, all-zero blocks, equal magnitudes of both
// signs, tiny and huge values.
std::vector<float> adversarial_row(int64_t n, uint32_t seed) {
  std::vector<float> x = random_floats(n, seed, 3.0f);
  for (int64_t b = 0; b * 256 < n; ++b) {
    float* blk = x.data() + b * 256;
    switch (b % 6) {
      case 0:  // amax 127 -> Q8_0/Q8_1 d = 1, so x * id are exact ties
        for (int i = 0; i < 256; ++i) blk[i] = static_cast<float>(i % 50) - 24.5f;
        for (int i = 0; i < 256; i += 32) blk[i] = 127.0f;
        break;
      case 1:  // zeros
        for (int i = 0; i < 256; ++i) blk[i] = 0.0f;
        break;
      case 2:  // the same largest magnitude with both signs, negative first
        blk[3] = -9.0f;
        blk[200] = 9.0f;
        break;
      case 3:
        for (int i = 0; i < 256; ++i) blk[i] *= 1e-30f;
        break;
      case 4:
        for (int i = 0; i < 256; ++i) blk[i] *= 1e4f;
        break;
      default:
        break;
    }
  }
  return x;
}

// The scalar activation quantizers are llama.cpp's x86 CPU-backend ones for Q8_0/Q8_1 and the
// reference ones otherwise; every SIMD path reproduces them byte for byte.
TEST(Kernels, ActivationQuantizersAreBitIdenticalOnEveryPath) {
  constexpr int64_t kN = 256 * 12;
  const auto x = adversarial_row(kN, 99);
  for (GgmlType a : kActivationTypes) {
    const size_t rb = bytes_of(a, kN);
    std::vector<uint8_t> want(rb);
    if (a == GgmlType::F32) {
      std::memcpy(want.data(), x.data(), rb);
    } else if (a == GgmlType::Q8_0) {
      quantize_row_q8_0_ggml_cpu(x.data(), reinterpret_cast<BlockQ8_0*>(want.data()), kN);
    } else if (a == GgmlType::Q8_1) {
      quantize_row_q8_1_ggml_cpu(x.data(), reinterpret_cast<BlockQ8_1*>(want.data()), kN);
    } else {
      (*type_traits(a))->from_float_ref(x.data(), want.data(), kN);
    }
    std::vector<uint8_t> got_scalar(rb);
    ASSERT_TRUE(quantize_rows(scalar(), a, x.data(), kN, 1, kN, got_scalar.data(), rb).ok());
    EXPECT_EQ(got_scalar, want) << "scalar " << gguf::type_name(a);
    for (const KernelTable* k : simd_tables()) {
      std::vector<uint8_t> got(rb);
      ASSERT_TRUE(quantize_rows(*k, a, x.data(), kN, 1, kN, got.data(), rb).ok());
      EXPECT_EQ(got, want) << isa_name(k->isa) << " " << gguf::type_name(a);
    }
  }
}

// llama.cpp's x86 activation rounding: q = round-half-even(x * (127 / amax)). With amax = 127 the
// products are exact, so .5 ties show the rule.
TEST(Kernels, ActivationQ8RoundsHalfToEvenLikeLlamaCpp) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  BlockQ8_0 y;
  ASSERT_TRUE(quantize_rows(scalar(), GgmlType::Q8_0, x.data(), 32, 1, 32, &y, sizeof y).ok());
  EXPECT_EQ(y.qs[0], 127);
  EXPECT_EQ(y.qs[1], 2);
  EXPECT_EQ(y.qs[2], -2);
  EXPECT_EQ(y.qs[3], 4);
}

TEST(Kernels, RejectsBadArguments) {
  const KernelTable& k = scalar();
  std::vector<float> x(64), out(4);
  std::vector<uint8_t> y(1024);
  const Status q = quantize_rows(k, GgmlType::Q8_K, x.data(), 64, 1, 64, y.data(), 1024);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.error().message.find("Q8_K"), std::string::npos) << q.error().message;
  EXPECT_FALSE(quantize_rows(k, GgmlType::Q4_0, x.data(), 64, 1, 64, y.data(), 1024).ok());

  MatmulArgs m;
  m.w_type = GgmlType::IQ2_XS;
  m.w = y.data();
  m.a = y.data();
  m.n_cols = 256;
  m.out = out.data();
  const Status s = matmul(k, m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("IQ2_XS"), std::string::npos) << s.error().message;
  m.w_type = GgmlType::Q4_K;
  m.n_cols = 100;
  EXPECT_FALSE(matmul(k, m).ok());
}

TEST(Isa, SelectionHonoursTheForcedPathAndRefusesWhatTheCpuLacks) {
  CpuFeatures none;
  CpuFeatures avx2;
  avx2.avx = avx2.avx2 = avx2.fma = avx2.f16c = true;
  CpuFeatures avx512 = avx2;
  avx512.avx512f = avx512.avx512bw = avx512.avx512vl = avx512.avx512dq = avx512.avx512vnni = true;

  EXPECT_EQ(*select_isa(none, nullptr), Isa::SCALAR);
  EXPECT_EQ(*select_isa(none, ""), Isa::SCALAR);
  EXPECT_EQ(*select_isa(none, "scalar"), Isa::SCALAR);
  EXPECT_FALSE(select_isa(none, "avx2").ok());
  EXPECT_FALSE(select_isa(avx2, "avx512").ok());
  CpuFeatures no_vnni = avx512;
  no_vnni.avx512vnni = false;
  EXPECT_FALSE(isa_supported(Isa::AVX512, no_vnni));
  CpuFeatures no_fma = avx2;
  no_fma.fma = false;
  EXPECT_FALSE(isa_supported(Isa::AVX2, no_fma));
  const auto bad = select_isa(avx512, "sse9");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("sse9"), std::string::npos);
  EXPECT_EQ(*select_isa(avx512, "AVX2"), Isa::AVX2);
  EXPECT_EQ(*select_isa(avx512, "scalar"), Isa::SCALAR);
#if defined(__x86_64__)
  EXPECT_EQ(*select_isa(avx512, nullptr), Isa::AVX512);
  EXPECT_EQ(*select_isa(avx2, nullptr), Isa::AVX2);
#endif
}

TEST(Isa, DetectionIsConsistentAndTheActivePathWorks) {
  const CpuFeatures f = detect_cpu_features();
  EXPECT_TRUE(!f.avx512f || f.avx);
  EXPECT_TRUE(!f.avx2 || f.avx);
  const auto active = active_kernels();
  const char* forced = std::getenv("REALM_ISA");
  if (forced != nullptr && *forced != '\0') {
    // ctest runs this test once per REALM_ISA value: a forced path works when the CPU has it,
    // and is a clear error naming it when not.
    const auto isa = isa_from_name(forced);
    if (isa && isa_supported(*isa, f)) {
      ASSERT_TRUE(active.ok()) << active.error().message;
      EXPECT_EQ((*active)->isa, *isa);
    } else {
      ASSERT_FALSE(active.ok());
      EXPECT_NE(active.error().message.find(forced), std::string::npos);
    }
    return;
  }
  ASSERT_TRUE(active.ok()) << active.error().message;
  EXPECT_TRUE(isa_supported((*active)->isa, f));
  // With nothing forced, the best path the CPU supports.
  for (Isa better : {Isa::AVX512, Isa::AVX2}) {
    if (better == (*active)->isa) break;
    EXPECT_EQ(kernels_for(better), nullptr) << isa_name(better) << " available but not chosen";
  }
}

}  // namespace
}  // namespace realm::tensor
