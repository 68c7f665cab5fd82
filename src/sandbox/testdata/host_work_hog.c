/* Hostile: makes the host tokenize 4 MiB of text again and again (its own time is nearly nil: the
 * work is the host's). The host-work budget ends it. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  const int32_t size = 4 << 20;
  char* text = malloc((size_t)size);
  for (int32_t i = 0; i < size; ++i) text[i] = (i % 5 == 4) ? ' ' : (char)('a' + i % 7);
  int32_t m = model_open("stories", 7);
  for (;;) tokenize(m, text, size, 0, 0, 0);
}
