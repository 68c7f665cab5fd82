// Google Benchmark of the dot/matmul kernels, per weight type and ISA:
//   dot/<type>/<isa>          one 4096-wide row dot (weights stay in L1: kernel speed)
//   mm2048x1/<type>/<isa>     2048x2048 weights x 1 activation row (decode shape)
//   mm2048x16/<type>/<isa>    2048x2048 weights x 16 activation rows (prefill shape)
//   packed-mm2048x{1,16}/...  the same with the weights in the packed layout (packable types)
//   quantize/<act>/<isa>      one 4096-wide f32 activation row -> activation type
// bytes_per_second counts weight bytes read (activation bytes for quantize).
// Usage: bench_dot [--benchmark_filter=...] [--benchmark_repetitions=N]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tensor/kernels/kernels.h"
#include "tensor/type_table.h"

namespace {

using realm::tensor::GgmlType;
using realm::tensor::Isa;
using realm::tensor::KernelTable;

constexpr int64_t kRowN = 4096;
constexpr int64_t kMatN = 2048;

struct Data {
  std::vector<uint8_t> w;  // kMatN rows of kMatN (the dot uses the first 2 rows as 4096)
  std::vector<uint8_t> a;  // 16 activation rows of kMatN, and one of kRowN
  std::vector<uint8_t> a_row;
  std::vector<uint8_t> w_packed;  // w in the packed layout, for packable types
  size_t w_stride, a_stride;
};

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

const Data& data_for(GgmlType t) {
  static std::map<GgmlType, std::unique_ptr<Data>> cache;
  auto& slot = cache[t];
  if (slot) return *slot;
  slot = std::make_unique<Data>();
  Data& d = *slot;
  const GgmlType at = *realm::tensor::activation_type(t);
  d.w_stride = *realm::gguf::row_bytes(t, kMatN);
  d.a_stride = *realm::gguf::row_bytes(at, kMatN);
  const auto wf = random_floats(kMatN * kMatN, 1, 0.02f);
  d.w.resize(d.w_stride * kMatN);
  const auto* tt = *realm::tensor::type_traits(t);
  const auto* scalar = realm::tensor::kernels_for(Isa::SCALAR);
  // Rows written as f32 -> type by the reference quantizer (F32 rows are the floats themselves).
  if (t == GgmlType::F32) {
    std::memcpy(d.w.data(), wf.data(), d.w.size());
  } else {
    for (int64_t r = 0; r < kMatN; ++r)
      tt->from_float_ref(&wf[r * kMatN], &d.w[r * d.w_stride], kMatN);
  }
  if (realm::tensor::packable(t)) {
    d.w_packed.resize(d.w.size());
    (void)realm::tensor::pack_rows(t, d.w.data(), kMatN, kMatN, d.w_packed.data());
  }
  const auto af = random_floats(16 * kMatN, 2, 1.0f);
  d.a.resize(16 * d.a_stride);
  (void)realm::tensor::quantize_rows(*scalar, at, af.data(), kMatN, 16, kMatN, d.a.data(),
                                     d.a_stride);
  d.a_row.resize(*realm::gguf::row_bytes(at, kRowN));
  (void)realm::tensor::quantize_rows(*scalar, at, af.data(), kRowN, 1, kRowN, d.a_row.data(),
                                     d.a_row.size());
  return d;
}

void bench_dot(benchmark::State& state, const KernelTable* k, GgmlType t) {
  const Data& d = data_for(t);
  const auto dot = k->dot[static_cast<int>(t)];
  for (auto _ : state) {
    benchmark::DoNotOptimize(dot(kRowN, d.w.data(), d.a_row.data()));
  }
  state.SetBytesProcessed(state.iterations() * 2 * d.w_stride);
}

void bench_matmul(benchmark::State& state, const KernelTable* k, GgmlType t, int64_t n_tok,
                  bool packed) {
  const Data& d = data_for(t);
  std::vector<float> out(n_tok * kMatN);
  realm::tensor::MatmulArgs m;
  m.w_type = t;
  m.packed = packed;
  m.w = packed ? d.w_packed.data() : d.w.data();
  m.w_stride = d.w_stride;
  m.n_cols = kMatN;
  m.a = d.a.data();
  m.a_stride = d.a_stride;
  m.n_tok = n_tok;
  m.out = out.data();
  m.out_stride = kMatN;
  m.r0 = 0;
  m.r1 = kMatN;
  for (auto _ : state) {
    (void)realm::tensor::matmul(*k, m);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kMatN * d.w_stride);
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * kMatN * kMatN * n_tok,
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void bench_quantize(benchmark::State& state, const KernelTable* k, GgmlType at) {
  const auto x = random_floats(kRowN, 3, 1.0f);
  std::vector<uint8_t> y(*realm::gguf::row_bytes(at, kRowN));
  const auto q = k->quantize[static_cast<int>(at)];
  for (auto _ : state) {
    q(x.data(), y.data(), kRowN);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kRowN * sizeof(float));
}

}  // namespace

int main(int argc, char** argv) {
  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                            GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                            GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                            GgmlType::Q6_K};
  const GgmlType acts[] = {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q8_1,
                           GgmlType::Q8_K};
  for (Isa isa : {Isa::SCALAR, Isa::AVX2, Isa::AVX512}) {
    const KernelTable* k = realm::tensor::kernels_for(isa);
    if (k == nullptr) continue;
    const std::string suffix = "/" + std::string(realm::tensor::isa_name(isa));
    for (GgmlType t : types) {
      const std::string tn(realm::gguf::type_name(t));
      benchmark::RegisterBenchmark(("dot/" + tn + suffix).c_str(), bench_dot, k, t);
      for (int64_t n_tok : {1, 16}) {
        const std::string shape = "mm2048x" + std::to_string(n_tok) + "/";
        benchmark::RegisterBenchmark((shape + tn + suffix).c_str(), bench_matmul, k, t, n_tok,
                                     false);
        if (k->matmul_packed[static_cast<int>(t)] != nullptr) {
          benchmark::RegisterBenchmark(("packed-" + shape + tn + suffix).c_str(), bench_matmul, k,
                                       t, n_tok, true);
        }
      }
    }
    for (GgmlType at : acts) {
      benchmark::RegisterBenchmark(
          ("quantize/" + std::string(realm::gguf::type_name(at)) + suffix).c_str(), bench_quantize,
          k, at);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
