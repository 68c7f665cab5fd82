#include "tensor/quantize_model.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <thread>

#include "gguf/writer.h"
#include "tensor/type_table.h"

namespace realm::tensor {

using gguf::GgmlType;

namespace {

struct FileTypeName {
  std::string_view name;
  FileType ftype;
};

constexpr std::array<FileTypeName, 20> kFileTypeNames = {{
    {"F32", FileType::ALL_F32},
    {"F16", FileType::MOSTLY_F16},
    {"BF16", FileType::MOSTLY_BF16},
    {"Q8_0", FileType::MOSTLY_Q8_0},
    {"Q4_0", FileType::MOSTLY_Q4_0},
    {"Q4_1", FileType::MOSTLY_Q4_1},
    {"Q5_0", FileType::MOSTLY_Q5_0},
    {"Q5_1", FileType::MOSTLY_Q5_1},
    {"Q2_K", FileType::MOSTLY_Q2_K},
    {"Q3_K_S", FileType::MOSTLY_Q3_K_S},
    {"Q3_K_M", FileType::MOSTLY_Q3_K_M},
    {"Q3_K_L", FileType::MOSTLY_Q3_K_L},
    {"Q4_K_S", FileType::MOSTLY_Q4_K_S},
    {"Q4_K_M", FileType::MOSTLY_Q4_K_M},
    {"Q5_K_S", FileType::MOSTLY_Q5_K_S},
    {"Q5_K_M", FileType::MOSTLY_Q5_K_M},
    {"Q6_K", FileType::MOSTLY_Q6_K},
    // llama-quantize's aliases.
    {"Q3_K", FileType::MOSTLY_Q3_K_M},
    {"Q4_K", FileType::MOSTLY_Q4_K_M},
    {"Q5_K", FileType::MOSTLY_Q5_K_M},
}};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) !=
        std::toupper(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Block-quantized in ggml's sense (F16/BF16/F32 are not).
bool is_quantized(GgmlType t) {
  return t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16;
}

uint32_t block_size(GgmlType t) {
  return gguf::type_layout(t).block_size;
}

// The "blk.N." layer of a tensor name, -1 for tensors outside the blocks.
int layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int n = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) {
    n = n * 10 + (name[i] - '0');
    ++i;
  }
  return i < name.size() && name[i] == '.' ? n : -1;
}

enum class Category {
  OUTPUT,
  TOKEN_EMBD,
  ATTENTION_QKV,
  ATTENTION_KV_B,
  ATTENTION_V,
  ATTENTION_K,
  ATTENTION_Q,
  ATTENTION_OUTPUT,
  FFN_UP,
  FFN_GATE,
  FFN_DOWN,
  OTHER,
};

// llama.cpp's broad tensor roles (by name, first match wins in this order).
Category category_of(std::string_view name) {
  if (name == "output.weight") return Category::OUTPUT;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") {
    return Category::TOKEN_EMBD;
  }
  if (contains(name, "attn_qkv.weight")) return Category::ATTENTION_QKV;
  if (contains(name, "attn_kv_b.weight")) return Category::ATTENTION_KV_B;
  if (contains(name, "attn_v.weight")) return Category::ATTENTION_V;
  if (contains(name, "attn_k.weight")) return Category::ATTENTION_K;
  if (contains(name, "attn_q.weight")) return Category::ATTENTION_Q;
  if (contains(name, "attn_output.weight")) return Category::ATTENTION_OUTPUT;
  if (contains(name, "ffn_up")) return Category::FFN_UP;
  if (contains(name, "ffn_gate")) return Category::FFN_GATE;
  if (contains(name, "ffn_down")) return Category::FFN_DOWN;
  return Category::OTHER;
}

bool is_attn_v_like(Category c) {
  return c == Category::ATTENTION_V || c == Category::ATTENTION_QKV ||
         c == Category::ATTENTION_KV_B;
}

// Which tensors llama-quantize converts at all: 2-D and up, named *weight, not norms, not the
// small special tensors it lists.
bool allows_quantization(const TensorShape& t) {
  if (t.dims.size() < 2) return false;
  std::string_view name = t.name;
  if (!ends_with(name, "weight")) return false;
  static constexpr std::string_view kKeep[] = {
      "_norm.weight",
      "ffn_gate_inp.weight",
      "ffn_gate_tid2eid.weight",
      "altup",
      "laurel",
      "per_layer_model_proj",
      "ssm_conv1d",
      "shortconv.conv.weight",
      "indexer.k_proj.weight",
      "indexer.q_proj.weight",
      "time_mix_first.weight",
      "time_mix_w0.weight",
      "time_mix_w1.weight",
      "time_mix_w2.weight",
      "time_mix_v0.weight",
      "time_mix_v1.weight",
      "time_mix_v2.weight",
      "time_mix_a0.weight",
      "time_mix_a1.weight",
      "time_mix_a2.weight",
      "time_mix_g1.weight",
      "time_mix_g2.weight",
      "time_mix_decay_w1.weight",
      "time_mix_decay_w2.weight",
      "time_mix_lerp_fused.weight",
      "attn_rel_b.weight",
      ".position_embd",
      "sam.pos_embd",
      "sam.neck.",
      "sam.net_",
      ".rel_pos",
      ".patch_embd",
      ".patch_merger",
      "a.rvq.codebook",
      "mm.a.code_embd",
  };
  for (std::string_view k : kKeep) {
    if (contains(name, k)) return false;
  }
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  return true;
}

// Model facts the rules depend on.
struct ModelFacts {
  bool falcon = false;
  bool is_70b = false;
  uint32_t n_layer = 0;
  uint32_t n_gqa = 1;
  uint32_t n_expert = 0;
};

ModelShape model_shape(const gguf::GgufFile& f) {
  ModelShape m;
  m.arch = std::string(f.architecture());
  m.n_layer = static_cast<uint32_t>(f.get_uint(m.arch + ".block_count").value_or(0));
  m.n_head = static_cast<uint32_t>(f.get_uint(m.arch + ".attention.head_count").value_or(0));
  m.n_head_kv =
      static_cast<uint32_t>(f.get_uint(m.arch + ".attention.head_count_kv").value_or(m.n_head));
  m.n_expert = static_cast<uint32_t>(f.get_uint(m.arch + ".expert_count").value_or(0));
  return m;
}

ModelFacts model_facts(const ModelShape& s) {
  ModelFacts m;
  m.falcon = s.arch == "falcon";
  m.n_layer = s.n_layer;
  m.n_gqa = s.n_head_kv ? s.n_head / s.n_head_kv : 1;
  m.n_expert = s.n_expert;
  // llama.cpp's LLM_TYPE_70B: an 80-layer llama with grouped-query attention.
  m.is_70b = s.arch == "llama" && s.n_layer == 80 && s.n_head != s.n_head_kv;
  return m;
}

// The running counters of llama.cpp's quantize state.
struct RuleState {
  int n_attention_wv = 0;
  int n_ffn = 0;
  int i_attention_wv = 0;
  int i_ffn_down = 0;
  int i_ffn_gate = 0;
  int i_ffn_up = 0;
  bool tied_embeddings = true;
};

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// llama.cpp's llama_tensor_get_type_impl, for the file types realm supports.
GgmlType rule_type(RuleState& s, const ModelFacts& m, const TensorShape& t, FileType ftype,
                   Category cat, GgmlType new_type) {
  using F = FileType;
  const int n_expert = static_cast<int>(m.n_expert);
  auto ffn_layer = [&](int counter) {
    if (n_expert > 1) {
      const int l = layer_of(t.name);
      return l >= 0 ? l : counter;
    }
    return counter;
  };
  if (cat == Category::OUTPUT || (s.tied_embeddings && cat == Category::TOKEN_EMBD)) {
    const uint64_t nx = t.dims[0];
    if (m.falcon || nx % block_size(new_type) != 0) {
      new_type = GgmlType::Q8_0;
    } else if (new_type != GgmlType::Q8_0) {
      new_type = GgmlType::Q6_K;
    }
  } else if (cat == Category::TOKEN_EMBD) {
    // No rule for the supported file types.
  } else if (is_attn_v_like(cat)) {
    if (ftype == F::MOSTLY_Q2_K) {
      new_type = m.n_gqa >= 4 ? GgmlType::Q4_K : GgmlType::Q3_K;
    } else if (ftype == F::MOSTLY_Q3_K_M) {
      new_type = s.i_attention_wv < 2 ? GgmlType::Q5_K : GgmlType::Q4_K;
    } else if (ftype == F::MOSTLY_Q3_K_L) {
      new_type = GgmlType::Q5_K;
    } else if ((ftype == F::MOSTLY_Q4_K_M || ftype == F::MOSTLY_Q5_K_M) &&
               use_more_bits(s.i_attention_wv, s.n_attention_wv)) {
      new_type = GgmlType::Q6_K;
    } else if (ftype == F::MOSTLY_Q4_K_S && s.i_attention_wv < 4) {
      new_type = GgmlType::Q5_K;
    }
    if (m.is_70b && (new_type == GgmlType::Q3_K || new_type == GgmlType::Q4_K)) {
      new_type = GgmlType::Q5_K;
    }
    if (n_expert == 8) new_type = GgmlType::Q8_0;
    ++s.i_attention_wv;
  } else if (cat == Category::ATTENTION_K) {
    if (n_expert == 8) new_type = GgmlType::Q8_0;
  } else if (cat == Category::ATTENTION_Q) {
    // No rule for the supported file types.
  } else if (cat == Category::FFN_DOWN) {
    const int i_layer = ffn_layer(s.i_ffn_down);
    const int n_layer = s.n_ffn;
    if (ftype == F::MOSTLY_Q2_K) {
      new_type = GgmlType::Q3_K;
    } else if (ftype == F::MOSTLY_Q3_K_M) {
      new_type = i_layer < n_layer / 16                         ? GgmlType::Q5_K
                 : !m.falcon || use_more_bits(i_layer, n_layer) ? GgmlType::Q4_K
                                                                : GgmlType::Q3_K;
    } else if (ftype == F::MOSTLY_Q3_K_L) {
      new_type = m.falcon ? GgmlType::Q4_K : GgmlType::Q5_K;
    } else if (ftype == F::MOSTLY_Q4_K_M) {
      if (m.falcon) {
        new_type = i_layer < n_layer / 16            ? GgmlType::Q6_K
                   : use_more_bits(i_layer, n_layer) ? GgmlType::Q5_K
                                                     : GgmlType::Q4_K;
      } else if (use_more_bits(i_layer, n_layer)) {
        new_type = GgmlType::Q6_K;
      }
    } else if (ftype == F::MOSTLY_Q5_K_M && use_more_bits(i_layer, n_layer)) {
      new_type = GgmlType::Q6_K;
    } else if (ftype == F::MOSTLY_Q4_K_S && !m.falcon && i_layer < n_layer / 8) {
      new_type = GgmlType::Q5_K;
    }
    ++s.i_ffn_down;
  } else if (cat == Category::ATTENTION_OUTPUT) {
    if (!m.falcon) {
      if (n_expert == 8) {
        if (ftype == F::MOSTLY_Q2_K || ftype == F::MOSTLY_Q3_K_S || ftype == F::MOSTLY_Q3_K_M ||
            ftype == F::MOSTLY_Q4_K_S || ftype == F::MOSTLY_Q4_K_M) {
          new_type = GgmlType::Q5_K;
        }
      } else {
        if (ftype == F::MOSTLY_Q2_K)
          new_type = GgmlType::Q3_K;
        else if (ftype == F::MOSTLY_Q3_K_M)
          new_type = GgmlType::Q4_K;
        else if (ftype == F::MOSTLY_Q3_K_L)
          new_type = GgmlType::Q5_K;
      }
    } else if (ftype == F::MOSTLY_Q3_K_L) {
      new_type = GgmlType::Q4_K;
    }
  } else if (cat == Category::ATTENTION_QKV) {
    // Unreachable (attn_qkv is attn_v-like above), kept as llama.cpp has it.
  } else if (cat == Category::FFN_GATE) {
    ++s.i_ffn_gate;
  } else if (cat == Category::FFN_UP) {
    ++s.i_ffn_up;
  }
  return new_type;
}

// llama.cpp's fallback when the row length is not a multiple of the wanted block size.
GgmlType fallback_type(const TensorShape& t, GgmlType wanted, bool& fell_back) {
  const uint64_t ncols = t.dims[0];
  if (ncols % block_size(wanted) == 0) return wanted;
  fell_back = true;
  GgmlType r = wanted;
  switch (wanted) {
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
      r = GgmlType::Q4_0;
      break;
    case GgmlType::Q4_K:
      r = GgmlType::Q5_0;
      break;
    case GgmlType::Q5_K:
      r = GgmlType::Q5_1;
      break;
    case GgmlType::Q6_K:
      r = GgmlType::Q8_0;
      break;
    default:
      break;
  }
  if (ncols % block_size(r) != 0) r = GgmlType::F16;
  return r;
}

// Tensor order of llama.cpp's loader: by layer (-1 for the non-block tensors first), then name.
std::vector<const TensorShape*> ordered_tensors(const std::vector<TensorShape>& in) {
  std::vector<const TensorShape*> out;
  for (const auto& t : in) out.push_back(&t);
  std::stable_sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    const int la = layer_of(a->name), lb = layer_of(b->name);
    if (la != lb) return la < lb;
    return a->name < b->name;
  });
  return out;
}

// Converts `n_rows` rows of `t` to f32 (rows [row0, row0 + n_rows)).
Status rows_to_f32(const gguf::TensorInfo& t, uint64_t row0, uint64_t n_rows, float* dst) {
  auto traits = type_traits(t.type);
  if (!traits) return traits.take_error();
  const uint64_t n_per_row = t.dims[0];
  const uint64_t row_bytes = n_per_row / (*traits)->block_size * (*traits)->type_size;
  (*traits)->to_float(t.data + row0 * row_bytes, dst, static_cast<int64_t>(n_rows * n_per_row));
  return {};
}

}  // namespace

Expected<FileType> file_type_from_name(std::string_view name) {
  for (const auto& e : kFileTypeNames) {
    if (iequals(e.name, name)) return e.ftype;
  }
  std::string known;
  for (size_t i = 0; i + 3 < kFileTypeNames.size(); ++i) {
    known += (i ? " " : "") + std::string(kFileTypeNames[i].name);
  }
  return make_error("unknown quantization type '", name, "' (known: ", known, ")");
}

std::string_view file_type_name(FileType ftype) {
  for (const auto& e : kFileTypeNames) {
    if (e.ftype == ftype) return e.name;
  }
  return "?";
}

GgmlType file_type_default_type(FileType ftype) {
  using F = FileType;
  switch (ftype) {
    case F::ALL_F32:
      return GgmlType::F32;
    case F::MOSTLY_F16:
      return GgmlType::F16;
    case F::MOSTLY_BF16:
      return GgmlType::BF16;
    case F::MOSTLY_Q4_0:
      return GgmlType::Q4_0;
    case F::MOSTLY_Q4_1:
      return GgmlType::Q4_1;
    case F::MOSTLY_Q5_0:
      return GgmlType::Q5_0;
    case F::MOSTLY_Q5_1:
      return GgmlType::Q5_1;
    case F::MOSTLY_Q8_0:
      return GgmlType::Q8_0;
    case F::MOSTLY_Q2_K:
      return GgmlType::Q2_K;
    case F::MOSTLY_Q3_K_S:
    case F::MOSTLY_Q3_K_M:
    case F::MOSTLY_Q3_K_L:
      return GgmlType::Q3_K;
    case F::MOSTLY_Q4_K_S:
    case F::MOSTLY_Q4_K_M:
      return GgmlType::Q4_K;
    case F::MOSTLY_Q5_K_S:
    case F::MOSTLY_Q5_K_M:
      return GgmlType::Q5_K;
    case F::MOSTLY_Q6_K:
      return GgmlType::Q6_K;
  }
  return GgmlType::F32;
}

Expected<std::vector<TensorPlan>> plan_quantization(const gguf::GgufFile& in, FileType ftype) {
  std::vector<TensorShape> shapes;
  for (const auto& t : in.tensors()) shapes.push_back({t.name, t.type, t.dims});
  return plan_quantization(model_shape(in), shapes, ftype);
}

std::vector<TensorPlan> plan_quantization(const ModelShape& model,
                                          const std::vector<TensorShape>& in, FileType ftype) {
  const ModelFacts facts = model_facts(model);
  const GgmlType default_type = file_type_default_type(ftype);
  const auto tensors = ordered_tensors(in);

  RuleState state;
  state.n_ffn = static_cast<int>(facts.n_layer);
  for (const auto* t : tensors) {
    const Category c = category_of(t->name);
    if (is_attn_v_like(c)) ++state.n_attention_wv;
    if (c == Category::OUTPUT) state.tied_embeddings = false;
  }

  std::vector<TensorPlan> plan;
  plan.reserve(tensors.size());
  for (const auto* t : tensors) {
    TensorPlan p{t->name, t->type, t->type, t->dims, false, t->type};
    if (allows_quantization(*t)) {
      GgmlType new_type = default_type;
      if (is_quantized(default_type)) {
        new_type = rule_type(state, facts, *t, ftype, category_of(t->name), new_type);
        p.wanted = new_type;
        new_type = fallback_type(*t, new_type, p.fallback);
      }
      p.to = new_type;
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

Expected<std::vector<TensorPlan>> quantize_model(const gguf::GgufFile& in,
                                                 const std::string& out_path,
                                                 const QuantizeOptions& options) {
  auto plan_or = plan_quantization(in, options.ftype);
  if (!plan_or) return plan_or.take_error();
  std::vector<TensorPlan>& plan = *plan_or;

  // Check everything before doing any work.
  for (const TensorPlan& p : plan) {
    if (p.from == p.to) continue;
    if (is_quantized(p.from) && !options.allow_requantize) {
      return make_error("tensor ", p.name, " is already quantized (", gguf::type_name(p.from),
                        "); requantizing needs --allow-requantize");
    }
    auto from = type_traits(p.from);
    if (!from) return make_error("tensor ", p.name, ": ", from.error().message);
    auto to = type_traits(p.to);
    if (!to) return make_error("tensor ", p.name, ": ", to.error().message);
    if (p.dims[0] % (*to)->block_size != 0) {
      return make_error("tensor ", p.name, ": row length ", p.dims[0],
                        " is not a multiple of the block size ", (*to)->block_size, " of ",
                        (*to)->name);
    }
  }

  gguf::GgufWriter writer(in.version());
  for (const auto& kv : in.metadata()) {
    if (kv.key == "general.quantization_version" || kv.key == "general.file_type") continue;
    writer.add_kv(kv.key, kv.value);
  }
  writer.add_kv("general.quantization_version", gguf::Value::u32(2));
  writer.add_kv("general.file_type", gguf::Value::u32(static_cast<uint32_t>(options.ftype)));

  const int n_threads = std::max(1, options.n_threads);
  std::vector<std::vector<uint8_t>> buffers(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& p = plan[i];
    const gguf::TensorInfo* t = in.find_tensor(p.name);
    if (p.from == p.to) {
      writer.add_tensor(p.name, p.to, p.dims, t->bytes());
      continue;
    }
    const TypeTraits& to = *type_traits(p.to).value();
    const uint64_t n_per_row = p.dims[0];
    const uint64_t n_rows = t->n_elements / n_per_row;
    const uint64_t out_row_bytes = n_per_row / to.block_size * to.type_size;
    std::vector<uint8_t>& out = buffers[i];
    out.resize(n_rows * out_row_bytes);

    // Each thread converts a contiguous range of rows through its own f32 scratch buffer.
    const uint64_t n_workers = std::min<uint64_t>(n_threads, std::max<uint64_t>(1, n_rows));
    std::vector<Status> results(n_workers);
    auto work = [&](uint64_t w) {
      const uint64_t r0 = n_rows * w / n_workers, r1 = n_rows * (w + 1) / n_workers;
      constexpr uint64_t kRowsPerStep = 16;
      std::vector<float> scratch;
      for (uint64_t r = r0; r < r1; r += kRowsPerStep) {
        const uint64_t nr = std::min(kRowsPerStep, r1 - r);
        const float* src;
        if (t->type == GgmlType::F32) {
          src = reinterpret_cast<const float*>(t->data) + r * n_per_row;
        } else {
          scratch.resize(nr * n_per_row);
          Status s = rows_to_f32(*t, r, nr, scratch.data());
          if (!s) {
            results[w] = std::move(s);
            return;
          }
          src = scratch.data();
        }
        to.from_float_ref(src, out.data() + r * out_row_bytes,
                          static_cast<int64_t>(nr * n_per_row));
      }
    };
    if (n_workers == 1) {
      work(0);
    } else {
      std::vector<std::thread> threads;
      for (uint64_t w = 0; w < n_workers; ++w) threads.emplace_back(work, w);
      for (auto& th : threads) th.join();
    }
    for (auto& r : results) {
      if (!r) return make_error("tensor ", p.name, ": ", r.error().message);
    }
    writer.add_tensor(p.name, p.to, p.dims, out);
  }
  REALM_TRY(writer.write_file(out_path));
  return plan;
}

}  // namespace realm::tensor
