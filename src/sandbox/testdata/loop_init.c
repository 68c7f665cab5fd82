/* Hostile: an infinite loop in _initialize (a static constructor). */
#include "guest_common.h"

static volatile int32_t g_spin = 1;
__attribute__((constructor)) static void spin_forever(void) {
  while (g_spin) {
  }
}
EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return 0;
}
