// `realm synth OUT.gguf (--preset P | --n-embd --n-layer --n-head --n-head-kv --n-ff --n-ctx)
//  --vocab VOCAB.gguf [--arch A] [--attn-bias] [--tied-output] [--rope-base B]
//  [--rope-scale-linear F] [--rope-attn-factor F] [--rope-llama3 F [--rope-llama3-orig-ctx N]]
//  [--type T] [--seed S] [-t N]`: a random-weight llama-family model.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "gguf/reader.h"
#include "tensor/synth_model.h"

namespace realm::cli {

void add_synth_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "synth", "Write a random-weight llama-family GGUF model (tokenizer copied from --vocab)");
  struct Args {
    std::string out, preset, vocab, type = "F32", name, arch;
    bool attn_bias = false, tied_output = false;
    float rope_base = 0, rope_scale_linear = 0, rope_attn_factor = 0, rope_llama3 = 0;
    uint32_t rope_llama3_orig_ctx = 0;
    uint32_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_ctx = 0;
    uint64_t seed = 0;
    int threads = 0;
    float output_gain = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("OUT", a->out, "output GGUF file")->required();
  cmd->add_option("--preset", a->preset,
                  "tinyllama-1.1b, llama-134m, qwen2-tiny, llama3-tiny or llama-linear-tiny");
  cmd->add_option("--arch", a->arch, "general.architecture: llama (default) or qwen2");
  cmd->add_flag("--attn-bias", a->attn_bias, "add q/k/v biases (attn_*.bias)");
  cmd->add_flag("--tied-output", a->tied_output, "no output.weight (token_embd.weight is reused)");
  cmd->add_option("--rope-base", a->rope_base, "rope.freq_base (default 10000)");
  cmd->add_option("--rope-scale-linear", a->rope_scale_linear,
                  "linear RoPE scaling factor (rope.scaling.type linear)");
  cmd->add_option("--rope-attn-factor", a->rope_attn_factor,
                  "rope.scaling.attn_factor (cos and sin scaled by it)");
  cmd->add_option(
      "--rope-llama3", a->rope_llama3,
      "llama3 RoPE scaling factor: writes rope_freqs.weight (low/high freq factor 1/4)");
  cmd->add_option("--rope-llama3-orig-ctx", a->rope_llama3_orig_ctx,
                  "original context of the llama3 RoPE scaling (default 8192)");
  cmd->add_option("--n-embd", a->n_embd, "embedding width");
  cmd->add_option("--n-layer", a->n_layer, "number of blocks");
  cmd->add_option("--n-head", a->n_head, "attention heads");
  cmd->add_option("--n-head-kv", a->n_head_kv, "key/value heads (default: --n-head)");
  cmd->add_option("--n-ff", a->n_ff, "feed-forward width");
  cmd->add_option("--n-ctx", a->n_ctx, "context length (default 2048)");
  cmd->add_option("--vocab", a->vocab, "GGUF file whose tokenizer.* keys are copied")->required();
  cmd->add_option("--type", a->type, "llama.cpp file type, e.g. F32 F16 Q8_0 Q4_K_M (default F32)");
  cmd->add_option("--seed", a->seed, "random seed (default 0)");
  cmd->add_option("--name", a->name, "general.name");
  cmd->add_option("--output-gain", a->output_gain,
                  "std of output.weight times sqrt(n_embd); about the logit std (default 5)");
  cmd->add_option("-t,--threads", a->threads, "Worker threads (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->callback([a, &exit_code] {
    auto fail = [&](const std::string& msg) {
      std::cerr << "realm: error: " << msg << "\n";
      exit_code = 1;
    };
    tensor::SynthConfig c;
    if (!a->preset.empty()) {
      auto p = tensor::synth_preset(a->preset);
      if (!p) return fail(p.error().message);
      c = *p;
    }
    if (a->n_embd) c.n_embd = a->n_embd;
    if (a->n_layer) c.n_layer = a->n_layer;
    if (a->n_head) c.n_head = a->n_head;
    if (a->n_head_kv) c.n_head_kv = a->n_head_kv;
    if (!c.n_head_kv) c.n_head_kv = c.n_head;
    if (a->n_ff) c.n_ff = a->n_ff;
    if (a->n_ctx) c.n_ctx = a->n_ctx;
    if (!a->name.empty()) c.name = a->name;
    if (a->output_gain > 0) c.gain_output = a->output_gain;
    if (!a->arch.empty()) c.arch = a->arch;
    if (a->attn_bias) c.attn_bias = true;
    if (a->tied_output) c.tied_output = true;
    if (a->rope_base > 0) c.rope_freq_base = a->rope_base;
    if (a->rope_scale_linear > 0) c.rope_scale_linear = a->rope_scale_linear;
    if (a->rope_attn_factor > 0) c.rope_attn_factor = a->rope_attn_factor;
    if (a->rope_llama3 > 0) c.llama3_rope.factor = a->rope_llama3;
    if (a->rope_llama3_orig_ctx > 0) c.llama3_rope.original_context = a->rope_llama3_orig_ctx;
    if (a->preset.empty() && (!c.n_embd || !c.n_layer || !c.n_head || !c.n_ff)) {
      return fail("synth: give --preset or --n-embd, --n-layer, --n-head and --n-ff");
    }
    auto ftype = tensor::file_type_from_name(a->type);
    if (!ftype) return fail(ftype.error().message);
    c.ftype = *ftype;
    c.seed = a->seed;
    c.n_threads = resolve_threads(a->threads);
    auto vocab = gguf::GgufFile::open(a->vocab);
    if (!vocab) return fail(vocab.error().message);
    const auto t0 = std::chrono::steady_clock::now();
    auto st = tensor::write_synth_model(c, *vocab, a->out);
    if (!st) return fail(st.error().message);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const uint64_t n_vocab = vocab->find("tokenizer.ggml.tokens")->size();
    std::printf(
        "wrote %s: %s n_embd %u n_layer %u n_head %u n_head_kv %u n_ff %u n_ctx %u, vocab "
        "%llu, %llu parameters, %s, seed %llu, %.1f s\n",
        a->out.c_str(), c.arch.c_str(), c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, c.n_ctx,
        static_cast<unsigned long long>(n_vocab),
        static_cast<unsigned long long>(tensor::synth_param_count(c, n_vocab)),
        std::string(tensor::file_type_name(c.ftype)).c_str(),
        static_cast<unsigned long long>(c.seed), secs);
    exit_code = 0;
  });
}

}  // namespace realm::cli
