// bench_sampling: the sampler chain on one row of a 32000-token vocab (the per-token cost the
// WebAssembly guest pays natively; docs/guest.md has the wasm numbers).
//   bench_sampling [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "sampling/sampling.h"

namespace {

using namespace realm::sampling;

std::vector<float> make_logits(size_t n) {
  std::vector<float> l(n);
  uint64_t x = 42;
  for (auto& v : l) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(x >> 40) / static_cast<float>(1 << 24) * 12.0f - 6.0f;
  }
  return l;
}

void run_chain(benchmark::State& state, SamplerParams p) {
  const auto logits = make_logits(32000);
  SamplerChain chain(p);
  std::vector<int32_t> history = {1, 450, 4996, 29871, 1034, 3186};
  for (auto _ : state) benchmark::DoNotOptimize(chain.sample(logits, {history}));
}

void BM_Greedy(benchmark::State& state) {
  SamplerParams p;
  p.temperature = 0;
  run_chain(state, p);
}
BENCHMARK(BM_Greedy);

void BM_GreedyRepeatPenalty(benchmark::State& state) {
  SamplerParams p;
  p.temperature = 0;
  p.repeat_penalty = 1.1f;
  run_chain(state, p);
}
BENCHMARK(BM_GreedyRepeatPenalty);

void BM_TopK40(benchmark::State& state) {
  SamplerParams p;  // llama.cpp defaults: top-k 40, top-p 0.95, min-p 0.05, T 0.8
  run_chain(state, p);
}
BENCHMARK(BM_TopK40);

void BM_TopKOff(benchmark::State& state) {
  SamplerParams p;
  p.top_k = 0;  // top-p over the whole vocabulary: a full sort
  run_chain(state, p);
}
BENCHMARK(BM_TopKOff);

void BM_TopLogprobs5(benchmark::State& state) {
  const auto logits = make_logits(32000);
  for (auto _ : state) benchmark::DoNotOptimize(top_logprobs(logits, 5));
}
BENCHMARK(BM_TopLogprobs5);

}  // namespace

BENCHMARK_MAIN();
