/* Hostile: emits a good final result, then returns a positive status (neither success nor an
 * error status): ABI misuse. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  emit_str(2, "{\"finish_reason\":\"stop\"}");
  return 5;
}
