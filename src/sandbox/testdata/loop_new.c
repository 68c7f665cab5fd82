/* Hostile: an infinite loop in realm_new. */
#define CUSTOM_NEW
#include "guest_common.h"

static volatile int32_t g_spin = 1;
EXPORT(realm_new) int32_t realm_new(void) {
  while (g_spin) {
  }
  return 1;
}
EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return 0;
}
