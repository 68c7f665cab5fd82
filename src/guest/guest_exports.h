// The handle-based exports of docs/abi.md (realm_new, realm_delete, realm_generate,
// realm_last_error, plus realm_abi_version/realm_alloc/realm_free) for a module whose objects are
// Generators. A module links guest_exports.cc and defines make_generator().
#pragma once

#include <cstdint>
#include <memory>

#include "guest/generator.h"

namespace realm::guest {

// Creates the module's object for realm_new (e.g. a Generator subclass); nullptr on failure.
std::unique_ptr<Generator> make_generator();

}  // namespace realm::guest

// The exports (defined in guest_exports.cc), declared for native tests that call them directly.
extern "C" {
int32_t realm_abi_version(void);
void* realm_alloc(int32_t size);
void realm_free(void* ptr);
int32_t realm_new(void);
int32_t realm_delete(int32_t handle);
int32_t realm_generate(int32_t handle, const char* req, int32_t req_len);
int32_t realm_last_error(int32_t handle, char* buf, int32_t buf_cap);
}
