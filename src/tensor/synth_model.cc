#include "tensor/synth_model.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <thread>
#include <vector>

#include "gguf/writer.h"
#include "tensor/type_table.h"

namespace realm::tensor {
namespace {

using gguf::GgmlType;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Standard normal samples (Box-Muller over a splitmix64 stream); one generator per row, seeded
// from (seed, tensor, row), so rows can be generated in any order by any thread.
class RowNormal {
 public:
  RowNormal(uint64_t seed, uint64_t tensor, uint64_t row) {
    state_ = seed;
    splitmix64(state_);
    state_ ^= tensor * 0xd1b54a32d192ed03ull;
    splitmix64(state_);
    state_ ^= row * 0x8cb92ba72f3d8dd7ull;
  }
  void fill(float* out, uint64_t n, float mean, float std) {
    uint64_t i = 0;
    for (; i + 1 < n; i += 2) {
      double z0, z1;
      next_pair(z0, z1);
      out[i] = static_cast<float>(mean + std * z0);
      out[i + 1] = static_cast<float>(mean + std * z1);
    }
    if (i < n) {
      double z0, z1;
      next_pair(z0, z1);
      out[i] = static_cast<float>(mean + std * z0);
    }
  }

 private:
  void next_pair(double& z0, double& z1) {
    // u1 in (0, 1], u2 in [0, 1), 53-bit resolution.
    const double u1 = ((splitmix64(state_) >> 11) + 1) * 0x1p-53;
    const double u2 = (splitmix64(state_) >> 11) * 0x1p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 2.0 * std::numbers::pi * u2;
    z0 = r * std::cos(a);
    z1 = r * std::sin(a);
  }
  uint64_t state_;
};

enum class Init { EMBD, NORM, MAT_QK, MAT, OUTPUT, BIAS, ROPE_FREQS };

struct SynthTensor {
  TensorShape shape;
  Init init;
};

std::vector<SynthTensor> synth_tensors(const SynthConfig& c, uint64_t n_vocab) {
  const uint64_t E = c.n_embd, F = c.n_ff;
  const uint64_t n_embd_kv = E / c.n_head * c.n_head_kv;
  std::vector<SynthTensor> t;
  auto add = [&](std::string name, std::vector<uint64_t> dims, Init init) {
    t.push_back({{std::move(name), GgmlType::F32, std::move(dims)}, init});
  };
  add("token_embd.weight", {E, n_vocab}, Init::EMBD);
  if (c.llama3_rope.factor > 0) add("rope_freqs.weight", {E / c.n_head / 2}, Init::ROPE_FREQS);
  for (uint32_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {E}, Init::NORM);
    add(p + "attn_q.weight", {E, E}, Init::MAT_QK);
    add(p + "attn_k.weight", {E, n_embd_kv}, Init::MAT_QK);
    add(p + "attn_v.weight", {E, n_embd_kv}, Init::MAT);
    if (c.attn_bias) {
      add(p + "attn_q.bias", {E}, Init::BIAS);
      add(p + "attn_k.bias", {n_embd_kv}, Init::BIAS);
      add(p + "attn_v.bias", {n_embd_kv}, Init::BIAS);
    }
    add(p + "attn_output.weight", {E, E}, Init::MAT);
    add(p + "ffn_norm.weight", {E}, Init::NORM);
    add(p + "ffn_gate.weight", {E, F}, Init::MAT);
    add(p + "ffn_up.weight", {E, F}, Init::MAT);
    add(p + "ffn_down.weight", {F, E}, Init::MAT);
  }
  add("output_norm.weight", {E}, Init::NORM);
  if (!c.tied_output) add("output.weight", {E, n_vocab}, Init::OUTPUT);
  return t;
}

// rope_freqs.weight as llama.cpp's converter computes it from a "llama3" rope_scaling (in float,
// as it does with torch): 1 for short wavelengths, `factor` for long ones, a smooth blend between.
std::vector<float> llama3_rope_factors(const SynthConfig& c) {
  const SynthLlama3Rope& r = c.llama3_rope;
  const uint32_t dim = c.n_embd / c.n_head;
  const float low_wavelen = static_cast<float>(r.original_context) / r.low_freq_factor;
  const float high_wavelen = static_cast<float>(r.original_context) / r.high_freq_factor;
  std::vector<float> out;
  for (uint32_t i = 0; i < dim; i += 2) {
    const float freq =
        1.0f / std::pow(c.rope_freq_base, static_cast<float>(i) / static_cast<float>(dim));
    const float wavelen = 2.0f * std::numbers::pi_v<float> / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(r.factor);
    } else {
      const float smooth = (static_cast<float>(r.original_context) / wavelen - r.low_freq_factor) /
                           (r.high_freq_factor - r.low_freq_factor);
      out.push_back(1.0f / ((1.0f - smooth) / r.factor + smooth));
    }
  }
  return out;
}

Status check_config(const SynthConfig& c) {
  if (c.n_embd == 0 || c.n_layer == 0 || c.n_head == 0 || c.n_head_kv == 0 || c.n_ff == 0 ||
      c.n_ctx == 0) {
    return make_error("synth: n_embd, n_layer, n_head, n_head_kv, n_ff and n_ctx must be > 0");
  }
  if (c.n_embd % c.n_head != 0) {
    return make_error("synth: n_embd ", c.n_embd, " is not a multiple of n_head ", c.n_head);
  }
  if (c.n_head % c.n_head_kv != 0) {
    return make_error("synth: n_head ", c.n_head, " is not a multiple of n_head_kv ", c.n_head_kv);
  }
  if ((c.n_embd / c.n_head) % 2 != 0) {
    return make_error("synth: head size ", c.n_embd / c.n_head, " must be even (rope)");
  }
  if (c.arch != "llama" && c.arch != "qwen2") {
    return make_error("synth: unknown architecture '", c.arch, "' (known: llama qwen2)");
  }
  if (c.rope_freq_base <= 0 || c.rope_scale_linear < 0 || c.rope_attn_factor < 0 ||
      c.llama3_rope.factor < 0) {
    return make_error("synth: invalid RoPE parameters");
  }
  if (c.llama3_rope.factor > 0 &&
      (c.llama3_rope.original_context == 0 || c.llama3_rope.low_freq_factor <= 0 ||
       c.llama3_rope.high_freq_factor <= c.llama3_rope.low_freq_factor)) {
    return make_error("synth: llama3 RoPE needs original_context > 0 and 0 < low_freq_factor < ",
                      "high_freq_factor");
  }
  return {};
}

}  // namespace

Expected<SynthConfig> synth_preset(std::string_view name) {
  SynthConfig c;
  if (name == "tinyllama-1.1b") {
    c.name = "realm-synth-tinyllama-1.1b";
    c.n_embd = 2048;
    c.n_layer = 22;
    c.n_head = 32;
    c.n_head_kv = 4;
    c.n_ff = 5632;
    c.n_ctx = 2048;
    return c;
  }
  if (name == "llama-134m") {
    c.name = "realm-synth-llama-134m";
    c.n_embd = 768;
    c.n_layer = 12;
    c.n_head = 12;
    c.n_head_kv = 12;
    c.n_ff = 2048;
    c.n_ctx = 2048;
    return c;
  }
  // Tiny models of each llama-family variant, for comparisons with llama.cpp (fast to write, load
  // and run; the vocabulary dominates their size).
  c.n_embd = 128;
  c.n_layer = 2;
  c.n_head = 2;  // head size 64, as in most real models
  c.n_head_kv = 1;
  c.n_ff = 256;
  c.n_ctx = 2048;
  if (name == "qwen2-tiny") {
    c.name = "realm-synth-qwen2-tiny";
    c.arch = "qwen2";
    c.attn_bias = true;
    c.tied_output = true;
    c.rope_freq_base = 1000000.0f;
    c.rms_eps = 1e-6f;
    return c;
  }
  if (name == "llama3-tiny") {
    c.name = "realm-synth-llama3-tiny";
    c.rope_freq_base = 500000.0f;
    // Llama 3.1's factors (8, 1, 4) with an original context of 32 instead of 8192, so that every
    // kind of factor (1, blended, 8) falls on a frequency a short prompt exercises.
    c.llama3_rope.factor = 8.0f;
    c.llama3_rope.original_context = 32;
    return c;
  }
  if (name == "llama-linear-tiny") {
    c.name = "realm-synth-llama-linear-tiny";
    c.rope_scale_linear = 4.0f;
    c.rope_attn_factor = 0.8f;
    c.tied_output = true;
    return c;
  }
  return make_error(
      "unknown synth preset '", name,
      "' (known: tinyllama-1.1b llama-134m qwen2-tiny llama3-tiny llama-linear-tiny)");
}

uint64_t synth_param_count(const SynthConfig& c, uint64_t n_vocab) {
  uint64_t n = 0;
  for (const auto& t : synth_tensors(c, n_vocab)) {
    uint64_t e = 1;
    for (uint64_t d : t.shape.dims) e *= d;
    n += e;
  }
  return n;
}

Status write_synth_model(const SynthConfig& c, const gguf::GgufFile& vocab,
                         const std::string& out_path) {
  REALM_TRY(check_config(c));
  const gguf::Value* tokens = vocab.find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->is_array() || tokens->size() == 0) {
    return make_error("synth: the vocabulary file has no tokenizer.ggml.tokens");
  }
  const uint64_t n_vocab = tokens->size();
  const auto tensors = synth_tensors(c, n_vocab);

  std::vector<TensorShape> shapes;
  for (const auto& t : tensors) shapes.push_back(t.shape);
  ModelShape model;
  model.arch = c.arch;
  model.n_layer = c.n_layer;
  model.n_head = c.n_head;
  model.n_head_kv = c.n_head_kv;
  const auto plan = plan_quantization(model, shapes, c.ftype);

  gguf::GgufWriter w;
  using gguf::Value;
  const std::string a = c.arch + ".";
  w.add_kv("general.architecture", Value::string(c.arch));
  w.add_kv("general.name", Value::string(c.name));
  w.add_kv(a + "context_length", Value::u32(c.n_ctx));
  w.add_kv(a + "embedding_length", Value::u32(c.n_embd));
  w.add_kv(a + "block_count", Value::u32(c.n_layer));
  w.add_kv(a + "feed_forward_length", Value::u32(c.n_ff));
  w.add_kv(a + "attention.head_count", Value::u32(c.n_head));
  w.add_kv(a + "attention.head_count_kv", Value::u32(c.n_head_kv));
  w.add_kv(a + "rope.dimension_count", Value::u32(c.n_embd / c.n_head));
  w.add_kv(a + "attention.layer_norm_rms_epsilon", Value::f32(c.rms_eps));
  w.add_kv(a + "rope.freq_base", Value::f32(c.rope_freq_base));
  if (c.rope_scale_linear > 0) {
    w.add_kv(a + "rope.scaling.type", Value::string("linear"));
    w.add_kv(a + "rope.scaling.factor", Value::f32(c.rope_scale_linear));
  }
  if (c.rope_attn_factor > 0) {
    w.add_kv(a + "rope.scaling.attn_factor", Value::f32(c.rope_attn_factor));
  }
  w.add_kv(a + "vocab_size", Value::u32(static_cast<uint32_t>(n_vocab)));
  for (const auto& kv : vocab.metadata()) {
    if (kv.key.rfind("tokenizer.", 0) == 0) w.add_kv(kv.key, kv.value);
  }
  w.add_kv("general.quantization_version", Value::u32(2));
  w.add_kv("general.file_type", Value::u32(static_cast<uint32_t>(c.ftype)));

  std::vector<std::vector<uint8_t>> buffers(plan.size());
  const uint32_t n_threads = static_cast<uint32_t>(std::max(1, c.n_threads));
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& p = plan[i];
    const auto it = std::find_if(tensors.begin(), tensors.end(),
                                 [&](const SynthTensor& t) { return t.shape.name == p.name; });
    const uint64_t tensor_index = static_cast<uint64_t>(it - tensors.begin());
    auto traits = type_traits(p.to);
    if (!traits) return make_error("synth: tensor ", p.name, ": ", traits.error().message);
    const TypeTraits& to = **traits;
    const uint64_t n_per_row = p.dims[0];
    const uint64_t n_rows = p.dims.size() > 1 ? p.dims[1] : 1;
    const uint64_t row_bytes = n_per_row / to.block_size * to.type_size;
    float mean = 0.f, std = 1.f;
    switch (it->init) {
      case Init::EMBD:
        // Tied: token_embd.weight is also the output matrix, so it gets the output's spread.
        std = c.tied_output ? c.gain_output / std::sqrt(static_cast<float>(n_per_row)) : c.embd_std;
        break;
      case Init::BIAS:
        std = c.bias_std;
        break;
      case Init::ROPE_FREQS:
        break;
      case Init::NORM:
        mean = 1.f;
        std = c.norm_std;
        break;
      case Init::MAT_QK:
        std = c.gain_qk / std::sqrt(static_cast<float>(n_per_row));
        break;
      case Init::MAT:
        std = c.gain / std::sqrt(static_cast<float>(n_per_row));
        break;
      case Init::OUTPUT:
        std = c.gain_output / std::sqrt(static_cast<float>(n_per_row));
        break;
    }
    std::vector<uint8_t>& out = buffers[i];
    out.resize(n_rows * row_bytes);
    if (it->init == Init::ROPE_FREQS) {
      const std::vector<float> factors = llama3_rope_factors(c);
      to.from_float_ref(factors.data(), out.data(), static_cast<int64_t>(factors.size()));
      w.add_tensor(p.name, p.to, p.dims, out);
      continue;
    }
    auto work = [&](uint64_t w_index, uint64_t n_workers) {
      std::vector<float> row(n_per_row);
      for (uint64_t r = n_rows * w_index / n_workers; r < n_rows * (w_index + 1) / n_workers; ++r) {
        RowNormal rng(c.seed, tensor_index, r);
        rng.fill(row.data(), n_per_row, mean, std);
        to.from_float_ref(row.data(), out.data() + r * row_bytes, static_cast<int64_t>(n_per_row));
      }
    };
    const uint64_t n_workers = std::min<uint64_t>(n_threads, n_rows);
    if (n_workers <= 1) {
      work(0, 1);
    } else {
      std::vector<std::thread> threads;
      for (uint64_t t = 0; t < n_workers; ++t) threads.emplace_back(work, t, n_workers);
      for (auto& th : threads) th.join();
    }
    w.add_tensor(p.name, p.to, p.dims, out);
  }
  return w.write_file(out_path);
}

}  // namespace realm::tensor
