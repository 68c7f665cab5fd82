/* Hostile: log text that tries to forge host log lines (embedded newlines, a fake tenant prefix,
 * terminal escape sequences, invalid UTF-8), through the log import and through stdout. */
#include <stdio.h>

#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  static const char forged[] = "hello\n[tenant normal] forged line\x1b[31m red\xff\xc2\x9b!";
  realm_log(2, forged, (int32_t)(sizeof forged - 1));
  printf("%s\n", forged);
  fflush(stdout);
  return emit_str(2, "{\"finish_reason\":\"stop\"}");
}
