// SHA-256, streamed (a plain header: the OpenSSL types stay in sha256.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/expected.h"

namespace realm::hub {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t n);
  // The digest as 64 lower-case hex digits; the object starts over afterwards.
  std::string finish_hex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::string_view bytes);

// Hashes the first `n` bytes of `path` into `h` (all of it when n is UINT64_MAX).
Status sha256_update_file(Sha256& h, const std::string& path, uint64_t n = UINT64_MAX);

// True for 64 hex digits.
bool is_sha256_hex(std::string_view s);

}  // namespace realm::hub
