/* Hostile: events of the wrong shape (wrong types, no finish_reason, an unknown finish reason,
 * bytes after an embedded NUL, not an object): each must get REALM_E_INVALID and none may reach
 * the client; then one good token event and a final result that carries the report. */
#include <stdio.h>

#include "guest_common.h"

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  check(emit_str(1, "{\"text\":7,\"id\":1}"), -1);
  check(emit_str(1, "{\"text\":\"a\",\"id\":\"1\"}"), -1);
  check(emit_str(1, "{\"text\":\"a\"}"), -1);
  check(emit_str(1, "{\"text\":\"a\",\"id\":-2}"), -1);
  check(emit_str(1, "{\"text\":\"a\",\"id\":1,\"logprob\":\"high\"}"), -1);
  check(emit_str(1, "{\"text\":\"a\",\"id\":1,\"top_logprobs\":[{\"id\":\"x\"}]}"), -1);
  check(emit_str(1, "[1,2]"), -1);
  check(emit_str(1, "\"text\""), -1);
  check(emit(1, "{\"text\":\"a\",\"id\":1}\0{\"x\":", 26), -1);
  check(emit_str(2, "{\"finish_reason\":42}"), -1);
  check(emit_str(2, "{\"prompt_tokens\":1}"), -1);
  check(emit_str(2, "{\"finish_reason\":\"done\"}"), -1);
  check(emit_str(2, "{\"finish_reason\":\"stop\",\"completion_tokens\":-3}"), -1);
  check(emit_str(1,
                 "{\"text\":\"ok\",\"id\":5,\"logprob\":-0.5,\"top_logprobs\":[{\"id\":5,"
                 "\"logprob\":-0.5}]}"),
        0);
  char fin[1024];
  const int len = check_report(fin, sizeof fin, "{\"finish_reason\":\"stop\",");
  return emit(2, fin, len);
}
