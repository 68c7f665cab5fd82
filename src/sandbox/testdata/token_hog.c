/* Hostile: decodes without end (rewinding its session so the context never fills), ignoring
 * the token budget until decode refuses. */
#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  int32_t m = model_open("stories", 7);
  if (m <= 0) return m;
  int32_t s = session_open(m, 64);
  if (s <= 0) return s;
  static float logits[4096];
  int32_t toks[32];
  for (int i = 0; i < 32; ++i) toks[i] = 1 + i;
  for (;;) {
    int32_t rc = decode(s, toks, 32, logits, 4096);
    if (rc < 0) {
      set_err("decode refused");
      return rc;
    }
    session_truncate(s, 0);
  }
}
