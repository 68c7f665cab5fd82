// Random-weight llama-family models (llama, qwen2) for benchmarks and tests: llama.cpp loads them,
// their logits are not flat, and any ftype llama-quantize knows can be written directly (generated
// in f32 row by row and quantized with llama.cpp's per-tensor rules, so large models never need an
// f32 copy). The architecture options (q/k/v biases, tied output, RoPE base and scaling, Llama 3
// frequency factors) exist so that each loader path can be compared with llama.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gguf/reader.h"
#include "tensor/quantize_model.h"
#include "util/expected.h"

namespace realm::tensor {

// Llama 3 RoPE frequency factors (rope_freqs.weight), computed from the parameters of Hugging
// Face's "llama3" rope_scaling as llama.cpp's converter does; factor 0 writes none.
struct SynthLlama3Rope {
  float factor = 0.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  uint32_t original_context = 8192;
};

struct SynthConfig {
  std::string name = "realm-synth";
  std::string arch = "llama";  // general.architecture: "llama" or "qwen2"
  uint32_t n_embd = 0;
  uint32_t n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t n_ff = 0;
  uint32_t n_ctx = 2048;
  bool attn_bias = false;    // attn_q/k/v.bias (qwen2 has them)
  bool tied_output = false;  // no output.weight: llama.cpp then uses token_embd.weight
  float rope_freq_base = 10000.0f;
  float rope_scale_linear = 0.0f;  // > 0: rope.scaling.type "linear" with this factor
  float rope_attn_factor = 0.0f;   // > 0: rope.scaling.attn_factor (scales RoPE's cos and sin)
  SynthLlama3Rope llama3_rope;
  float rms_eps = 1e-5f;
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
  float bias_std = 0.5f;
};

// "tinyllama-1.1b" (2048, 22 layers, 32 heads, 4 KV heads, ffn 5632), "llama-134m" (768, 12,
// 12, 12, ffn 2048), or a tiny (128, 2 layers, 2 heads, 1 KV head, ffn 256) test model of a
// llama-family variant: "qwen2-tiny" (qwen2: q/k/v biases, tied output, NeoX RoPE, base 1e6),
// "llama3-tiny" (rope_freqs.weight of llama3 scaling, base 500000, untied output) or
// "llama-linear-tiny" (linear RoPE scaling, factor 4, rope.scaling.attn_factor 0.8, tied output).
Expected<SynthConfig> synth_preset(std::string_view name);

// Number of weights the model has with a vocabulary of n_vocab tokens.
uint64_t synth_param_count(const SynthConfig& c, uint64_t n_vocab);

// Writes the model to `out_path`, with every tokenizer.* key copied from `vocab`. The weights
// depend only on the seed and the shape, not on the thread count.
Status write_synth_model(const SynthConfig& c, const gguf::GgufFile& vocab,
                         const std::string& out_path);

}  // namespace realm::tensor
