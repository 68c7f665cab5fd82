// realm_default.wasm: the default tenant module. Its objects are plain Generators: the request
// loop of docs/abi.md with the host's sampler chain, stop strings and EOG rules.
#include <new>

#include "guest/guest_exports.h"

namespace realm::guest {

std::unique_ptr<Generator> make_generator() {
  return std::unique_ptr<Generator>(new (std::nothrow) Generator());
}

}  // namespace realm::guest
