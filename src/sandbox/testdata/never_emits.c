/* Hostile: returns success without ever emitting a result. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return 0;
}
