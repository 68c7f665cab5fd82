// Random-weight llama models for benchmarks and tests: llama.cpp loads them, their logits are not
// flat, and any ftype llama-quantize knows can be written directly (generated in f32 row by row
// and quantized with llama.cpp's per-tensor rules, so large models never need an f32 copy).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gguf/reader.h"
#include "tensor/quantize_model.h"
#include "util/expected.h"

namespace realm::tensor {

struct SynthConfig {
  std::string name = "realm-synth";
  uint32_t n_embd = 0;
  uint32_t n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t n_ff = 0;
  uint32_t n_ctx = 2048;
  uint64_t seed = 0;
  FileType ftype = FileType::ALL_F32;
  int n_threads = 1;
  // Standard deviations: matrices get gain / sqrt(row length); the output gain sets the logit
  // spread (logit std is about output_gain: the final norm makes the hidden state unit-RMS).
  float gain_qk = 1.4f;
  float gain = 1.0f;
  float gain_output = 5.0f;
  float embd_std = 1.0f;
  float norm_std = 0.1f;  // norm weights are N(1, norm_std^2)
};

// "tinyllama-1.1b" (2048, 22 layers, 32 heads, 4 KV heads, ffn 5632) or "llama-134m" (768, 12,
// 12, 12, ffn 2048).
Expected<SynthConfig> synth_preset(std::string_view name);

// Number of weights the model has with a vocabulary of n_vocab tokens (untied output).
uint64_t synth_param_count(const SynthConfig& c, uint64_t n_vocab);

// Writes the model to `out_path`, with every tokenizer.* key copied from `vocab`. The weights
// depend only on the seed and the shape, not on the thread count.
Status write_synth_model(const SynthConfig& c, const gguf::GgufFile& vocab,
                         const std::string& out_path);

}  // namespace realm::tensor
