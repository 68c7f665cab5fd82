/* The normal guest, except that its final result claims 100000 prompt and completion tokens: the
 * server's usage must come from the host's counts (tokens decoded, token events), not from it. */
#define CLAIM_TOKENS 100000
#include "normal.c"
