/* Hostile: a handle of one kind passed where another is expected (a session as a model, a model as
 * a session), and a stale session handle kept across 40000 reuses of its slot: each must get
 * REALM_E_HANDLE. Reports {"got": [...], "want": [...]} in its final result. */
#include <stdio.h>

#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  static char buf[256];
  static int32_t ids[4] = {1, 2, 3, 4};
  static float logits[1024];
  int32_t m = model_open("stories", 7);
  check(m > 0, 1);
  int32_t s = session_open(m, 16);
  check(s > 0, 1);
  check(s != m, 1);
  check(model_info(s, buf, 256), -3);
  check(tokenize(s, "hi", 2, 0, ids, 4), -3);
  check(token_piece(s, 1, buf, 256), -3);
  check(session_open(s, 16), -3);
  check(decode(m, ids, 1, logits, 1024), -3);
  check(session_truncate(m, 0), -3);
  check(session_close(m), -3);
  check(session_close(s), 0);
  /* The stale handle never comes back, however often its slot is reused. */
  int32_t stale = s, reissued = 0, failed = 0;
  for (int i = 0; i < 40000; ++i) {
    int32_t t = session_open(m, 16);
    if (t <= 0) {
      ++failed;
      break;
    }
    if (t == stale) ++reissued;
    session_close(t);
  }
  check(reissued, 0);
  check(failed, 0);
  check(session_close(stale), -3);
  check(decode(stale, ids, 1, logits, 1024), -3);
  char fin[1024];
  const int len = check_report(fin, sizeof fin, "{\"finish_reason\":\"stop\",");
  return emit(2, fin, len);
}
