#include "model/hparams.h"

#include <cmath>
#include <string_view>

namespace realm::model {
namespace {

// The value of a per-model integer key that may also be stored as a per-layer array whose
// entries are all equal (llama.cpp accepts both); other arrays are unsupported here.
Expected<int64_t> read_int(const gguf::GgufFile& f, const std::string& key, int64_t fallback,
                           bool required) {
  const gguf::Value* v = f.find(key);
  if (!v) {
    if (required) return make_error("missing metadata key '", key, "'");
    return fallback;
  }
  if (auto u = v->as_uint()) return static_cast<int64_t>(*u);
  if (v->is_array() && v->size() > 0) {
    auto first = v->int_at(0);
    for (uint64_t i = 1; first && i < v->size(); ++i) {
      if (v->int_at(i) != first) {
        return make_error("metadata key '", key,
                          "' varies per layer, which this architecture does not support");
      }
    }
    if (first && *first >= 0) return *first;
  }
  return make_error("metadata key '", key, "' is not a non-negative integer");
}

}  // namespace

Expected<Hparams> read_hparams(const gguf::GgufFile& f) {
  Hparams hp;
  hp.arch = std::string(f.architecture());
  if (hp.arch == "llama" || hp.arch == "mistral") {
    hp.rope_type = RopeType::NORM;
  } else if (hp.arch == "qwen2") {
    hp.rope_type = RopeType::NEOX;  // q/k/v biases are optional tensors, as in llama.cpp
  } else {
    return make_error("unsupported architecture '", hp.arch,
                      "' (supported: llama, mistral, qwen2)");
  }
  const std::string p = hp.arch + ".";
  auto get = [&](const char* key, int64_t fallback, bool required) {
    return read_int(f, p + key, fallback, required);
  };
  auto n_embd = get("embedding_length", 0, true);
  if (!n_embd) return n_embd.take_error();
  auto n_layer = get("block_count", 0, true);
  if (!n_layer) return n_layer.take_error();
  auto n_head = get("attention.head_count", 0, true);
  if (!n_head) return n_head.take_error();
  auto n_ff = get("feed_forward_length", 0, true);
  if (!n_ff) return n_ff.take_error();
  auto n_ctx = get("context_length", 2048, false);
  if (!n_ctx) return n_ctx.take_error();
  hp.n_embd = *n_embd;
  hp.n_layer = *n_layer;
  hp.n_head = *n_head;
  hp.n_ff = *n_ff;
  hp.n_ctx_train = *n_ctx;
  if (hp.n_embd <= 0 || hp.n_layer <= 0 || hp.n_head <= 0 || hp.n_ff <= 0) {
    return make_error("invalid hyperparameters: n_embd ", hp.n_embd, ", n_layer ", hp.n_layer,
                      ", n_head ", hp.n_head, ", n_ff ", hp.n_ff);
  }
  auto n_head_kv = get("attention.head_count_kv", hp.n_head, false);
  if (!n_head_kv) return n_head_kv.take_error();
  hp.n_head_kv = *n_head_kv;
  if (hp.n_head_kv <= 0 || hp.n_head % hp.n_head_kv != 0) {
    return make_error("attention.head_count_kv ", hp.n_head_kv, " does not divide head_count ",
                      hp.n_head);
  }
  auto head_dim = get("attention.key_length", hp.n_embd / hp.n_head, false);
  if (!head_dim) return head_dim.take_error();
  auto v_dim = get("attention.value_length", *head_dim, false);
  if (!v_dim) return v_dim.take_error();
  hp.head_dim = *head_dim;
  if (hp.head_dim <= 0 || hp.head_dim % 2 != 0 || *v_dim != hp.head_dim) {
    return make_error("unsupported head dimensions: key ", hp.head_dim, ", value ", *v_dim);
  }
  auto n_rot = get("rope.dimension_count", hp.head_dim, false);
  if (!n_rot) return n_rot.take_error();
  hp.n_rot = *n_rot;
  if (hp.n_rot <= 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) {
    return make_error("rope.dimension_count ", hp.n_rot, " is invalid for head dimension ",
                      hp.head_dim);
  }
  if (auto eps = f.get_float(p + "attention.layer_norm_rms_epsilon")) {
    hp.rms_eps = static_cast<float>(*eps);
  }
  if (auto base = f.get_float(p + "rope.freq_base")) hp.rope_freq_base = static_cast<float>(*base);
  // As llama.cpp: the type defaults to linear; "none" ignores the factor; the factor may also come
  // from the older key rope.scale_linear; a factor of 0 means no scaling. YaRN and LongRoPE need
  // more than a frequency scale and are refused rather than run wrongly.
  auto scaling = f.get_string(p + "rope.scaling.type");
  if (scaling && *scaling != "none" && *scaling != "linear") {
    return make_error("unsupported rope scaling type '", *scaling, "' (supported: none, linear)");
  }
  auto factor = f.get_float(p + "rope.scaling.factor");
  if (!factor) factor = f.get_float(p + "rope.scale_linear");
  if (factor && scaling.value_or("linear") == "linear" && *factor != 0.0) {
    if (!(*factor > 0.0) || !std::isfinite(*factor)) {
      return make_error("invalid rope scaling factor ", *factor);
    }
    hp.rope_freq_scale = 1.0f / static_cast<float>(*factor);  // in float, as llama.cpp
  }
  if (auto attn_factor = f.get_float(p + "rope.scaling.attn_factor")) {
    if (!(*attn_factor > 0.0) || !std::isfinite(*attn_factor)) {
      return make_error("invalid rope.scaling.attn_factor ", *attn_factor);
    }
    hp.rope_attn_factor = static_cast<float>(*attn_factor);
  }
  const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
  auto vocab = get("vocab_size", tokens ? static_cast<int64_t>(tokens->size()) : 0, false);
  if (!vocab) return vocab.take_error();
  hp.n_vocab = *vocab;
  if (hp.n_vocab <= 0) return make_error("the model has no vocabulary");
  return hp;
}

}  // namespace realm::model
