/* Guest ABI v1 constants (docs/abi.md), shared by the host (src/sandbox) and the guest SDK
 * (src/guest/realm_guest.h): one definition of every status code, emit kind and flag. Plain C. */
#ifndef REALM_ABI_H_
#define REALM_ABI_H_

#include <stdint.h>

#define REALM_ABI_VERSION 1

/* Status codes (docs/abi.md "Error codes"). */
#define REALM_OK 0
#define REALM_E_INVALID (-1)   /* malformed argument */
#define REALM_E_BOUNDS (-2)    /* pointer/length outside guest memory */
#define REALM_E_HANDLE (-3)    /* unknown, stale or closed handle */
#define REALM_E_DENIED (-4)    /* the tenant may not use this model/resource */
#define REALM_E_LIMIT (-5)     /* sessions, context, token budget, output size */
#define REALM_E_NOSPACE (-6)   /* output buffer too small */
#define REALM_E_STATE (-7)     /* call made in the wrong state */
#define REALM_E_INTERNAL (-8)  /* host-side failure */
#define REALM_E_CANCELLED (-9) /* client gone, deadline */

/* emit() kinds and results. */
#define REALM_EMIT_TOKEN 1
#define REALM_EMIT_FINAL 2
#define REALM_EMIT_CLIENT_GONE 1

/* tokenize() flags. */
#define REALM_TOKENIZE_ADD_SPECIAL 1   /* add BOS/EOS per the model */
#define REALM_TOKENIZE_PARSE_SPECIAL 2 /* special-token text becomes special tokens */

/* log() levels. */
#define REALM_LOG_DEBUG 0
#define REALM_LOG_INFO 1
#define REALM_LOG_WARN 2
#define REALM_LOG_ERROR 3

/* Returns the name of a status code ("REALM_E_BOUNDS"), or "REALM_E_?" for an unknown one. */
static inline const char* realm_status_name(int32_t code) {
  switch (code) {
    case REALM_OK:
      return "REALM_OK";
    case REALM_E_INVALID:
      return "REALM_E_INVALID";
    case REALM_E_BOUNDS:
      return "REALM_E_BOUNDS";
    case REALM_E_HANDLE:
      return "REALM_E_HANDLE";
    case REALM_E_DENIED:
      return "REALM_E_DENIED";
    case REALM_E_LIMIT:
      return "REALM_E_LIMIT";
    case REALM_E_NOSPACE:
      return "REALM_E_NOSPACE";
    case REALM_E_STATE:
      return "REALM_E_STATE";
    case REALM_E_INTERNAL:
      return "REALM_E_INTERNAL";
    case REALM_E_CANCELLED:
      return "REALM_E_CANCELLED";
    default:
      return "REALM_E_?";
  }
}

#endif /* REALM_ABI_H_ */
