// `realm run -m MODEL -p PROMPT [...]`: generates a continuation of PROMPT (BOS added per the
// model's metadata, no chat template) and streams it to stdout; `--json` prints one object at the
// end instead. By default the generation loop runs in the sandbox, in the default guest module
// (bin/guests/realm_default.wasm, built into the binary) or in `--guest FILE.wasm`; `--no-sandbox`
// runs the same loop natively (engine::generate). Both give the same ids.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "engine/generate.h"
#if REALM_HAVE_SANDBOX
#include "sandbox/sandbox.h"
#endif

#if REALM_HAVE_DEFAULT_GUEST
// bin/guests/realm_default.wasm, built into the binary (cmake/embed_file.cmake).
extern const unsigned char realm_default_guest_wasm[];
extern const unsigned long realm_default_guest_wasm_size;
#endif

namespace realm::cli {
namespace {

struct RunArgs {
  model::LoadOptions load;  // set by resolve_model_arg
  std::string model, prompt, logits_file, kv_type = "f16";
  int32_t n_predict = 128;
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
  int32_t top_k = 40, repeat_last_n = 64;
  int64_t seed = -1;
  int threads = 0;
  int64_t ctx = 0;
  int64_t batch = 512;  // the engine's per-pass token budget
  bool json = false;
  std::vector<std::string> stop;
  bool no_sandbox = false;
  std::string guest;  // custom guest module (default: the built-in default guest)
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
  if (!model::kv_type_from_name(a.kv_type)) {
    return make_error("--kv-type must be f16 or f32, got '", a.kv_type, "'");
  }
  if (a.no_sandbox && !a.guest.empty()) return make_error("--guest needs the sandbox");
  return {};
}

// Writes float32 logits, little-endian (the host's byte order), as llama-debug --save-logits.
bool write_logits(const std::string& path, const std::vector<float>& logits) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  bool ok = std::fwrite(logits.data(), sizeof(float), logits.size(), f) == logits.size();
  return std::fclose(f) == 0 && ok;
}

struct RunOutput {
  std::vector<int32_t> ids;
  std::string text;
  std::string finish;
  double prompt_ms = 0, gen_ms = 0;
  int64_t n_gen_timed = 0;
};

#if REALM_HAVE_SANDBOX
// The guest module a run uses: --guest FILE, else the built-in default guest.
Expected<std::shared_ptr<const sandbox::WasmModule>> guest_module(sandbox::Sandbox& sb,
                                                                  const std::string& path) {
  if (!path.empty()) return sb.load_module(path);
#if REALM_HAVE_DEFAULT_GUEST
  return sb.compile_module(
      std::span<const uint8_t>(realm_default_guest_wasm, realm_default_guest_wasm_size));
#else
  return make_error(ErrorCode::NOT_FOUND,
                    "this build has no default guest (no wasm32 toolchain was found when it was "
                    "built): pass --guest FILE.wasm or --no-sandbox");
#endif
}

// Runs the request in the sandbox: one tenant, the model shared under its file stem.
Expected<RunOutput> run_sandboxed(const RunArgs& a, std::shared_ptr<const model::Model> model,
                                  int threads, int64_t n_ctx, uint64_t seed) {
  sandbox::SandboxOptions so;
  so.n_workers = 1;
  so.kv_type = *model::kv_type_from_name(a.kv_type);
  auto sb = sandbox::Sandbox::create(so);
  if (!sb) return sb.take_error();
  const std::string name = std::filesystem::path(a.model).stem().string();
  REALM_TRY((*sb)->add_model(name, model, {threads, a.batch}));
  auto module = guest_module(**sb, a.guest);
  if (!module) return module.take_error();
  sandbox::TenantRecord tenant;
  tenant.id = "cli";
  tenant.allowed_models = {name};
  // The CLI user is trusted with their own machine: generous time and token limits.
  tenant.limits.call_time = std::chrono::hours(24);
  tenant.limits.token_budget = std::max<int64_t>(n_ctx, 1) + 1;
  tenant.limits.max_session_ctx = std::max<int64_t>(n_ctx, 1);
  REALM_TRY((*sb)->add_tenant(tenant, *module));

  nlohmann::json req;
  req["model"] = name;
  req["prompt"] = a.prompt;
  req["max_tokens"] = a.n_predict;
  req["temperature"] = a.temp;
  req["top_k"] = a.top_k;
  req["top_p"] = a.top_p;
  req["min_p"] = a.min_p;
  req["repeat_penalty"] = a.repeat_penalty;
  req["repeat_last_n"] = a.repeat_last_n;
  req["seed"] = seed;
  req["stop"] = a.stop;
  req["n_ctx"] = n_ctx;

  RunOutput out;
  const auto t0 = std::chrono::steady_clock::now();
  auto t_first = t0;
  bool first = true;
  std::string bad_event;
  auto on_event = [&](int kind, std::string_view text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      bad_event = std::string(text.substr(0, 200));
      return true;
    }
    if (kind == 2) {
      out.finish = j.value("finish_reason", std::string("?"));
      return true;
    }
    if (first) {
      t_first = std::chrono::steady_clock::now();
      first = false;
    }
    const int32_t id = j.value("id", -1);
    if (id >= 0) out.ids.push_back(id);
    const std::string piece = j.value("text", std::string());
    out.text += piece;
    if (!a.json && !piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  };
  auto r = (*sb)->run_request("cli", req.dump(), on_event);
  const auto t_end = std::chrono::steady_clock::now();
  if (!r.ok()) return make_error(r.message);
  if (!bad_event.empty())
    return make_error("the guest emitted an event that is not a JSON object: ", bad_event);
  // The prompt time runs to the first token (prefill + one sample), as in engine::generate.
  out.prompt_ms = std::chrono::duration<double, std::milli>(t_first - t0).count();
  out.gen_ms = std::chrono::duration<double, std::milli>(t_end - t_first).count();
  out.n_gen_timed = out.ids.empty() ? 0 : static_cast<int64_t>(out.ids.size()) - 1;
  return out;
}
#endif

int print_result(const RunArgs& a, const std::vector<int32_t>& prompt_ids, const RunOutput& r) {
  const double prompt_tps = r.prompt_ms > 0 ? 1000.0 * prompt_ids.size() / r.prompt_ms : 0;
  const double gen_tps = r.gen_ms > 0 ? 1000.0 * r.n_gen_timed / r.gen_ms : 0;
  if (a.json) {
    nlohmann::ordered_json j;
    j["prompt_ids"] = prompt_ids;
    j["ids"] = r.ids;
    j["text"] = r.text;
    j["stop"] = r.finish;
    j["timings"] = {{"prompt_ms", r.prompt_ms},
                    {"prompt_tps", prompt_tps},
                    {"gen_ms", r.gen_ms},
                    {"gen_tps", gen_tps}};
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::fputs("\n", stdout);
    std::fprintf(stderr,
                 "realm: prompt %zu tokens in %.1f ms (%.1f t/s), generated %zu tokens "
                 "(%.1f t/s), stop: %s\n",
                 prompt_ids.size(), r.prompt_ms, prompt_tps, r.ids.size(), gen_tps,
                 r.finish.c_str());
  }
  return 0;
}

int run(const RunArgs& a) {
  if (auto st = validate(a); !st) {
    std::cerr << "realm: error: " << st.error().message << "\n";
    return 2;
  }
  auto model = model::Model::load(a.model, a.load);
  if (!model) {
    std::cerr << "realm: error: " << model.error().message << "\n";
    return 1;
  }
  auto tokenizer = tok::Tokenizer::from_gguf((*model)->file());
  if (!tokenizer) {
    std::cerr << "realm: error: " << a.model << ": " << tokenizer.error().message << "\n";
    return 1;
  }
  for (const std::string& w : tokenizer->vocab().warnings()) {
    std::cerr << "realm: warning: " << a.model << ": " << w << "\n";
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

  const int threads = resolve_threads(a.threads);
  // BOS per the metadata; special-token text in the prompt is parsed, as llama.cpp does.
  std::vector<int32_t> prompt_ids = tokenizer->encode(a.prompt, true, true);
  if (!a.no_sandbox) {
#if REALM_HAVE_SANDBOX
    auto out = run_sandboxed(a, *model, threads, gp.n_ctx, gp.sampling.seed);
    if (!out) {
      std::cerr << "realm: error: " << out.error().message << "\n";
      return 1;
    }
    if (!a.logits_file.empty()) {
      // The guest keeps its logits; the host recomputes the prompt's last-position logits with
      // one native prefill, which gives the same bits (batch-invariant forward pass).
      engine::Engine engine(*model, {threads, a.batch});
      auto session = engine.open_session(static_cast<int64_t>(prompt_ids.size()), gp.kv_type);
      auto step = engine.decode(*session, prompt_ids);
      if (!step || !write_logits(a.logits_file, step->logits)) {
        std::cerr << "realm: error: cannot write logits to " << a.logits_file << "\n";
        return 1;
      }
    }
    return print_result(a, prompt_ids, *out);
#else
    std::cerr << "realm: error: this build has no sandbox (V8 not found); use --no-sandbox\n";
    return 1;
#endif
  }
  engine::Engine engine(*model, {threads, a.batch});
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
  if (!a.logits_file.empty() && !write_logits(a.logits_file, r->prompt_logits)) {
    std::cerr << "realm: error: cannot write logits to " << a.logits_file << "\n";
    return 1;
  }

  RunOutput out;
  out.ids = r->ids;
  out.text = r->text;
  out.finish = std::string(engine::finish_reason_name(r->finish));
  out.prompt_ms = r->prompt_ms;
  out.gen_ms = r->gen_ms;
  out.n_gen_timed = r->n_gen_timed;
  return print_result(a, r->prompt_ids, out);
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "Generate a continuation of a prompt");
  cmd->add_option("-m,--model", a->model, "GGUF file or pulled model name")->required();
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text (BOS added per the model)")->required();
  cmd->add_option("-n,--n-predict", a->n_predict, "Tokens to generate (default 128)");
  cmd->add_option("--temp", a->temp, "Temperature; 0 = greedy (default 0.8)");
  cmd->add_option("--top-k", a->top_k, "Top-k, <= 0 off (default 40)");
  cmd->add_option("--top-p", a->top_p, "Top-p, 1 off (default 0.95)");
  cmd->add_option("--min-p", a->min_p, "Min-p, 0 off (default 0.05)");
  cmd->add_option("--repeat-penalty", a->repeat_penalty, "Repetition penalty (default 1.0 = off)");
  cmd->add_option("--repeat-last-n", a->repeat_last_n, "Penalty window in tokens (default 64)");
  cmd->add_option("--seed", a->seed, "Sampling seed (default random)");
  cmd->add_option("-t,--threads", a->threads, "Threads (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->add_option("-c,--ctx-size", a->ctx, "Context size (default, or 0: min(trained, 4096))")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-b,--batch-size", a->batch,
                  "Most tokens per forward pass; longer prompts run in several (default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--kv-type", a->kv_type, "KV cache type: f16 (default) or f32");
  cmd->add_option("--stop", a->stop, "Stop string (repeatable)");
  cmd->add_flag("--json", a->json, "Print one JSON object at the end instead of streaming");
  cmd->add_flag("--no-sandbox", a->no_sandbox,
                "Run the generation loop natively instead of in the WebAssembly sandbox");
  cmd->add_option("--guest", a->guest,
                  "Run this guest module (.wasm, guest ABI v1) instead of the default guest");
  cmd->add_option("--logits", a->logits_file,
                  "Write the float32 logits of the last prompt position to FILE");
  cmd->callback([a, &exit_code] {
    if (resolve_model_arg(a->model, exit_code, &a->load)) exit_code = run(*a);
  });
}

}  // namespace realm::cli
