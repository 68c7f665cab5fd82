/* Shared by the sandbox's test guests (each .c file here is its own module, built by the test
 * suite with realm_add_wasm_module): the ABI v1 imports and the standard exports, declared here
 * rather than through the guest SDK so that these modules test the host alone. */
#ifndef REALM_SANDBOX_TESTDATA_GUEST_COMMON_H_
#define REALM_SANDBOX_TESTDATA_GUEST_COMMON_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("realm"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(model_open) int32_t model_open(const char* name, int32_t len);
IMPORT(model_info) int32_t model_info(int32_t model, char* buf, int32_t cap);
IMPORT(tokenize)
int32_t tokenize(int32_t model, const char* text, int32_t len, int32_t flags, int32_t* out,
                 int32_t cap);
IMPORT(token_piece) int32_t token_piece(int32_t model, int32_t id, char* buf, int32_t cap);
IMPORT(chat_template)
int32_t chat_template(int32_t model, const char* msgs, int32_t len, int32_t add_gen, char* out,
                      int32_t cap);
IMPORT(session_open) int32_t session_open(int32_t model, int32_t n_ctx);
IMPORT(session_close) int32_t session_close(int32_t session);
IMPORT(session_truncate) int32_t session_truncate(int32_t session, int32_t n);
IMPORT(decode)
int32_t decode(int32_t session, const int32_t* tokens, int32_t n, float* logits, int32_t cap);
IMPORT(emit) int32_t emit(int32_t kind, const char* ptr, int32_t len);
IMPORT(log) void realm_log(int32_t level, const char* ptr, int32_t len);
IMPORT(clock_ms) double clock_ms(void);
IMPORT(host_error) int32_t host_error(char* buf, int32_t cap);

/* Standard exports: version, allocator, and a one-slot handle table with a generation counter. */
static int32_t g_live = 0, g_gen = 0;
static char g_err[2048];

__attribute__((unused)) static void set_err(const char* s) {
  strncpy(g_err, s, sizeof g_err - 1);
}

EXPORT(realm_abi_version) int32_t realm_abi_version(void) {
  return 1;
}
#ifndef CUSTOM_ALLOC
EXPORT(realm_alloc) void* realm_alloc(int32_t n) {
  return n > 0 ? malloc((size_t)n) : 0;
}
#endif
/* AROUND_HOOK (optional): a function the exports realm_free and realm_last_error call first. */
#ifdef AROUND_HOOK
static void AROUND_HOOK(void);
#endif
EXPORT(realm_free) void realm_free(void* p) {
#ifdef AROUND_HOOK
  AROUND_HOOK();
#endif
  free(p);
}

#ifndef CUSTOM_NEW
EXPORT(realm_new) int32_t realm_new(void) {
  if (g_live) return 0;
  g_live = 1;
  ++g_gen;
  return g_gen << 8 | 1;
}
#endif

__attribute__((unused)) static int valid_handle(int32_t h) {
  return g_live && h == (g_gen << 8 | 1);
}

EXPORT(realm_delete) int32_t realm_delete(int32_t h) {
  if (!valid_handle(h)) return -3;
  g_live = 0;
  return 0;
}

EXPORT(realm_last_error) int32_t realm_last_error(int32_t h, char* buf, int32_t cap) {
#ifdef AROUND_HOOK
  AROUND_HOOK();
#endif
  int32_t n = (int32_t)strlen(g_err);
  if (n <= cap) memcpy(buf, g_err, (size_t)n);
  return n;
}

/* Checks of the host's answers: check(got, want) records one; check_report writes `prefix`
 * followed by "got": [...], "want": [...]} into buf (the caller's JSON object is closed). */
static int32_t g_got[64], g_want[64];
static int g_n_checks = 0;
__attribute__((unused)) static void check(int32_t got, int32_t want) {
  if (g_n_checks < 64) {
    g_got[g_n_checks] = got;
    g_want[g_n_checks] = want;
    ++g_n_checks;
  }
}
__attribute__((unused)) static int check_report(char* buf, int cap, const char* prefix) {
  int len = snprintf(buf, (size_t)cap, "%s\"got\":[", prefix);
  for (int i = 0; i < g_n_checks; ++i)
    len += snprintf(buf + len, (size_t)(cap - len), "%s%d", i ? "," : "", (int)g_got[i]);
  len += snprintf(buf + len, (size_t)(cap - len), "],\"want\":[");
  for (int i = 0; i < g_n_checks; ++i)
    len += snprintf(buf + len, (size_t)(cap - len), "%s%d", i ? "," : "", (int)g_want[i]);
  len += snprintf(buf + len, (size_t)(cap - len), "]}");
  return len;
}

#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))

__attribute__((unused)) static int32_t emit_str(int32_t kind, const char* s) {
  return emit(kind, s, (int32_t)strlen(s));
}

#endif
