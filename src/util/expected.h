// Expected<T>: a value or an Error with a code and a message. The project's tier-2 error type
// (expected failures: bad input, limits, the wasm boundary). Usable with -fno-exceptions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "util/check.h"

namespace realm {

// What kind of failure an Error is, so that callers (the server's HTTP statuses, the guest ABI's
// status codes) map causes without matching message text.
enum class ErrorCode : uint8_t {
  INVALID_ARGUMENT,     // bad input: a malformed file or value, an id out of range
  LIMIT,                // a size, context, budget or quota limit would be exceeded
  NOT_FOUND,            // no such file, model, tenant
  FAILED_PRECONDITION,  // not now: the object is in the wrong state (a step already in flight)
  CANCELLED,            // the caller cancelled or went away
  UNAVAILABLE,          // shutting down or overloaded; may succeed later
  INTERNAL,             // a host fault: allocation failure, an unexpected exception
};
struct Error {
  std::string message;
  ErrorCode code = ErrorCode::INVALID_ARGUMENT;
};

// "invalid argument", "limit", ...
inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::INVALID_ARGUMENT:
      return "invalid argument";
    case ErrorCode::LIMIT:
      return "limit";
    case ErrorCode::NOT_FOUND:
      return "not found";
    case ErrorCode::FAILED_PRECONDITION:
      return "failed precondition";
    case ErrorCode::CANCELLED:
      return "cancelled";
    case ErrorCode::UNAVAILABLE:
      return "unavailable";
    case ErrorCode::INTERNAL:
      return "internal";
  }
  return "?";
}

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

// Builds an Error from string pieces: make_error("bad dim ", 3, " in ", name) (an invalid
// argument), or with a code first: make_error(ErrorCode::LIMIT, "context full: ", n).
template <typename... Args>
Error make_error(ErrorCode code, const Args&... args) {
  std::string out;
  (append_piece(out, args), ...);
  return Error{std::move(out), code};
}
template <typename... Args>
Error make_error(const Args&... args) {
  return make_error(ErrorCode::INVALID_ARGUMENT, args...);
}

template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Expected(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    REALM_CHECK(ok(), "value() of an Expected holding an error");
    return std::get<0>(v_);
  }
  const T& value() const& {
    REALM_CHECK(ok(), "value() of an Expected holding an error");
    return std::get<0>(v_);
  }
  T&& value() && {
    REALM_CHECK(ok(), "value() of an Expected holding an error");
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    REALM_CHECK(!ok(), "error() of an Expected holding a value");
    return std::get<1>(v_);
  }
  Error&& take_error() {
    REALM_CHECK(!ok(), "error() of an Expected holding a value");
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
    REALM_CHECK(!ok_, "error() of a successful Status");
    return error_;
  }
  Error&& take_error() {
    REALM_CHECK(!ok_, "take_error() of a successful Status");
    return std::move(error_);
  }

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
