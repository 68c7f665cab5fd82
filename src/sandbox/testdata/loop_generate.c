/* Hostile: an infinite loop in realm_generate. */
#include "guest_common.h"

static volatile int32_t g_spin = 1;
EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  while (g_spin) {
  }
  return 0;
}
