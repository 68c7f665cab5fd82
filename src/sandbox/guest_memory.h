// GuestMemory: the one way host code touches a guest's linear memory (CONVENTIONS.md §8). Every
// (pointer, length) from the guest goes through span()/array(), which check the range
// overflow-safely against the memory's current size; loads and stores are unaligned-safe copies.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

#include "util/checked.h"

namespace realm::sandbox {

class GuestMemory {
 public:
  GuestMemory() = default;
  GuestMemory(uint8_t* base, uint64_t size) : base_(base), size_(size) {}

  uint64_t size() const { return size_; }

  // The bytes [ptr, ptr + len), or nullopt when any of them lies outside the memory. Pointers and
  // lengths are the guest's unsigned 32-bit values widened, so the sum cannot wrap.
  std::optional<std::span<uint8_t>> span(uint64_t ptr, uint64_t len) const {
    if (!range_within(ptr, len, size_)) return std::nullopt;
    return std::span<uint8_t>(base_ + ptr, static_cast<size_t>(len));
  }
  // `count` elements of `elem_size` bytes at ptr (count * elem_size checked).
  std::optional<std::span<uint8_t>> array(uint64_t ptr, uint64_t count, uint64_t elem_size) const {
    auto bytes = checked_mul<uint64_t>(count, elem_size);
    if (!bytes) return std::nullopt;
    return span(ptr, *bytes);
  }
  std::optional<std::string_view> string(uint64_t ptr, uint64_t len) const {
    auto s = span(ptr, len);
    if (!s) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(s->data()), s->size());
  }
  template <typename T>
  std::optional<T> load(uint64_t ptr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    auto s = span(ptr, sizeof(T));
    if (!s) return std::nullopt;
    T v;
    std::memcpy(&v, s->data(), sizeof(T));
    return v;
  }
  template <typename T>
  bool store(uint64_t ptr, const T& v) const {
    static_assert(std::is_trivially_copyable_v<T>);
    auto s = span(ptr, sizeof(T));
    if (!s) return false;
    std::memcpy(s->data(), &v, sizeof(T));
    return true;
  }

 private:
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

// Guest i32 arguments are unsigned offsets/lengths: widen without sign extension.
inline uint64_t guest_u32(int32_t v) {
  return static_cast<uint32_t>(v);
}

}  // namespace realm::sandbox
