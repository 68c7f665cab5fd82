/* Hostile: imports a host function that does not exist. */
#include "guest_common.h"

IMPORT(launch_missiles) int32_t launch_missiles(int32_t n);
EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return launch_missiles(n);
}
