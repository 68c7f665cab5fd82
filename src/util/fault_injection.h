// Fault injection for tests: named points in the host code (a forward pass, tokenization, chat
// template rendering) that throw std::bad_alloc when a test has armed them, so that tests can
// show an allocation failure anywhere in a request ends that request only. Unarmed, a point costs
// one relaxed atomic load.
#pragma once

#include <atomic>
#include <new>

namespace realm::fault {

enum class Site : int { FORWARD, TOKENIZE, CHAT_TEMPLATE, kCount };

namespace detail {
inline std::atomic<int> armed[static_cast<int>(Site::kCount)];
}  // namespace detail

// The next `times` passes through `site` throw std::bad_alloc (0 disarms).
inline void arm(Site site, int times = 1) {
  detail::armed[static_cast<int>(site)].store(times, std::memory_order_relaxed);
}

// Throws std::bad_alloc when `site` is armed.
inline void point(Site site) {
  std::atomic<int>& a = detail::armed[static_cast<int>(site)];
  if (a.load(std::memory_order_relaxed) <= 0) [[likely]]
    return;
  if (a.fetch_sub(1, std::memory_order_relaxed) > 0) throw std::bad_alloc();
}

}  // namespace realm::fault
