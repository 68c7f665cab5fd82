/* Hostile: request imports called from the exports that run around a request (realm_new,
 * realm_alloc, realm_free, realm_last_error): each must get REALM_E_STATE and nothing may reach
 * the client. The first request fails on purpose (so the host reads realm_last_error); a request
 * with "report" in it returns what the earlier calls got in its final result. */
#define CUSTOM_ALLOC
#define CUSTOM_NEW
#define AROUND_HOOK try_request_imports
#include <stdio.h>

#include "guest_common.h"

static int32_t got[64];
static int n_got = 0;
static int32_t g_model = 0;

/* The request imports, each with a plausible argument. */
static void try_request_imports(void) {
  static int32_t ids[1] = {1};
  static float logits[1024];
  if (n_got + 5 > 64) return;
  got[n_got++] = emit_str(1, "{\"text\":\"leak\",\"id\":1}");
  got[n_got++] = emit_str(2, "{\"finish_reason\":\"stop\"}");
  got[n_got++] = session_open(g_model, 16);
  got[n_got++] = decode(0x10001, ids, 1, logits, 1024);
  got[n_got++] = session_close(0x10001);
}

EXPORT(realm_new) int32_t realm_new(void) {
  if (g_live) return 0;
  g_model = model_open("stories", 7);
  try_request_imports();
  g_live = 1;
  ++g_gen;
  return g_gen << 8 | 1;
}

EXPORT(realm_alloc) void* realm_alloc(int32_t n) {
  try_request_imports();
  return n > 0 ? malloc((size_t)n) : 0;
}

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  if (!memmem(r, (size_t)n, "report", 6)) {
    set_err("the first request fails on purpose");
    return -1;
  }
  char fin[1024];
  int len = snprintf(fin, sizeof fin, "{\"finish_reason\":\"stop\",\"got\":[");
  for (int i = 0; i < n_got; ++i)
    len += snprintf(fin + len, sizeof fin - (size_t)len, "%s%d", i ? "," : "", (int)got[i]);
  len += snprintf(fin + len, sizeof fin - (size_t)len, "]}");
  return emit(2, fin, len);
}
