/* Hostile: wild pointers and huge lengths to every host import. Each must return an error code
 * (never trap); the guest reports what it got next to what the ABI promises, in its final
 * result: {"got": [...], "want": [...]}. */
#include <stdio.h>

#include "guest_common.h"

WASI(fd_write) int32_t wasi_fd_write(int32_t fd, int32_t iovs, int32_t n, int32_t nwritten);
WASI(clock_time_get) int32_t wasi_clock_time_get(int32_t id, int64_t precision, int32_t out);
WASI(random_get) int32_t wasi_random_get(int32_t buf, int32_t len);
WASI(environ_sizes_get) int32_t wasi_environ_sizes_get(int32_t a, int32_t b);

#define WILD ((void*)(uintptr_t)0xFFFFFFF0u)
#define WILD_I ((int32_t)0xFFFFFFF0u)
#define HUGE 0x7FFFFFFF

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  static char buf[256];
  static int32_t ids[16];
  static float logits[1024];
  check(model_open(WILD, 7), -2);
  check(model_open("stories", HUGE), -2);
  check(model_open("nope", 4), -4); /* not in the tenant's record: denied */
  check(host_error(WILD, 4096), -2);  /* the reason for that, to a wild buffer */
  check(host_error(buf, -1), -1);
  check(host_error(buf, 4) > 4, 1); /* too small: the size needed, nothing written */
  int32_t m = model_open("stories", 7);
  check(m > 0, 1);
  check(model_info(m, WILD, 4096), -2);
  check(model_info(m, buf, -1), -1);
  check(tokenize(m, WILD, 16, 0, ids, 16), -2);
  check(tokenize(m, "hi", HUGE, 0, ids, 16), -2);
  check(tokenize(m, "hi", 2, 0, WILD, 16), -2);
  check(tokenize(m, "hi", 2, 0, ids, HUGE), -2);
  check(tokenize(m, "hi", 2, 0x100, ids, 16), -1);
  check(token_piece(m, 5, WILD, 64), -2);
  check(token_piece(m, -5, buf, 64), -1);
  check(token_piece(m, 1 << 30, buf, 64), -1);
  check(chat_template(m, WILD, 10, 1, buf, 256), -2);
  check(chat_template(m, "[]", HUGE, 1, buf, 256), -2);
  {
    const char* msgs = "[{\"role\":\"user\",\"content\":\"x\"}]";
    check(chat_template(m, msgs, (int32_t)strlen(msgs), 1, WILD, 256), -2);
  }
  int32_t s = session_open(m, 64);
  check(s > 0, 1);
  ids[0] = 1;
  check(decode(s, WILD, 1, logits, 1024), -2);
  check(decode(s, ids, HUGE, logits, 1024), -1);
  check(decode(s, ids, 1, WILD, 1024), -2);
  check(decode(s, ids, 1, logits, 1), -6);
  ids[1] = -7;
  check(decode(s, ids + 1, 1, logits, 1024), -1);
  check(session_truncate(s, 1000), -1);
  check(emit(1, WILD, 16), -2);
  check(emit(1, "{}", HUGE), -2);
  check(emit(7, "{}", 2), -1);
  check(emit(1, "not json", 8), -1);
  realm_log(0, WILD, 16);
  realm_log(0, "x", HUGE);
  int32_t nw = 0;
  check(wasi_fd_write(1, WILD_I, 4, (int32_t)(uintptr_t)&nw), 21);
  check(wasi_fd_write(1, 0, HUGE, (int32_t)(uintptr_t)&nw), 28);
  check(wasi_clock_time_get(1, 0, WILD_I), 21);
  check(wasi_random_get(WILD_I, 64), 21);
  check(wasi_environ_sizes_get(WILD_I, 0), 21);
  check(session_close(s), 0);
  char fin[1024];
  const int len = check_report(fin, sizeof fin, "{\"finish_reason\":\"stop\",");
  return emit(2, fin, len);
}
