// `realm bench -m MODEL [-p N] [-n N] [-r R] [-t T] [--batch B] [--json]`: prompt processing and
// token generation speed, like llama-bench's pp/tg tests: pp = one prefill of N random tokens,
// tg = N single-token decode steps; each repeated R times, the median reported. With --batch B,
// tg runs B sessions stepping together in shared batches (tokens/s counts every session's tokens);
// with --depth D every tg session first holds D prompt tokens (untimed), like llama-bench's -d.
// --json prints {"model", "threads", "batch", "pp": {"n", "tps", "runs"}, "tg": {...}, "load_ms",
// "peak_rss_mb", "isa"}: the model's load time, the process's peak resident memory (VmHWM) and the
// kernel path in use.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "model/model.h"
#include "tensor/kernels/kernels.h"

namespace realm::cli {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The process's peak resident set (VmHWM) in MiB, 0 when unknown.
double peak_rss_mb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  struct Args {
    model::LoadOptions load;  // set by resolve_model_arg
    std::string model, kv = "f16";
    int64_t pp = 128, tg = 64, depth = 0;
    int reps = 5, threads = 0, batch = 1;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "Measure prompt processing and generation speed");
  cmd->add_option("-m,--model", a->model, "GGUF file or pulled model name")->required();
  cmd->add_option("-p,--n-prompt", a->pp, "Prompt tokens for pp (default 128, 0 = skip)");
  cmd->add_option("-n,--n-gen", a->tg, "Generated tokens for tg (default 64, 0 = skip)");
  cmd->add_option("-r,--repetitions", a->reps, "Repetitions (default 5; median reported)");
  cmd->add_option("-t,--threads", a->threads, "Threads (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->add_option("--batch", a->batch, "Sessions decoding together in tg (default 1)");
  cmd->add_option("--depth", a->depth, "Tokens already in each tg session (default 0)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-type", a->kv, "KV cache type f16 or f32");
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->callback([a, &exit_code] {
    if (!resolve_model_arg(a->model, exit_code, &a->load)) return;
    auto kv = model::kv_type_from_name(a->kv);
    if (!kv || a->pp < 0 || a->tg < 0 || a->reps < 1 || a->batch < 1) {
      std::cerr << "realm: error: invalid bench arguments\n";
      exit_code = 2;
      return;
    }
    const auto t_load = std::chrono::steady_clock::now();
    model::LoadReport report;
    auto m = model::Model::load(a->model, a->load, &report);
    const double load_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load)
            .count();
    if (!m) {
      std::cerr << "realm: error: " << m.error().message << "\n";
      exit_code = 1;
      return;
    }
    const auto& hp = (*m)->hparams();
    const int threads = resolve_threads(a->threads);
    model::Workspace ws(threads);
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(hp.n_vocab - 1));
    std::vector<float> logits(static_cast<size_t>(hp.n_vocab) * static_cast<size_t>(a->batch));
    auto now = [] { return std::chrono::steady_clock::now(); };
    auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
    std::vector<double> pp_tps, tg_tps;
    for (int r = 0; r < a->reps + 1; ++r) {  // the first repetition warms up and is dropped
      if (a->pp > 0) {
        model::KvCache cache(hp, a->pp, *kv);
        std::vector<int32_t> prompt(static_cast<size_t>(a->pp));
        for (auto& t : prompt) t = tok(rng);
        model::SequenceStep st{
            &cache, prompt, false, {logits.data(), static_cast<size_t>(hp.n_vocab)}};
        auto t0 = now();
        auto s = (*m)->forward({&st, 1}, ws);
        if (!s) {
          std::cerr << "realm: error: " << s.error().message << "\n";
          exit_code = 1;
          return;
        }
        if (r > 0) pp_tps.push_back(static_cast<double>(a->pp) / secs(now() - t0));
      }
      if (a->tg > 0) {
        std::vector<std::unique_ptr<model::KvCache>> caches;
        for (int b = 0; b < a->batch; ++b) {
          caches.push_back(std::make_unique<model::KvCache>(hp, a->depth + a->tg + 1, *kv));
          if (a->depth > 0) {
            std::vector<int32_t> prompt(static_cast<size_t>(a->depth));
            for (auto& t : prompt) t = tok(rng);
            model::SequenceStep st{caches.back().get(),
                                   prompt,
                                   false,
                                   {logits.data(), static_cast<size_t>(hp.n_vocab)}};
            if (auto s = (*m)->forward({&st, 1}, ws); !s) {
              std::cerr << "realm: error: " << s.error().message << "\n";
              exit_code = 1;
              return;
            }
          }
        }
        std::vector<int32_t> ids(static_cast<size_t>(a->batch));
        auto t0 = now();
        for (int64_t i = 0; i < a->tg; ++i) {
          std::vector<model::SequenceStep> steps;
          for (int b = 0; b < a->batch; ++b) {
            ids[static_cast<size_t>(b)] = tok(rng);
            steps.push_back({caches[static_cast<size_t>(b)].get(),
                             {&ids[static_cast<size_t>(b)], 1},
                             false,
                             {logits.data() + b * hp.n_vocab, static_cast<size_t>(hp.n_vocab)}});
          }
          auto s = (*m)->forward(steps, ws);
          if (!s) {
            std::cerr << "realm: error: " << s.error().message << "\n";
            exit_code = 1;
            return;
          }
        }
        if (r > 0) tg_tps.push_back(static_cast<double>(a->tg * a->batch) / secs(now() - t0));
      }
    }
    nlohmann::ordered_json j;
    j["model"] = a->model;
    j["threads"] = threads;
    j["batch"] = a->batch;
    j["depth"] = a->depth;
    if (a->pp > 0) j["pp"] = {{"n", a->pp}, {"tps", median(pp_tps)}, {"runs", pp_tps}};
    if (a->tg > 0) j["tg"] = {{"n", a->tg}, {"tps", median(tg_tps)}, {"runs", tg_tps}};
    j["load_ms"] = load_ms;
    j["pack_cache"] = report.pack_cache;
    j["peak_rss_mb"] = peak_rss_mb();
    auto kt = tensor::active_kernels();
    j["isa"] = kt ? std::string(tensor::isa_name((*kt)->isa)) : std::string("?");
    if (a->json) {
      std::cout << j.dump() << "\n";
    } else {
      if (a->pp > 0)
        std::printf("pp%lld: %.1f t/s\n", static_cast<long long>(a->pp), median(pp_tps));
      if (a->tg > 0) {
        std::printf("tg%lld%s: %.1f t/s\n", static_cast<long long>(a->tg),
                    a->batch > 1 ? (" x" + std::to_string(a->batch)).c_str() : "", median(tg_tps));
      }
    }
    exit_code = 0;
  });
}

}  // namespace realm::cli
