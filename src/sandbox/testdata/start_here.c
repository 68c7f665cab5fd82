/* Hostile (after testdata/wasm_edit.py add-start start_here): a start section that calls an import
 * reading guest memory while the module is being instantiated. The host refuses such modules when
 * they are loaded (guest ABI v1 modules are WASI reactors). Unedited, a normal guest. */
#include "guest_common.h"

EXPORT(start_here) void start_here(void) {
  realm_log(1, "from the start section", 22);
}

EXPORT(realm_generate) int32_t realm_generate(int32_t h, const char* r, int32_t n) {
  return emit_str(2, "{\"finish_reason\":\"stop\"}");
}
