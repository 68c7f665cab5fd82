/* A well-behaved test guest: greedy generation of "max_tokens" tokens after "prompt" (both read
 * with a tiny scanner: the tests send plain values), emitting {"text": "", "id": N} events and a
 * final result. Used to show that a normal request succeeds right after each hostile one. */
#include <stdio.h>

#include "guest_common.h"

static const char* find_value(const char* req, int32_t len, const char* key) {
  size_t k = strlen(key);
  for (int32_t i = 0; i + (int32_t)k < len; ++i) {
    if (memcmp(req + i, key, k) == 0) return req + i + k;
  }
  return 0;
}

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* req, int32_t len) {
  if (!valid_handle(h)) {
    set_err("unknown handle");
    return -3;
  }
  const char* p = find_value(req, len, "\"prompt\":\"");
  const char* m = find_value(req, len, "\"model\":\"");
  const char* n = find_value(req, len, "\"max_tokens\":");
  if (!p || !m || !n) {
    set_err("request needs model, prompt and max_tokens");
    return -1;
  }
  const char* pe = memchr(p, '"', (size_t)(req + len - p));
  const char* me = memchr(m, '"', (size_t)(req + len - m));
  int max_tokens = atoi(n);
  int32_t model = model_open(m, (int32_t)(me - m));
  if (model <= 0) {
    set_err("model_open failed");
    return model;
  }
  int32_t ids[512];
  int32_t n_ids = tokenize(model, p, (int32_t)(pe - p), 3, ids, 512);
  if (n_ids <= 0 || n_ids > 512) {
    set_err("tokenize failed");
    return -1;
  }
  char info[512];
  int32_t ni = model_info(model, info, sizeof info - 1);
  if (ni <= 0 || ni >= (int32_t)sizeof info) return -8;
  info[ni] = 0;
  int n_vocab = atoi(strstr(info, "\"n_vocab\":") + 10);
  float* logits = malloc(sizeof(float) * (size_t)n_vocab);
  int32_t s = session_open(model, n_ids + max_tokens);
  if (s <= 0) {
    set_err("session_open failed");
    return s;
  }
  int32_t r = decode(s, ids, n_ids, logits, n_vocab);
  int produced = 0;
  for (; r == n_vocab && produced < max_tokens; ++produced) {
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab; ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    char ev[64];
    snprintf(ev, sizeof ev, "{\"text\":\"\",\"id\":%d}", (int)best);
    if (emit_str(1, ev) == 1) break;
    if (produced + 1 < max_tokens) r = decode(s, &best, 1, logits, n_vocab);
  }
  free(logits);
  session_close(s);
  if (r < 0) {
    set_err("decode failed");
    return r;
  }
  char fin[160];
#ifdef CLAIM_TOKENS /* lying_counts.c: a final result with made-up counts */
  n_ids = CLAIM_TOKENS;
  produced = CLAIM_TOKENS;
#endif
  snprintf(fin, sizeof fin,
           "{\"finish_reason\":\"length\",\"prompt_tokens\":%d,\"completion_tokens\":%d}",
           (int)n_ids, produced);
  emit_str(2, fin);
  return 0;
}
