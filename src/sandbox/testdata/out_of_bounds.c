/* Hostile: reads far outside its linear memory. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  volatile int32_t* p = (volatile int32_t*)(uintptr_t)0xFFFFFF00u;
  return *p;
}
