// GGUF v2/v3 reader. The file is memory-mapped read-only and tensor data is exposed in place.
// Every count, length, offset and size is checked against the file with overflow-safe arithmetic
// before use; a malformed file yields one Error naming the problem and the offending value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/types.h"
#include "gguf/value.h"
#include "util/expected.h"
#include "util/mapped_file.h"

namespace realm::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr size_t kMaxTensorName = 63;  // ggml's GGML_MAX_NAME (64) minus the NUL
inline constexpr int kMaxArrayDepth = 8;      // nested arrays deeper than this are rejected

struct KeyValue {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  GgmlType type;
  std::vector<uint64_t> dims;  // dims[0] is the row length (contiguous), as in ggml's ne[]
  uint64_t offset = 0;         // from the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // inside the mapped file
  std::span<const uint8_t> bytes() const { return {data, static_cast<size_t>(n_bytes)}; }
};

class GgufFile {
 public:
  // Maps and parses `path`. Errors start with the path.
  static Expected<GgufFile> open(const std::string& path);
  // Parses bytes the caller keeps alive for the lifetime of the result.
  static Expected<GgufFile> parse(std::span<const uint8_t> bytes);

  // The path given to open() ("" for parse()).
  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return bytes_.size(); }
  std::span<const uint8_t> bytes() const { return bytes_; }

  const std::vector<KeyValue>& metadata() const { return kvs_; }
  const Value* find(std::string_view key) const;
  std::optional<std::string_view> get_string(std::string_view key) const;
  std::optional<uint64_t> get_uint(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  // general.architecture, or "" when absent.
  std::string_view architecture() const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  friend class Parser;
  MappedFile file_;  // empty for parse()
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> kvs_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace realm::gguf
