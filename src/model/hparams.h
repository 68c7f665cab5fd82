// Hyperparameters of a llama-family model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/reader.h"
#include "util/expected.h"

namespace realm::model {

// How RoPE pairs the dimensions of a head: NORM rotates (2i, 2i+1) (llama), NEOX rotates
// (i, i + n_rot/2) (qwen2 and other NeoX-style models).
enum class RopeType { NORM, NEOX };

struct Hparams {
  std::string arch;  // general.architecture
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;  // attention.key_length (= value length), default n_embd / n_head
  int64_t n_ff = 0;
  int64_t n_rot = 0;  // rope.dimension_count, default head_dim
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;   // 1 / rope.scaling.factor for linear scaling
  float rope_attn_factor = 1.0f;  // rope.scaling.attn_factor: scales RoPE's cos and sin
  RopeType rope_type = RopeType::NORM;

  int64_t n_embd_q() const { return n_head * head_dim; }
  int64_t n_embd_kv() const { return n_head_kv * head_dim; }
};

// Reads and validates the hyperparameters; errors name the key and value.
Expected<Hparams> read_hparams(const gguf::GgufFile& file);

}  // namespace realm::model
