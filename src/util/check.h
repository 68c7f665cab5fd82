// REALM_CHECK: an always-on check of an invariant whose violation would corrupt memory or state
// (the bug tier of the error tiers; `assert` is compiled out of release builds). A failure prints
// the condition and its location to stderr and aborts.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace realm::detail {
[[noreturn]] inline void check_failed(const char* cond, const char* file, int line,
                                      const char* what) {
  std::fprintf(stderr, "realm: internal check failed: %s (%s) at %s:%d\n", what, cond, file, line);
  std::fflush(stderr);
  std::abort();
}
}  // namespace realm::detail

#define REALM_CHECK(cond, what)                                         \
  do {                                                                  \
    if (!(cond)) [[unlikely]]                                           \
      ::realm::detail::check_failed(#cond, __FILE__, __LINE__, (what)); \
  } while (0)
