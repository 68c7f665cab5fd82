// `realm run -m MODEL -p PROMPT [...]`: generates a continuation of PROMPT (BOS added per the
// model's metadata, no chat template) and streams it to stdout; `--json` prints one object at the
// end instead.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/commands.h"
#include "engine/generate.h"

namespace realm::cli {
namespace {

struct RunArgs {
  std::string model, prompt, logits_file, kv_type = "f16";
  int32_t n_predict = 128;
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
  int32_t top_k = 40, repeat_last_n = 64;
  int64_t seed = -1;
  int threads = 0;
  int64_t ctx = 0;
  bool json = false;
  std::vector<std::string> stop;
};

Status validate(const RunArgs& a) {
  if (a.n_predict < 0) return make_error("-n must be >= 0, got ", a.n_predict);
  if (a.top_p <= 0.0f || a.top_p > 1.0f)
    return make_error("--top-p must be in (0, 1], got ", a.top_p);
  if (a.min_p < 0.0f || a.min_p > 1.0f)
    return make_error("--min-p must be in [0, 1], got ", a.min_p);
  if (a.repeat_penalty <= 0.0f) {
    return make_error("--repeat-penalty must be > 0, got ", a.repeat_penalty);
  }
  if (a.threads < 0 || a.threads > 512) return make_error("-t must be in 1..512, got ", a.threads);
  if (a.ctx < 0) return make_error("-c must be > 0, got ", a.ctx);
  if (!model::kv_type_from_name(a.kv_type)) {
    return make_error("--kv-type must be f16 or f32, got '", a.kv_type, "'");
  }
  return {};
}

int run(const RunArgs& a) {
  if (auto st = validate(a); !st) {
    std::cerr << "realm: error: " << st.error().message << "\n";
    return 2;
  }
  auto model = model::Model::load(a.model);
  if (!model) {
    std::cerr << "realm: error: " << model.error().message << "\n";
    return 1;
  }
  auto tokenizer = tok::Tokenizer::from_gguf((*model)->file());
  if (!tokenizer) {
    std::cerr << "realm: error: " << a.model << ": " << tokenizer.error().message << "\n";
    return 1;
  }
  const auto& hp = (*model)->hparams();
  engine::GenerateParams gp;
  gp.max_tokens = a.n_predict;
  gp.n_ctx = a.ctx > 0 ? a.ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
  gp.kv_type = *model::kv_type_from_name(a.kv_type);
  gp.stop = a.stop;
  gp.sampling.temperature = a.temp;
  gp.sampling.top_k = a.top_k;
  gp.sampling.top_p = a.top_p;
  gp.sampling.min_p = a.min_p;
  gp.sampling.repeat_penalty = a.repeat_penalty;
  gp.sampling.penalty_last_n = a.repeat_last_n;
  gp.sampling.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : std::random_device{}();

  const int threads = a.threads > 0
                          ? a.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  engine::Engine engine(*model, {threads, 512});
  // BOS per the metadata; special-token text in the prompt is parsed, as llama.cpp does.
  std::vector<int32_t> prompt_ids = tokenizer->encode(a.prompt, true, true);
  auto on_token = [&](const engine::TokenEvent& ev) {
    if (!a.json && !ev.text.empty()) {
      std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  };
  auto r = engine::generate(engine, *tokenizer, prompt_ids, gp, on_token);
  if (!r) {
    std::cerr << "realm: error: " << r.error().message << "\n";
    return 1;
  }
  if (!a.logits_file.empty()) {
    std::FILE* f = std::fopen(a.logits_file.c_str(), "wb");
    bool ok = f && std::fwrite(r->prompt_logits.data(), sizeof(float), r->prompt_logits.size(),
                               f) == r->prompt_logits.size();
    if (f) ok = std::fclose(f) == 0 && ok;
    if (!ok) {
      std::cerr << "realm: error: cannot write logits to " << a.logits_file << "\n";
      return 1;
    }
  }
  const double prompt_tps = r->prompt_ms > 0 ? 1000.0 * r->prompt_ids.size() / r->prompt_ms : 0;
  const double gen_tps = r->gen_ms > 0 ? 1000.0 * r->n_gen_timed / r->gen_ms : 0;
  if (a.json) {
    nlohmann::ordered_json j;
    j["prompt_ids"] = r->prompt_ids;
    j["ids"] = r->ids;
    j["text"] = r->text;
    j["stop"] = std::string(engine::finish_reason_name(r->finish));
    j["timings"] = {{"prompt_ms", r->prompt_ms},
                    {"prompt_tps", prompt_tps},
                    {"gen_ms", r->gen_ms},
                    {"gen_tps", gen_tps}};
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::fputs("\n", stdout);
    std::fprintf(stderr,
                 "realm: prompt %zu tokens in %.1f ms (%.1f t/s), generated %zu tokens "
                 "(%.1f t/s), stop: %s\n",
                 r->prompt_ids.size(), r->prompt_ms, prompt_tps, r->ids.size(), gen_tps,
                 std::string(engine::finish_reason_name(r->finish)).c_str());
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "Generate a continuation of a prompt");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text (BOS added per the model)")->required();
  cmd->add_option("-n,--n-predict", a->n_predict, "Tokens to generate (default 128)");
  cmd->add_option("--temp", a->temp, "Temperature; 0 = greedy (default 0.8)");
  cmd->add_option("--top-k", a->top_k, "Top-k, <= 0 off (default 40)");
  cmd->add_option("--top-p", a->top_p, "Top-p, 1 off (default 0.95)");
  cmd->add_option("--min-p", a->min_p, "Min-p, 0 off (default 0.05)");
  cmd->add_option("--repeat-penalty", a->repeat_penalty, "Repetition penalty (default 1.0 = off)");
  cmd->add_option("--repeat-last-n", a->repeat_last_n, "Penalty window in tokens (default 64)");
  cmd->add_option("--seed", a->seed, "Sampling seed (default random)");
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)");
  cmd->add_option("-c,--ctx-size", a->ctx, "Context size (default min(trained, 4096))");
  cmd->add_option("--kv-type", a->kv_type, "KV cache type: f16 (default) or f32");
  cmd->add_option("--stop", a->stop, "Stop string (repeatable)");
  cmd->add_flag("--json", a->json, "Print one JSON object at the end instead of streaming");
  cmd->add_option("--logits", a->logits_file,
                  "Write the float32 logits of the last prompt position to FILE");
  cmd->callback([a, &exit_code] { exit_code = run(*a); });
}

}  // namespace realm::cli
