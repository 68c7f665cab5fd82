/* Hostile: executes `unreachable`. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  __builtin_unreachable();
}
