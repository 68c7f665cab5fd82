// GGUF writer: metadata in the order added, tensor infos in the order added, tensor data aligned
// to general.alignment (default 32) with zero padding after every tensor, as llama.cpp writes (a
// file without tensors ends right after its metadata).
// It serializes what it is given without validating it (the reader validates), so tests can also
// build malformed files with it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/value.h"
#include "util/expected.h"

namespace realm::gguf {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  // A writer holding every key and tensor of `file`; the tensor data is borrowed from it.
  static GgufWriter copy_of(const GgufFile& file);

  void set_version(uint32_t version) { version_ = version; }
  void add_kv(std::string key, Value value);
  // Replaces the value of `key` if present, else adds it.
  void set_kv(const std::string& key, Value value);
  // Adds a tensor whose data (borrowed until write) is placed after the previous one. `type_id`
  // is the raw ggml type id; `offset` overrides the computed data offset.
  void add_tensor(std::string name, uint32_t type_id, std::vector<uint64_t> dims,
                  std::span<const uint8_t> data, std::optional<uint64_t> offset = std::nullopt);
  void add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims,
                  std::span<const uint8_t> data) {
    add_tensor(std::move(name), static_cast<uint32_t>(type), std::move(dims), data);
  }

  std::vector<uint8_t> to_bytes() const;
  Status write_file(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t type_id;
    std::vector<uint64_t> dims;
    std::span<const uint8_t> data;
    std::optional<uint64_t> offset;
  };
  uint64_t alignment() const;
  // Serialized header (magic through tensor infos, padded to the alignment) and the data offset
  // of each tensor.
  std::vector<uint8_t> header(std::vector<uint64_t>& offsets) const;
  template <typename Sink>
  void write_to(Sink& sink) const;

  uint32_t version_;
  std::vector<KeyValue> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace realm::gguf
