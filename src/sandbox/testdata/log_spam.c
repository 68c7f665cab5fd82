/* Hostile: floods the tenant log through the log import and stdout (WASI fd_write). */
#include <stdio.h>

#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  char line[200];
  memset(line, 'x', sizeof line);
  for (int i = 0; i < 10000; ++i) {
    realm_log(1, line, (int32_t)sizeof line);
    printf("line %d %.150s\n", i, line);
    fflush(stdout);
  }
  return emit_str(2, "{\"finish_reason\":\"stop\"}");
}
