#include "hub/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <vector>

#include "util/check.h"

namespace realm::hub {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  REALM_CHECK(impl_->ctx != nullptr, "EVP_MD_CTX_new failed");
  REALM_CHECK(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1, "sha256 init failed");
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(impl_->ctx);
}

void Sha256::update(const void* data, size_t n) {
  REALM_CHECK(EVP_DigestUpdate(impl_->ctx, data, n) == 1, "sha256 update failed");
}

std::string Sha256::finish_hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REALM_CHECK(EVP_DigestFinal_ex(impl_->ctx, md, &len) == 1, "sha256 final failed");
  REALM_CHECK(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1, "sha256 init failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.finish_hex();
}

Status sha256_update_file(Sha256& h, const std::string& path, uint64_t n) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::NOT_FOUND, "cannot open ", path, ": ", strerror(errno));
  std::vector<char> buf(1 << 20);
  uint64_t left = n;
  Status st;
  while (left > 0) {
    size_t want = left < buf.size() ? static_cast<size_t>(left) : buf.size();
    ssize_t got = ::read(fd, buf.data(), want);
    if (got < 0) {
      if (errno == EINTR) continue;
      st = make_error(ErrorCode::INTERNAL, "cannot read ", path, ": ", strerror(errno));
      break;
    }
    if (got == 0) {
      if (n != UINT64_MAX) st = make_error("cannot read ", path, ": shorter than ", n, " bytes");
      break;
    }
    h.update(buf.data(), static_cast<size_t>(got));
    left -= static_cast<uint64_t>(got);
  }
  ::close(fd);
  return st;
}

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace realm::hub
