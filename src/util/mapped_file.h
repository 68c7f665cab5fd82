// MappedFile: a read-only memory map of a whole file (RAII). Model weights are used in place from
// the map, shared by every session and tenant, except the matrices the model repacks once at load
// for its kernels (a same-size copy per loaded model; see model.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "util/expected.h"

namespace realm {

class MappedFile {
 public:
  // Maps `path` read-only. Errors name the path and the system error.
  static Expected<MappedFile> open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace realm
