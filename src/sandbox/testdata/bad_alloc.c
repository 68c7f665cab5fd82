/* Hostile: its allocator returns a pointer outside its memory. */
#define CUSTOM_ALLOC
#include "guest_common.h"

EXPORT(realm_alloc) void* realm_alloc(int32_t n) {
  return (void*)(uintptr_t)0xFFFFFF00u;
}
EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return 0;
}
