// `realm perplexity -m MODEL -f TEXT [-c CTX]`: perplexity computed the way llama-perplexity
// chunks and scores the text; prints the running estimate per chunk and the final value.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "engine/perplexity.h"

namespace realm::cli {

void add_perplexity_command(CLI::App& app, int& exit_code) {
  struct Args {
    model::LoadOptions load;  // set by resolve_model_arg
    std::string model, file;
    int64_t ctx = 512;
    int threads = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a text, as llama-perplexity");
  cmd->add_option("-m,--model", a->model, "GGUF file or pulled model name")->required();
  cmd->add_option("-f,--file", a->file, "Text file")->required();
  cmd->add_option("-c,--ctx-size", a->ctx, "Chunk size in tokens (default 512)");
  cmd->add_option("-t,--threads", a->threads, "Threads (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->add_flag("--json", a->json, "Print one JSON object at the end");
  cmd->callback([a, &exit_code] {
    if (!resolve_model_arg(a->model, exit_code, &a->load)) return;
    std::ifstream in(a->file, std::ios::binary);
    if (!in) {
      std::cerr << "realm: error: cannot read '" << a->file << "'\n";
      exit_code = 1;
      return;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto model = model::Model::load(a->model, a->load);
    if (!model) {
      std::cerr << "realm: error: " << model.error().message << "\n";
      exit_code = 1;
      return;
    }
    auto tokenizer = tok::Tokenizer::from_gguf((*model)->file());
    if (!tokenizer) {
      std::cerr << "realm: error: " << tokenizer.error().message << "\n";
      exit_code = 1;
      return;
    }
    const int threads = resolve_threads(a->threads);
    engine::Engine engine(*model, {threads, std::max<int64_t>(a->ctx, 1)});
    auto r = engine::perplexity(engine, *tokenizer, ss.str(), a->ctx, [&](int64_t i, double ppl) {
      if (!a->json) {
        std::printf("[%lld]%.4f,", static_cast<long long>(i), ppl);
        std::fflush(stdout);
      }
    });
    if (!r) {
      std::cerr << "realm: error: " << r.error().message << "\n";
      exit_code = 1;
      return;
    }
    if (a->json) {
      nlohmann::ordered_json j;
      j["ctx"] = a->ctx;
      j["n_tokens"] = r->n_tokens;
      j["n_chunks"] = r->running.size();
      j["running"] = r->running;
      j["ppl"] = r->ppl;
      j["stderr"] = r->stderr_ppl;
      std::cout << j.dump() << "\n";
    } else {
      std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->stderr_ppl);
    }
    exit_code = 0;
  });
}

}  // namespace realm::cli
