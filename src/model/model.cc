#include "model/model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_set>

#include "gguf/split.h"
#include "model/pack_cache.h"
#include "tensor/kernels/kernels.h"
#include "tensor/type_table.h"
#include "util/thread_pool.h"

namespace realm::model {

Workspace::Workspace(int n_threads) : pool_(std::make_unique<ThreadPool>(n_threads)) {}
Workspace::~Workspace() = default;
int Workspace::n_threads() const {
  return pool_->size();
}

namespace {

// Checks that tensor `name` (t, null when absent) has dims {n_cols, n_rows} and a type the
// kernels support.
Expected<Weight> bind_matrix(const gguf::TensorInfo* t, const std::string& name, int64_t n_cols,
                             int64_t n_rows) {
  if (!t) return make_error("missing tensor '", name, "'");
  int64_t rows = t->dims.size() > 1 ? static_cast<int64_t>(t->dims[1]) : 1;
  for (size_t i = 2; i < t->dims.size(); ++i) rows *= static_cast<int64_t>(t->dims[i]);
  if (static_cast<int64_t>(t->dims[0]) != n_cols || rows != n_rows) {
    std::string got;
    for (uint64_t d : t->dims) got += (got.empty() ? "" : " x ") + std::to_string(d);
    return make_error("tensor '", name, "' has shape ", got, ", expected ", n_cols, " x ", n_rows);
  }
  auto traits = tensor::type_traits(t->type);
  if (!traits) return make_error("tensor '", name, "': ", traits.error().message);
  if (n_rows > 1 && !tensor::activation_type(t->type)) {
    return make_error("tensor '", name, "' has type ", gguf::type_name(t->type),
                      ", which has no matmul kernel");
  }
  Weight w;
  w.type = t->type;
  w.data = t->data;
  w.n_cols = n_cols;
  w.n_rows = n_rows;
  w.row_bytes = static_cast<size_t>(t->n_bytes / static_cast<uint64_t>(n_rows));
  return w;
}

Expected<std::vector<float>> load_vector(const gguf::TensorInfo* t, const std::string& name,
                                         int64_t n) {
  auto w = bind_matrix(t, name, n, 1);
  if (!w) return w.take_error();
  std::vector<float> out(static_cast<size_t>(n));
  REALM_TRY(tensor::dequantize(w->type, {w->data, w->row_bytes}, out));
  return out;
}

}  // namespace

Model::~Model() {
  detail::PackedMap m{pack_map_, pack_map_bytes_, {}};
  detail::unmap(m);
}

const gguf::TensorInfo* Model::find_tensor(std::string_view name) const {
  for (const gguf::GgufFile& f : files_) {
    if (const gguf::TensorInfo* t = f.find_tensor(name)) return t;
  }
  return nullptr;
}

uint64_t Model::file_bytes() const {
  uint64_t n = 0;
  for (const gguf::GgufFile& f : files_) n += f.file_size();
  return n;
}

Status Model::bind() {
  const Hparams& hp = hp_;
  // Every tensor the file holds must be one this loader uses: a tensor it does not know (an
  // output bias, a fused QKV matrix, experts...) would otherwise be silently left out of the
  // forward pass. llama.cpp refuses such files too ("wrong number of tensors").
  std::unordered_set<std::string> used;
  auto has = [&](const std::string& name) { return find_tensor(name) != nullptr; };
#define REALM_BIND(dst, name, expr)  \
  do {                               \
    auto r_ = (expr);                \
    if (!r_) return r_.take_error(); \
    dst = std::move(*r_);            \
    used.insert(name);               \
  } while (0)
  REALM_BIND(
      tok_embd_, "token_embd.weight",
      bind_matrix(find_tensor("token_embd.weight"), "token_embd.weight", hp.n_embd, hp.n_vocab));
  REALM_BIND(output_norm_, "output_norm.weight",
             load_vector(find_tensor("output_norm.weight"), "output_norm.weight", hp.n_embd));
  if (has("output.weight")) {
    REALM_BIND(output_, "output.weight",
               bind_matrix(find_tensor("output.weight"), "output.weight", hp.n_embd, hp.n_vocab));
  } else {
    output_ = tok_embd_;  // tied embeddings
    if (!tensor::activation_type(output_.type)) {
      return make_error("tied output uses token_embd.weight of type ",
                        gguf::type_name(output_.type), ", which has no matmul kernel");
    }
  }
  if (has("rope_freqs.weight")) {
    REALM_BIND(rope_freqs_, "rope_freqs.weight",
               load_vector(find_tensor("rope_freqs.weight"), "rope_freqs.weight", hp.n_rot / 2));
  }
  layers_.resize(static_cast<size_t>(hp.n_layer));
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    Layer& l = layers_[static_cast<size_t>(il)];
    const std::string p = "blk." + std::to_string(il) + ".";
    auto vec = [&](std::vector<float>& dst, const std::string& name, int64_t n) -> Status {
      REALM_BIND(dst, name, load_vector(find_tensor(name), name, n));
      return {};
    };
    auto mat = [&](Weight& dst, const std::string& name, int64_t n_cols, int64_t n_rows) -> Status {
      REALM_BIND(dst, name, bind_matrix(find_tensor(name), name, n_cols, n_rows));
      return {};
    };
    REALM_TRY(vec(l.attn_norm, p + "attn_norm.weight", hp.n_embd));
    REALM_TRY(vec(l.ffn_norm, p + "ffn_norm.weight", hp.n_embd));
    REALM_TRY(mat(l.wq, p + "attn_q.weight", hp.n_embd, hp.n_embd_q()));
    REALM_TRY(mat(l.wk, p + "attn_k.weight", hp.n_embd, hp.n_embd_kv()));
    REALM_TRY(mat(l.wv, p + "attn_v.weight", hp.n_embd, hp.n_embd_kv()));
    REALM_TRY(mat(l.wo, p + "attn_output.weight", hp.n_embd_q(), hp.n_embd));
    REALM_TRY(mat(l.w_gate, p + "ffn_gate.weight", hp.n_embd, hp.n_ff));
    REALM_TRY(mat(l.w_up, p + "ffn_up.weight", hp.n_embd, hp.n_ff));
    REALM_TRY(mat(l.w_down, p + "ffn_down.weight", hp.n_ff, hp.n_embd));
    // q/k/v biases: optional, each on its own, for every architecture (qwen2 has them; llama.cpp
    // loads them for llama too).
    if (has(p + "attn_q.bias")) REALM_TRY(vec(l.bq, p + "attn_q.bias", hp.n_embd_q()));
    if (has(p + "attn_k.bias")) REALM_TRY(vec(l.bk, p + "attn_k.bias", hp.n_embd_kv()));
    if (has(p + "attn_v.bias")) REALM_TRY(vec(l.bv, p + "attn_v.bias", hp.n_embd_kv()));
  }
#undef REALM_BIND
  for (const gguf::GgufFile& f : files_) {
    for (const gguf::TensorInfo& t : f.tensors()) {
      if (!used.contains(t.name)) {
        return make_error("tensor '", t.name, "' is not supported for architecture '", hp.arch,
                          "' (it would be ignored)");
      }
    }
  }
  return {};
}

void Model::FreeDeleter::operator()(uint8_t* p) const {
  std::free(p);
}

Status Model::pack_weights(const LoadOptions& options, LoadReport& report) {
  auto kernels = tensor::active_kernels();
  if (!kernels) return kernels.take_error();
  const tensor::KernelTable& kt = **kernels;
  // REALM_NO_PACK=1 keeps every weight as stored: for measuring what packing gains.
  if (const char* v = std::getenv("REALM_NO_PACK"); v != nullptr && *v != '\0' && *v != '0') {
    report.pack_cache = "none";
    return {};
  }
  std::vector<Weight*> todo;
  std::vector<detail::PackTensor> tensors;
  auto consider = [&](Weight& w, std::string name) {
    if (!w.packed && kt.matmul_packed[static_cast<int>(w.type)] != nullptr &&
        w.n_rows % tensor::kPackRows == 0) {
      todo.push_back(&w);
      tensors.push_back({std::move(name), w.type, w.data, w.n_rows, w.n_cols,
                         w.row_bytes * static_cast<size_t>(w.n_rows)});
    }
  };
  // The output matrix is packed only when it is not the token embedding table, whose rows are
  // also read one by one.
  if (output_.data != tok_embd_.data) consider(output_, "output.weight");
  for (size_t il = 0; il < layers_.size(); ++il) {
    Layer& l = layers_[il];
    const std::string p = "blk." + std::to_string(il) + ".";
    consider(l.wq, p + "attn_q.weight");
    consider(l.wk, p + "attn_k.weight");
    consider(l.wv, p + "attn_v.weight");
    consider(l.wo, p + "attn_output.weight");
    consider(l.w_gate, p + "ffn_gate.weight");
    consider(l.w_up, p + "ffn_up.weight");
    consider(l.w_down, p + "ffn_down.weight");
  }
  if (todo.empty()) {
    report.pack_cache = "none";
    return {};
  }
  std::vector<const uint8_t*> packed(todo.size(), nullptr);
  if (!options.pack_cache_dir.empty()) {
    const std::string path = detail::cache_path(options.pack_cache_dir, files_, tensors);
    const uint64_t key = detail::source_key(files_, options.source_sha256);
    report.cache_path = path;
    auto mapped = detail::map_cache(path, key, tensors);
    std::string why;
    if (mapped) {
      report.pack_cache = "hit";
    } else {
      why = mapped.error().message;
      mapped = detail::write_cache(path, key, tensors);
      if (mapped) {
        report.pack_cache = why == "absent" ? "written" : "rebuilt (" + why + ")";
      } else {
        report.pack_cache = "not written (" + mapped.error().message + ")";
      }
    }
    if (mapped) {
      pack_map_ = mapped->addr;
      pack_map_bytes_ = mapped->bytes;
      packed = mapped->data;
    }
  }
  if (pack_map_ == nullptr) {
    std::vector<std::unique_ptr<uint8_t[], FreeDeleter>> bufs;
    for (size_t i = 0; i < todo.size(); ++i) {
      bufs.emplace_back(
          static_cast<uint8_t*>(std::aligned_alloc(64, (tensors[i].bytes + 63) / 64 * 64)));
      if (!bufs.back()) {  // no memory for the rest: they stay as stored (same results, slower)
        bufs.pop_back();
        todo.resize(i);
        break;
      }
    }
    // Packing reads every byte of the weights once: spread it over the cores.
    REALM_TRY(detail::parallel_for(todo.size(), [&](size_t i) -> Status {
      const detail::PackTensor& t = tensors[i];
      REALM_TRY(tensor::pack_rows(t.type, t.src, t.n_rows, t.n_cols, bufs[i].get()));
      detail::drop_source_pages(t);
      return {};
    }));
    for (size_t i = 0; i < todo.size(); ++i) {
      packed[i] = bufs[i].get();
      packed_.push_back(std::move(bufs[i]));
    }
  }
  for (size_t i = 0; i < todo.size(); ++i) {
    Weight& w = *todo[i];
    detail::drop_source_pages(tensors[i]);  // a cache hit never touched them: a no-op then
    w.data = packed[i];
    w.packed = true;
  }
  return {};
}

Expected<std::shared_ptr<const Model>> Model::load(const std::string& path,
                                                   const LoadOptions& options, LoadReport* report) {
  const auto start = std::chrono::steady_clock::now();
  LoadReport local;
  LoadReport& r = report != nullptr ? *report : local;
  auto files = gguf::open_split(path);
  if (!files) return files.take_error();
  std::shared_ptr<Model> m(new Model());
  m->files_ = std::move(*files);
  auto hp = read_hparams(m->file());
  if (!hp) return make_error(path, ": ", hp.error().message);
  m->hp_ = std::move(*hp);
  auto st = m->bind();
  if (!st) return make_error(path, ": ", st.error().message);
  st = m->pack_weights(options, r);
  if (!st) return make_error(path, ": ", st.error().message);
  r.load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return std::shared_ptr<const Model>(std::move(m));
}

}  // namespace realm::model
