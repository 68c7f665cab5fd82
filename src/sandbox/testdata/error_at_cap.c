/* A guest that fills its memory to the cap (keeping it, but for a few blocks it frees so that the
 * host can fetch its message) and then reports an error of its own: the request ends with the
 * guest's error, not "memory limit". */
#include "guest_common.h"

static void* volatile g_keep; /* the blocks form a list, so the allocations are real */

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  for (size_t size = 1 << 20; size >= 64; size /= 2) {
    void** p;
    while ((p = malloc(size)) != 0) {
      *p = g_keep;
      g_keep = p;
    }
  }
  for (int i = 0; i < 256 && g_keep; ++i) {
    void** p = g_keep;
    g_keep = *p;
    free(p);
  }
  set_err("bad request: the guest's own error");
  return -1;
}
