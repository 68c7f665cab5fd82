/* Hostile: calls exit() (WASI proc_exit) in the middle of a request. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  exit(3);
}
