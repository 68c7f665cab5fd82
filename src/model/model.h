// A loaded llama-family model (weights used in place from the mapped GGUF, shared read-only by
// every session), its per-session KV cache, and the batched forward pass.
//
// Numerical contract: activations are quantized to each weight's partner type before every
// matmul, as llama.cpp does; every per-row reduction happens in the same order whatever else is in
// the batch, so a sequence gets bit-identical logits alone or batched with others.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "model/hparams.h"
#include "model/kv_cache.h"
#include "util/expected.h"

namespace realm {
class ThreadPool;
}

namespace realm::model {

using gguf::GgmlType;

// One weight matrix (or vector) inside the mapped file: n_rows rows of n_cols elements.
struct Weight {
  GgmlType type = GgmlType::F32;
  bool packed = false;  // rows packed for the kernels (tensor::pack_rows), in memory the model owns
  const uint8_t* data = nullptr;
  int64_t n_cols = 0;
  int64_t n_rows = 0;
  size_t row_bytes = 0;
};

// One sequence's part of a forward pass: `tokens` are appended to `cache` at positions
// cache->size() onwards.
struct SequenceStep {
  KvCache* cache = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits of every token, else of the last one only
  std::span<float> logits;  // n_vocab floats per requested position
};

// Scratch buffers and the thread pool of one caller. A Workspace serves one forward() at a time;
// concurrent callers use one Workspace each over the same Model.
class Workspace {
 public:
  explicit Workspace(int n_threads);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  int n_threads() const;

 private:
  friend class Model;
  friend struct Forward;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, out_rows_;
  std::vector<float> k_tiles_;  // an F32 cache's K rows of one layer transposed in tiles
  std::vector<uint8_t> qbuf_;
};

// Where Model::load keeps the repacked weights between starts (docs/models.md, "packed-weight
// cache"). The cache file is keyed by the source's size, modification time and header bytes (and
// sha256 when the caller knows it), the pack layout version and the set of packed tensors; every
// packed tensor carries an XXH3 checksum that is verified when the cache is mapped. A cache that
// is stale, truncated or corrupt is rebuilt, never trusted.
struct LoadOptions {
  std::string pack_cache_dir;  // "" = no cache: pack into private memory at every load
  std::string source_sha256;   // of the (first) source file, when known (a pulled model)
};

// What a load did: for `realm bench --json`, `realm info`, logs.
struct LoadReport {
  // "off" (no cache dir), "hit", "written", "rebuilt (REASON)", "not written (REASON)",
  // "none" (nothing to pack on this kernel path).
  std::string pack_cache = "off";
  std::string cache_path;
  double load_ms = 0;
};

class Model {
 public:
  // Maps and validates `path` (a GGUF file, or any shard of a split model, whose siblings are
  // found by name: gguf/split.h): architecture, hyperparameters, every tensor's presence, type and
  // shape. The error names the file and the problem.
  static Expected<std::shared_ptr<const Model>> load(const std::string& path,
                                                     const LoadOptions& options = {},
                                                     LoadReport* report = nullptr);
  ~Model();

  const Hparams& hparams() const { return hp_; }
  // The file holding the model's metadata (the first shard of a split model).
  const gguf::GgufFile& file() const { return files_.front(); }
  // Bytes of tensor data and metadata in every shard.
  uint64_t file_bytes() const;

  // Runs the steps of several sequences in one pass over the weights. Errors (nothing is changed
  // then): empty step, token id out of range, context full, logits span too small.
  Status forward(std::span<const SequenceStep> steps, Workspace& ws) const;

 private:
  friend struct Forward;
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    std::vector<float> bq, bk, bv;  // optional q/k/v biases (qwen2), empty when absent
    Weight wq, wk, wv, wo, w_gate, w_up, w_down;
  };

  Model() = default;
  const gguf::TensorInfo* find_tensor(std::string_view name) const;
  Status bind();
  // Repacks every matmul weight the active kernels have a packed layout for (same size; the
  // mapped file's pages of those tensors are released afterwards), through the cache when
  // options name one.
  Status pack_weights(const LoadOptions& options, LoadReport& report);

  std::vector<gguf::GgufFile> files_;  // one, or the shards in order
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t[], FreeDeleter>> packed_;  // storage of packed weights
  // Or the packed weights' storage is a mapped cache file.
  void* pack_map_ = nullptr;
  size_t pack_map_bytes_ = 0;
  Hparams hp_;
  Weight tok_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<float> rope_freqs_;  // rope_freqs.weight (llama 3 scaling), else empty
  std::vector<Layer> layers_;
};

}  // namespace realm::model
