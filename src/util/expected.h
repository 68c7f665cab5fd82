// Expected<T>: a value or an Error with a message. The project's tier-2 error type (expected
// failures: bad input, limits, the wasm boundary). Usable with -fno-exceptions.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace realm {

struct Error {
  std::string message;
};

inline void append_piece(std::string& out, const std::string& s) {
  out += s;
}
inline void append_piece(std::string& out, std::string_view s) {
  out += s;
}
inline void append_piece(std::string& out, const char* s) {
  out += s;
}
inline void append_piece(std::string& out, char c) {
  out += c;
}
template <typename T>
requires std::is_arithmetic_v<T>
void append_piece(std::string& out, T v) {
  out += std::to_string(v);
}

// Builds an Error from string pieces: make_error("bad dim ", 3, " in ", name).
template <typename... Args>
Error make_error(const Args&... args) {
  std::string out;
  (append_piece(out, args), ...);
  return Error{std::move(out)};
}

template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Expected(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& take_error() {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

// Expected<void>: success or an Error.
template <>
class [[nodiscard]] Expected<void> {
 public:
  Expected() = default;
  Expected(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }
  Error&& take_error() { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Expected<void>;

}  // namespace realm

// Propagates an error from an Expected-returning expression: REALM_TRY(parse_header()).
#define REALM_TRY(expr)                      \
  do {                                       \
    auto realm_try_result_ = (expr);         \
    if (!realm_try_result_.ok()) {           \
      return realm_try_result_.take_error(); \
    }                                        \
  } while (0)
