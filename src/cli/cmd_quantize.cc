// `realm quantize IN.gguf OUT.gguf TYPE [-t N] [--allow-requantize]`: llama-quantize's file types
// and per-tensor rules (see src/tensor/quantize_model.h).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "gguf/reader.h"
#include "tensor/quantize_model.h"

namespace realm::cli {

void add_quantize_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "quantize",
      "Quantize a GGUF model like llama-quantize (TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 "
      "Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K)");
  struct Args {
    std::string in, out, type;
    int threads = 0;
    bool allow_requantize = false;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("IN", a->in, "input GGUF file")->required();
  cmd->add_option("OUT", a->out, "output GGUF file")->required();
  cmd->add_option("TYPE", a->type, "llama.cpp file type name, e.g. Q4_K_M")->required();
  cmd->add_option("-t,--threads", a->threads, "Worker threads (default, or 0: all cores)")
      ->check(CLI::Range(0, kMaxThreads));
  cmd->add_flag("--allow-requantize", a->allow_requantize,
                "allow converting tensors that are already quantized");
  cmd->add_flag("-q,--quiet", a->quiet, "print only errors");
  cmd->callback([a, &exit_code] {
    auto fail = [&](const std::string& msg) {
      std::cerr << "realm: error: " << msg << "\n";
      exit_code = 1;
    };
    auto ftype = tensor::file_type_from_name(a->type);
    if (!ftype) return fail(ftype.error().message);
    if (a->in == a->out) return fail("input and output are the same file: " + a->in);
    auto in = gguf::GgufFile::open(a->in);
    if (!in) return fail(in.error().message);
    tensor::QuantizeOptions opt;
    opt.ftype = *ftype;
    opt.n_threads = resolve_threads(a->threads);
    opt.allow_requantize = a->allow_requantize;
    const auto t0 = std::chrono::steady_clock::now();
    auto plan = tensor::quantize_model(*in, a->out, opt);
    if (!plan) return fail(plan.error().message);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!a->quiet) {
      int n_fallback = 0;
      for (const auto& p : *plan) {
        std::string note;
        if (p.fallback) {
          note = "  (fallback from " + std::string(gguf::type_name(p.wanted)) + ": row length " +
                 std::to_string(p.dims[0]) + ")";
        }
        std::printf("%-36s %-5s -> %-5s%s\n", p.name.c_str(),
                    std::string(gguf::type_name(p.from)).c_str(),
                    std::string(gguf::type_name(p.to)).c_str(), note.c_str());
        n_fallback += p.fallback;
      }
      auto out = gguf::GgufFile::open(a->out);
      std::printf(
          "wrote %s: %s, %zu tensors (%d fallback), %llu -> %llu bytes, %.2f s, %d threads\n",
          a->out.c_str(), std::string(tensor::file_type_name(*ftype)).c_str(), plan->size(),
          n_fallback, static_cast<unsigned long long>(in->file_size()),
          static_cast<unsigned long long>(out ? out->file_size() : 0), secs, opt.n_threads);
    }
    exit_code = 0;
  });
}

}  // namespace realm::cli
