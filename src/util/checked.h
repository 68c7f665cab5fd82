// Overflow-checked integer arithmetic for sizes and offsets taken from untrusted input.
#pragma once

#include <cstdint>
#include <optional>

namespace realm {

// a + b, or nullopt on overflow.
template <typename T>
[[nodiscard]] constexpr std::optional<T> checked_add(T a, T b) {
  T r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a * b, or nullopt on overflow.
template <typename T>
[[nodiscard]] constexpr std::optional<T> checked_mul(T a, T b) {
  T r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Rounds v up to a multiple of align (a power of two), or nullopt on overflow.
[[nodiscard]] constexpr std::optional<uint64_t> checked_align_up(uint64_t v, uint64_t align) {
  auto sum = checked_add<uint64_t>(v, align - 1);
  if (!sum) return std::nullopt;
  return *sum & ~(align - 1);
}

// True when [off, off + len) lies inside [0, size).
[[nodiscard]] constexpr bool range_within(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

}  // namespace realm
