/* Hostile: emits 1 MiB token events forever, ignoring every status. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  const int32_t size = 1 << 20;
  char* buf = malloc((size_t)size);
  memset(buf, ' ', (size_t)size);
  memcpy(buf, "{\"id\":1,\"text\":\"", 16);
  memcpy(buf + size - 2, "\"}", 2);
  for (;;) emit(1, buf, size);
}
