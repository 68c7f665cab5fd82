/* Hostile: unbounded recursion through a function pointer (no tail call, no shadow-stack use),
 * so the engine's call stack overflows. */
#include "guest_common.h"

static int32_t recurse(int32_t n);
static int32_t (*volatile g_next)(int32_t) = recurse;
static int32_t recurse(int32_t n) {
  return g_next(n + 1) + n;
}
EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return recurse(0);
}
