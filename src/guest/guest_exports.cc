#include "guest/guest_exports.h"

#include <cstdlib>
#include <string>

#include "guest/realm_guest.h"

namespace realm::guest {
namespace {

// The module's state lives in its own linear memory: one instance = one tenant, so this is
// per instance, not a process-wide singleton.
struct ModuleState {
  HandleTable<Generator> objects;
  std::string error;  // the last error not tied to a live object (handle 0)
};

ModuleState& module_state() {
  static ModuleState state;
  return state;
}

int32_t module_fail(int32_t code, std::string message) {
  module_state().error = std::move(message);
  return code;
}

std::string bad_handle(int32_t handle) {
  return "unknown, stale or deleted handle " + std::to_string(handle);
}

}  // namespace
}  // namespace realm::guest

using realm::guest::module_fail;
using realm::guest::module_state;

extern "C" {

REALM_DEFINE_STANDARD_EXPORTS()

REALM_EXPORT(realm_new) int32_t realm_new(void) {
  auto obj = realm::guest::make_generator();
  if (!obj) return module_fail(0, "realm_new: out of memory");
  const int32_t h = module_state().objects.insert(std::move(obj));
  if (h == 0) return module_fail(0, "realm_new: too many live objects");
  return h;
}

REALM_EXPORT(realm_delete) int32_t realm_delete(int32_t handle) {
  if (!module_state().objects.erase(handle)) {
    return module_fail(REALM_E_HANDLE, "realm_delete: " + realm::guest::bad_handle(handle));
  }
  return REALM_OK;
}

REALM_EXPORT(realm_generate)
int32_t realm_generate(int32_t handle, const char* req, int32_t req_len) {
  realm::guest::Generator* g = module_state().objects.get(handle);
  if (!g) {
    return module_fail(REALM_E_HANDLE, "realm_generate: " + realm::guest::bad_handle(handle));
  }
  if (!realm_range_ok(req, req_len)) {
    return module_fail(REALM_E_BOUNDS, "realm_generate: the request range (" +
                                           std::to_string(reinterpret_cast<uintptr_t>(req)) + ", " +
                                           std::to_string(req_len) +
                                           " bytes) lies outside guest memory");
  }
  return g->generate(std::string_view(req, static_cast<size_t>(req_len)));
}

REALM_EXPORT(realm_last_error)
int32_t realm_last_error(int32_t handle, char* buf, int32_t buf_cap) {
  if (!realm_range_ok(buf, buf_cap)) return REALM_E_BOUNDS;
  if (handle == 0) return realm::guest::write_sized(module_state().error, buf, buf_cap);
  const realm::guest::Generator* g = module_state().objects.get(handle);
  if (!g) return module_fail(REALM_E_HANDLE, realm::guest::bad_handle(handle));
  return realm::guest::write_sized(g->last_error(), buf, buf_cap);
}

}  // extern "C"
