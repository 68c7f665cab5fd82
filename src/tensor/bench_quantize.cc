// Reference quantize / dequantize throughput per type (Google Benchmark).
// build-types/bin/bench_quantize --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "tensor/type_table.h"

namespace realm::tensor {
namespace {

constexpr int64_t kN = 4096 * 8;  // elements per iteration

std::vector<float> random_floats() {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(kN);
  for (auto& x : v) x = dist(rng);
  return v;
}

void bench_quantize(benchmark::State& state, GgmlType type) {
  const TypeTraits& t = *type_traits(type).value();
  const auto x = random_floats();
  std::vector<uint8_t> q(kN / t.block_size * t.type_size);
  for (auto _ : state) {
    t.from_float_ref(x.data(), q.data(), kN);
    benchmark::DoNotOptimize(q.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}

void bench_dequantize(benchmark::State& state, GgmlType type) {
  const TypeTraits& t = *type_traits(type).value();
  const auto x = random_floats();
  std::vector<uint8_t> q(kN / t.block_size * t.type_size);
  t.from_float_ref(x.data(), q.data(), kN);
  std::vector<float> y(kN);
  for (auto _ : state) {
    t.to_float(q.data(), y.data(), kN);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}

int register_all() {
  for (const TypeTraits& t : supported_types()) {
    if (t.type == GgmlType::F32) continue;
    benchmark::RegisterBenchmark(("quantize/" + std::string(t.name)).c_str(), bench_quantize,
                                 t.type);
    benchmark::RegisterBenchmark(("dequantize/" + std::string(t.name)).c_str(), bench_dequantize,
                                 t.type);
  }
  return 0;
}
const int registered = register_all();

}  // namespace
}  // namespace realm::tensor

BENCHMARK_MAIN();
