// The handle-based exports of docs/abi.md (realm_new, realm_delete, realm_generate,
// realm_last_error, plus realm_abi_version/realm_alloc/realm_free) for a module whose objects are
// Generators. A module links guest_exports.cc and defines make_generator().
#pragma once

#include <memory>

#include "guest/generator.h"

namespace realm::guest {

// Creates the module's object for realm_new (e.g. a Generator subclass); nullptr on failure.
std::unique_ptr<Generator> make_generator();

}  // namespace realm::guest
