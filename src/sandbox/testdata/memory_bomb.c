/* Hostile: allocates (and touches) memory until malloc fails, then aborts as C++ would. */
#include "guest_common.h"

static char* volatile g_last; /* keeps the allocations observable (no heap elision) */

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  for (;;) {
    char* p = malloc(1 << 20);
    if (!p) __builtin_trap();
    memset(p, 0xAB, 1 << 20);
    g_last = p;
  }
}
