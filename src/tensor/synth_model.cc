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

enum class Init { EMBD, NORM, MAT_QK, MAT, OUTPUT };

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
  for (uint32_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {E}, Init::NORM);
    add(p + "attn_q.weight", {E, E}, Init::MAT_QK);
    add(p + "attn_k.weight", {E, n_embd_kv}, Init::MAT_QK);
    add(p + "attn_v.weight", {E, n_embd_kv}, Init::MAT);
    add(p + "attn_output.weight", {E, E}, Init::MAT);
    add(p + "ffn_norm.weight", {E}, Init::NORM);
    add(p + "ffn_gate.weight", {E, F}, Init::MAT);
    add(p + "ffn_up.weight", {E, F}, Init::MAT);
    add(p + "ffn_down.weight", {F, E}, Init::MAT);
  }
  add("output_norm.weight", {E}, Init::NORM);
  add("output.weight", {E, n_vocab}, Init::OUTPUT);
  return t;
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
  return make_error("unknown synth preset '", name, "' (known: tinyllama-1.1b llama-134m)");
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
  model.n_layer = c.n_layer;
  model.n_head = c.n_head;
  model.n_head_kv = c.n_head_kv;
  const auto plan = plan_quantization(model, shapes, c.ftype);

  gguf::GgufWriter w;
  using gguf::Value;
  w.add_kv("general.architecture", Value::string("llama"));
  w.add_kv("general.name", Value::string(c.name));
  w.add_kv("llama.context_length", Value::u32(c.n_ctx));
  w.add_kv("llama.embedding_length", Value::u32(c.n_embd));
  w.add_kv("llama.block_count", Value::u32(c.n_layer));
  w.add_kv("llama.feed_forward_length", Value::u32(c.n_ff));
  w.add_kv("llama.attention.head_count", Value::u32(c.n_head));
  w.add_kv("llama.attention.head_count_kv", Value::u32(c.n_head_kv));
  w.add_kv("llama.rope.dimension_count", Value::u32(c.n_embd / c.n_head));
  w.add_kv("llama.attention.layer_norm_rms_epsilon", Value::f32(1e-5f));
  w.add_kv("llama.rope.freq_base", Value::f32(10000.0f));
  w.add_kv("llama.vocab_size", Value::u32(static_cast<uint32_t>(n_vocab)));
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
        std = c.embd_std;
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
