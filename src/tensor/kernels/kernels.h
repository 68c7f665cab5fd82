// Dot-product and matmul kernels of every supported weight type with its activation partner type,
// compiled per ISA (scalar, AVX2, AVX-512) and chosen once at start-up. Plain header: no
// intrinsics, no ISA #ifdefs; the per-ISA code lives in kernels_<isa>.cc.
//
// Numerical contract: for one (weight row, activation row) pair, every matmul call performs the
// same floating-point operations in the same order, whatever the number of activation rows in the
// batch and wherever the pair sits in it; so a request gets bit-identical results alone or batched
// with others. dot() is the same computation as a 1x1 matmul.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "gguf/types.h"
#include "util/expected.h"

namespace realm::tensor {

using gguf::GgmlType;

enum class Isa : uint8_t { SCALAR = 0, AVX2 = 1, AVX512 = 2 };
inline constexpr int kNumIsas = 3;

std::string_view isa_name(Isa isa);
// "scalar", "avx2", "avx512" (case-insensitive), or nullopt.
std::optional<Isa> isa_from_name(std::string_view name);

// The CPU features the kernels use, each already combined with OS support of the register state
// it needs (XCR0: YMM for AVX*, opmask/ZMM for AVX-512).
struct CpuFeatures {
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;  // detected and reported; no kernel needs it
};

// Queries cpuid/xgetbv (all false on non-x86 builds).
CpuFeatures detect_cpu_features();
// True when `features` has everything the kernels of `isa` need (SCALAR: always).
bool isa_supported(Isa isa, const CpuFeatures& features);
// Best supported ISA, or the one `forced` names (the value of REALM_ISA; null or empty: none).
// A forced ISA that is unknown, not compiled in, or missing on this CPU is an error.
Expected<Isa> select_isa(const CpuFeatures& features, const char* forced);

// Dot of `n` elements: one weight row `w` with one activation row `a` of the partner type.
using DotFn = float (*)(int64_t n, const void* w, const void* a);
// out[t * out_stride + r] = dot(row r of w, row t of a) for r < n_rows, t < n_tok.
using MatmulFn = void (*)(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* a,
                          size_t a_stride, int64_t n_tok, float* out, size_t out_stride);
// f32 row of `n` elements -> activation type (n a multiple of its block size).
using QuantizeRowFn = void (*)(const float* x, void* y, int64_t n);

// y[i] = y[i] + a[k] * x[k * ldx + i] for k in order: a multiply and an add, each rounded (the
// unfused chains of llama.cpp's non-flash attention as realm emulates it).
using MulAddRowsFn = void (*)(int64_t n_k, int64_t n, const float* a, const float* x, size_t ldx,
                              float* y);
// out[j] = sum over d < n of q[d] * k[j * k_stride + d], multiply then add, in order of d (the
// same unfused chain per row as mul_add_rows, reading rows instead of transposed tiles).
using DotRowsFn = void (*)(const float* q, const float* k, size_t k_stride, int64_t n_rows,
                           int64_t n, float* out);
// g[i] = silu(g[i]) * up[i] as llama.cpp's AVX-512 ggml_vec_swiglu_f32: blocks of 16 as
// g / (1 + e) * up, e = exp(0 - g) as ggml_v_expf computes it (a degree-5 polynomial after a
// Cody-Waite reduction, scaled by 2^n; bit for bit on every path: llama.cpp's logits follow its
// rounding, not libm's), the last n % 16 elements with libm's expf.
using SwigluFn = void (*)(float* g, const float* up, int64_t n);

// llama.cpp's CPU flash attention on an F16 cache (its default), one query at a time, in two
// parts. Scores: out[j] = the dot of q (F16 values held as f32) with row j of k (F16, rows
// k_stride elements apart), in ggml_vec_dot_f16's AVX-512 order: 64-element steps into 4 x 16
// lanes, reduced as _mm512_reduce_add_ps, the last n % 64 products added in double.
using FaScoresFn = void (*)(const float* q, const uint16_t* k, size_t k_stride, int64_t n_rows,
                            int64_t n, float* out);
// Values: one query row's F16 accumulator of hd elements starts at 0 and, for each cell j in
// order, becomes fp16(f32(acc) * ms[j]) where ms[j] != 1 (the running maximum grew), then
// fp16(fma(f32(v_j), vs[j], f32(acc))), v_j = the F16 row at v + j * v_stride; out = f32(acc).
// The softmax sum alongside: S = fma(S, ms[j], vs[j]) from 0 (llama.cpp's S = S * ms + vs, which
// its reference build, GCC 12 with -ffp-contract=fast, fuses), into *sum.
struct FaRow {
  const float* ms;
  const float* vs;
  const uint16_t* v;
  float* out;
  float* sum;
};
// fa_accumulate runs n_rows such rows over the same n_cells cells in lockstep (the chains of
// several rows interleave; each row's operations are those it has alone). With `resume` the chains
// go on from out and *sum instead of 0 (the cells of a paged cache, one block after another, give
// the bits of one call over all of them).
using FaAccumulateFn = void (*)(const FaRow* rows, int n_rows, int64_t n_cells, size_t v_stride,
                                int64_t hd, bool resume);

inline constexpr int kMaxTypeId = 40;

// Kernels of one ISA, indexed by ggml type id; null entries are unsupported types.
struct KernelTable {
  Isa isa = Isa::SCALAR;
  DotFn dot[kMaxTypeId] = {};               // by weight type
  MatmulFn matmul[kMaxTypeId] = {};         // by weight type
  QuantizeRowFn quantize[kMaxTypeId] = {};  // by activation type (F32, F16, BF16, Q8_0/1, Q8_K)
  MatmulFn matmul_packed[kMaxTypeId] = {};  // by weight type; rows packed by pack_rows()
  MulAddRowsFn mul_add_rows = nullptr;
  DotRowsFn dot_rows = nullptr;
  SwigluFn swiglu = nullptr;
  FaScoresFn fa_scores = nullptr;
  FaAccumulateFn fa_accumulate = nullptr;
};

// The activation type llama.cpp pairs with `weight` (F32->F32, F16->F16, BF16->BF16,
// Q4_0/Q5_0/Q8_0->Q8_0, Q4_1/Q5_1->Q8_1, K types->Q8_K), or nullopt for types without kernels.
std::optional<GgmlType> activation_type(GgmlType weight);

// The kernels of `isa`, or nullptr when they are not compiled in or the CPU lacks them.
const KernelTable* kernels_for(Isa isa);
// The table chosen once per process by select_isa(detect_cpu_features(), getenv("REALM_ISA")).
// Fails (every call, same message) when REALM_ISA names an unusable ISA.
Expected<const KernelTable*> active_kernels();

// Quantizes `n_rows` f32 rows of `n_cols` (stride x_stride floats) into `act` rows
// (y_stride bytes apart). Errors: unsupported type, n_cols not a multiple of the block size.
Status quantize_rows(const KernelTable& k, GgmlType act, const float* x, size_t x_stride,
                     int64_t n_rows, int64_t n_cols, void* y, size_t y_stride);

// W (rows of n_cols elements of w_type, w_stride bytes apart) times A (n_tok rows already in
// activation_type(w_type), a_stride bytes apart), for weight rows [r0, r1) only:
// out[t * out_stride + r] for r in [r0, r1), t < n_tok. Disjoint row ranges may run in parallel.
// Weight rows packed in groups of kPackRows ("row-interleaved"): one group's super-blocks hold the
// quants of its rows side by side, so a kernel computes kPackRows rows in the lanes of one
// register. Same byte size as the plain rows (group g starts at g * kPackRows * row_bytes). The
// results are bit-identical to the plain layout's (the same canonical order). Packable types: Q4_K,
// Q2_K, Q3_K, Q5_K, Q6_K, Q8_0, Q4_0.
inline constexpr int64_t kPackRows = 16;
// Bumped whenever pack_rows() writes a different layout for any type: packed-weight cache files
// (model/pack_cache.h) of another version are rebuilt.
inline constexpr uint32_t kPackLayoutVersion = 1;
bool packable(GgmlType t);
// Packs n_rows (a multiple of kPackRows) rows of n_cols elements (row_bytes apart) into dst, which
// must hold n_rows * row_bytes bytes and not overlap src.
Status pack_rows(GgmlType t, const void* src, int64_t n_rows, int64_t n_cols, void* dst);

struct MatmulArgs {
  GgmlType w_type = GgmlType::F32;
  bool packed = false;  // w holds pack_rows() output; r0, r1 multiples of kPackRows
  const void* w = nullptr;
  size_t w_stride = 0;
  int64_t n_cols = 0;
  const void* a = nullptr;
  size_t a_stride = 0;
  int64_t n_tok = 0;
  float* out = nullptr;
  size_t out_stride = 0;
  int64_t r0 = 0;
  int64_t r1 = 0;
};
Status matmul(const KernelTable& k, const MatmulArgs& args);

}  // namespace realm::tensor
