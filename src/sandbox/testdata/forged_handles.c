/* Hostile: forged, stale and never-created handles to every import that takes one, a second
 * final result, events after it, and sessions past the tenant's limit. Reports {"got": [...],
 * "want": [...]} as its error message (status -1). */
#include <stdio.h>

#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  static char buf[256];
  static int32_t ids[4] = {1, 2, 3, 4};
  static float logits[1024];
  int32_t m = model_open("stories", 7);
  check(m > 0, 1);
  check(model_info(12345, buf, 256), -3);
  check(model_info(m ^ 0x10000, buf, 256), -3);
  check(model_info(0, buf, 256), -3);
  check(model_info(-1, buf, 256), -3);
  check(tokenize(m + 1, "hi", 2, 0, ids, 4), -3);
  check(token_piece(m + 7, 1, buf, 256), -3);
  check(session_open(m + 1, 64), -3);
  check(session_close(0x10001), -3);
  check(decode(0x7FFF0001, ids, 1, logits, 1024), -3);
  int32_t s = session_open(m, 64);
  check(s > 0, 1);
  check(session_close(s), 0);
  check(session_close(s), -3);
  check(decode(s, ids, 1, logits, 1024), -3);
  check(session_truncate(s, 0), -3);
  /* Sessions up to the tenant's limit (4), then REALM_E_LIMIT. */
  int32_t open[5];
  for (int i = 0; i < 5; ++i) open[i] = session_open(m, 16);
  check(open[3] > 0, 1);
  check(open[4], -5);
  for (int i = 0; i < 4; ++i) session_close(open[i]);
  check(emit_str(2, "{\"finish_reason\":\"stop\"}"), 0);
  check(emit_str(2, "{\"finish_reason\":\"stop\"}"), -7);
  check(emit_str(1, "{\"text\":\"late\",\"id\":1}"), -7); /* nothing after the final result */
  /* The final result went out already: the report is the error message. */
  check_report(g_err, sizeof g_err, "{");
  return -1;
}
